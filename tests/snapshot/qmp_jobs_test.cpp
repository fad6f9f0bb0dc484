// Running a qemu job to its end, against a scripted fake QMP server: success (with and
// without asking for the job's error), a job's failure text, and a job that never ends, which is
// cancelled and reported as a timeout (the CLI's exit code 4).

#include "qmp/fake_qmp_server.hpp"
#include "qmp_jobs.hpp" // snapshot/src: the one place jobs are run

#include <qmpkit/qmp/client.hpp>
#include <qmpkit/snapshot/error.hpp>

#include <gtest/gtest.h>

namespace {

using namespace qmpkit;
using namespace std::chrono_literals;
using qmp::test::fake_qmp_server;
namespace json = boost::json;

// The script's end of every run_job: the job is dismissed.
void expect_dismissed(fake_qmp_server& s, const char* job_id) {
    auto c = s.expect_command("job-dismiss");
    EXPECT_EQ(c.at("arguments").at("id"), job_id);
    s.reply(c.at("id"), json::object{});
}

json::object job(const std::string& id, const std::string& status) {
    return {{"id", id},
            {"status", status},
            {"type", "snapshot-save"},
            {"current-progress", 1},
            {"total-progress", 1}};
}

TEST(run_job, waits_for_the_job_to_conclude_and_dismisses_it) {
    fake_qmp_server server;
    server.run([](fake_qmp_server& s) {
        s.accept_handshake();
        auto c = s.expect_command("snapshot-save");
        s.reply(c.at("id"), json::object{});
        s.event("JOB_STATUS_CHANGE", {{"id", "j1"}, {"status", "running"}});
        s.event("JOB_STATUS_CHANGE", {{"id", "j1"}, {"status", "concluded"}});
        c = s.expect_command("query-jobs");
        s.reply(c.at("id"), json::array{job("j1", "concluded")});
        expect_dismissed(s, "j1");
    });
    qmp::client qmp;
    qmp.adopt(server.take_client_fd());
    snapshot::detail::run_job(qmp, "snapshot-save", {{"job-id", "j1"}}, "j1");
    server.join();
}

// qemu reports every change of a job's status: one seen pending and never aborting succeeded,
// and is dismissed without asking for an error (the script answers no query-jobs).
TEST(run_job, a_job_seen_pending_is_dismissed_without_asking_for_its_error) {
    fake_qmp_server server;
    server.run([](fake_qmp_server& s) {
        s.accept_handshake();
        auto c = s.expect_command("snapshot-delete");
        s.reply(c.at("id"), json::object{});
        for (const char* status : {"running", "waiting", "pending", "concluded"})
            s.event("JOB_STATUS_CHANGE", {{"id", "j4"}, {"status", status}});
        expect_dismissed(s, "j4");
    });
    qmp::client qmp;
    qmp.adopt(server.take_client_fd());
    snapshot::detail::run_job(qmp, "snapshot-delete", {{"job-id", "j4"}}, "j4");
    server.join();
}

// A job that fails while pending (its finalisation) goes on to aborting: its error is asked for.
TEST(run_job, a_job_aborting_after_pending_throws_its_error_text) {
    fake_qmp_server server;
    server.run([](fake_qmp_server& s) {
        s.accept_handshake();
        auto c = s.expect_command("snapshot-delete");
        s.reply(c.at("id"), json::object{});
        for (const char* status : {"running", "pending", "aborting", "concluded"})
            s.event("JOB_STATUS_CHANGE", {{"id", "j5"}, {"status", status}});
        c = s.expect_command("query-jobs");
        auto failed = job("j5", "concluded");
        failed["error"] = "Could not delete snapshot";
        s.reply(c.at("id"), json::array{failed});
        expect_dismissed(s, "j5");
    });
    qmp::client qmp;
    qmp.adopt(server.take_client_fd());
    try {
        snapshot::detail::run_job(qmp, "snapshot-delete", {{"job-id", "j5"}}, "j5");
        FAIL() << "no error";
    } catch (const snapshot::error& e) {
        EXPECT_NE(std::string(e.what()).find("Could not delete snapshot"), std::string::npos);
    }
    server.join();
}

TEST(run_job, a_failed_job_throws_its_error_text) {
    fake_qmp_server server;
    server.run([](fake_qmp_server& s) {
        s.accept_handshake();
        auto c = s.expect_command("snapshot-save");
        s.reply(c.at("id"), json::object{});
        s.event("JOB_STATUS_CHANGE", {{"id", "j2"}, {"status", "concluded"}});
        c = s.expect_command("query-jobs");
        auto failed = job("j2", "concluded");
        failed["error"] = "Device 'pflash1' is writable but does not support snapshots";
        s.reply(c.at("id"), json::array{failed});
        expect_dismissed(s, "j2");
    });
    qmp::client qmp;
    qmp.adopt(server.take_client_fd());
    try {
        snapshot::detail::run_job(qmp, "snapshot-save", {{"job-id", "j2"}}, "j2");
        FAIL() << "no error";
    } catch (const snapshot::error& e) {
        EXPECT_EQ(e.kind(), snapshot::error_kind::other);
        EXPECT_NE(std::string(e.what()).find("does not support snapshots"), std::string::npos);
    }
    server.join();
}

TEST(run_job, a_job_that_never_ends_is_cancelled_and_times_out) {
    fake_qmp_server server;
    server.run([](fake_qmp_server& s) {
        s.accept_handshake();
        auto c = s.expect_command("snapshot-save");
        s.reply(c.at("id"), json::object{});
        s.event("JOB_STATUS_CHANGE", {{"id", "j3"}, {"status", "running"}});
        c = s.expect_command("job-cancel");
        EXPECT_EQ(c.at("arguments").at("id"), "j3");
        s.reply(c.at("id"), json::object{});
    });
    qmp::client qmp;
    qmp.adopt(server.take_client_fd());
    snapshot::detail::job_options o;
    o.timeout = 300ms;
    try {
        snapshot::detail::run_job(qmp, "snapshot-save", {{"job-id", "j3"}}, "j3", o);
        FAIL() << "no error";
    } catch (const snapshot::error& e) {
        EXPECT_EQ(e.kind(), snapshot::error_kind::timeout) << e.what();
    }
    server.join();
}

} // namespace
