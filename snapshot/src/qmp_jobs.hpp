#pragma once

// Private: running qemu jobs to their end. snapshot-save/load/delete answer `{}` at once and
// report failure only in the job's `error` (query-jobs); they stay `concluded` until
// job-dismiss. Block jobs are created with auto-dismiss off so that they behave the same way.

#include <qmpkit/qmp/client.hpp>

#include <boost/json/object.hpp>

#include <chrono>
#include <functional>
#include <string>

namespace qmpkit::snapshot::detail {

struct job_options {
    // Called with the job's progress (0..1) while it runs.
    std::function<void(double)> progress;
    // For jobs that stop in `ready` (an active-layer block-commit): send job-complete.
    bool complete_when_ready = false;
    // Called once per status the job enters ("running", "ready", ...), before run_job acts on
    // it (job-complete comes after on_status("ready")). The fault points hang here.
    std::function<void(const std::string& status)> on_status;
    std::chrono::milliseconds timeout{std::chrono::minutes(30)};
};

// Sends `command` (which must create job `job_id`) and waits until the job has concluded and is
// dismissed. Throws snapshot::error with the job's error text when it failed.
void run_job(qmp::client& qmp, const std::string& command, boost::json::object arguments,
             const std::string& job_id, const job_options& options = {});

// Whether qemu has the snapshot-save/load/delete jobs (QAPI: since 6.0; older qemus get HMP
// savevm/loadvm/delvm). The greeting names the version, which spares a query-commands round
// trip and its 20 KB answer on every snapshot command; a greeting without one is asked.
bool has_snapshot_jobs(qmp::client& qmp);

// A job id unique enough for one VM: "qmpkit-<what>-<time>".
std::string make_job_id(const std::string& what);

} // namespace qmpkit::snapshot::detail
