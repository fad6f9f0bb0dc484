#include "qmp_jobs.hpp"

#include <qmpkit/snapshot/error.hpp>

#include <boost/json.hpp>

#include <atomic>

namespace qmpkit::snapshot::detail {
namespace {

namespace json = boost::json;
using namespace std::chrono_literals;

std::optional<json::object> find_job(qmp::client& qmp, const std::string& id) {
    const auto jobs = qmp.execute("query-jobs");
    for (const auto& j : jobs.as_array())
        if (j.as_object().at("id").as_string() == id)
            return j.as_object();
    return std::nullopt;
}

} // namespace

bool has_snapshot_jobs(qmp::client& qmp) {
    const auto& version = qmp.server_greeting().version;
    if (const auto* q = version.if_contains("qemu"); q && q->is_object())
        if (const auto* major = q->as_object().if_contains("major"); major && major->is_int64())
            return major->as_int64() >= 6;
    return qmp.has_command("snapshot-save");
}

std::string make_job_id(const std::string& what) {
    static std::atomic<int> counter{0};
    const auto now = std::chrono::duration_cast<std::chrono::milliseconds>(
                         std::chrono::system_clock::now().time_since_epoch())
                         .count();
    return "qmpkit-" + what + "-" + std::to_string(now) + "-" + std::to_string(counter++);
}

void run_job(qmp::client& qmp, const std::string& command, json::object arguments,
             const std::string& job_id, const job_options& options) {
    // Registered before the command: a fast job may conclude before the reply is read.
    auto changes = qmp.listen({"JOB_STATUS_CHANGE"});
    qmp.execute(command, std::move(arguments));

    const auto deadline = std::chrono::steady_clock::now() + options.timeout;
    std::string status = "created";
    bool completed = false;
    // A job that succeeds passes through `pending`; one that fails, through `aborting`. qemu
    // sends an event for every change, so a job seen pending and never aborting succeeded,
    // and its error need not be asked for.
    bool pending = false, aborting = false;
    while (status != "concluded" && status != "null") {
        if (std::chrono::steady_clock::now() > deadline) {
            try {
                qmp.execute("job-cancel", {{"id", job_id}});
            } catch (const qmp::error&) {
            }
            throw error(error_kind::timeout,
                        command + ": job " + job_id + " did not finish in time (cancelled)");
        }
        if (auto e = qmp.wait_event(changes, 200ms)) {
            if (e->data.at("id").as_string() == job_id) {
                status = e->data.at("status").as_string();
                pending = pending || status == "pending";
                aborting = aborting || status == "aborting";
                if (options.on_status)
                    options.on_status(status);
            }
        } else if (options.progress) {
            if (auto job = find_job(qmp, job_id)) {
                const auto total = job->at("total-progress").to_number<double>();
                const auto current = job->at("current-progress").to_number<double>();
                if (total > 0)
                    options.progress(current / total);
            }
        }
        if (status == "ready" && options.complete_when_ready && !completed) {
            completed = true;
            qmp.execute("job-complete", {{"id", job_id}});
        }
    }
    const bool succeeded = status == "concluded" && pending && !aborting;
    std::optional<json::object> job;
    if (!succeeded)
        job = find_job(qmp, job_id);
    std::string failure;
    if (job && job->contains("error"))
        failure = job->at("error").as_string();
    if (succeeded || job)
        qmp.execute("job-dismiss", {{"id", job_id}});
    if (!failure.empty())
        throw error(error_kind::other, command + " failed: " + failure);
    if (options.progress)
        options.progress(1.0);
}

} // namespace qmpkit::snapshot::detail
