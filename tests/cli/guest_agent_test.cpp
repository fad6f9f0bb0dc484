// The guest agent end to end: qemu-ga in the tiny guest, the qmpkit tool (exec, guest-ping,
// shutdown, snapshot --quiesce) and the library's client, against a real qemu under TCG.
//
// One booted VM (system and data disks, guest_agent: true) serves the cases that keep it
// running; the shutdown case has a VM of its own. The library client is used without the VM's
// lock: the cases run one at a time.

#include "cli_suite.hpp"

#include <qmpkit/launcher/definition_loader.hpp>
#include <qmpkit/launcher/error.hpp>
#include <qmpkit/launcher/state_directory.hpp>
#include <qmpkit/launcher/vm_agent.hpp>
#include <qmpkit/qmp/guest_agent.hpp>

#include <boost/json.hpp>
#include <gtest/gtest.h>

#include <atomic>
#include <fstream>
#include <thread>

namespace {

using namespace qmpkit;
using namespace std::chrono_literals;
namespace json = boost::json;
using clock_type = std::chrono::steady_clock;

constexpr const char* vm = "ga";

class guest_agent_test : public test::cli_suite {
protected:
    static void SetUpTestSuite() {
        if (!open_suite())
            return;
        auto def = test::write_tiny_guest(vm, scratch(), {{"system"}, {"data", "32M"}},
                                          "guest_agent: true\n");
        auto r = qmpkit({"start", def.string(), "--wait-ready"});
        ASSERT_EQ(r.code, 0) << r.out << r.err;
        ASSERT_TRUE(run().wait_for_mount(vm, "/data/data")) << "never mounted";
    }

    static void TearDownTestSuite() { close_suite(); }

    static std::string guest(const std::string& command) { return run().guest(vm, command); }

    static launcher::state_directory dir(const std::string& name = vm) {
        return {run().state_root(), name};
    }

    // A library client on the VM's agent socket.
    static qmp::guest_agent agent() {
        auto d = dir();
        qmp::guest_agent_options o;
        o.sync_timeout = 10s;
        return launcher::open_guest_agent(d, launcher::load_definition(d.definition_copy()), o)
            .agent;
    }

    static json::object snapshot_json(const std::string& name) {
        auto r = qmpkit({"--json", "snapshot", "info", vm, name});
        EXPECT_EQ(r.code, 0) << r.err;
        return r.code == 0 ? json::parse(r.out).as_object() : json::object{};
    }

    // Stops qemu-ga in the guest (it is not restarted while /run/qemu-ga.stop exists).
    static void stop_agent() {
        guest("touch /run/qemu-ga.stop; kill $(cat /run/qemu-ga.pid); "
              "while [ -e /run/qemu-ga.pid ]; do usleep 50000; done");
    }

    // Starts it again and waits until it answers.
    static void restart_agent() {
        guest("rm -f /run/qemu-ga.stop");
        for (int i = 0; i < 20; ++i) {
            if (qmpkit({"guest-ping", vm, "--timeout", "2"}).code == 0)
                return;
            std::this_thread::sleep_for(250ms);
        }
        FAIL() << "qemu-ga did not come back";
    }
};

TEST_F(guest_agent_test, guest_ping_answers_with_the_agents_version) {
    auto r = qmpkit({"guest-ping", vm});
    ASSERT_EQ(r.code, 0) << r.err;
    EXPECT_NE(r.out.find("the guest agent answered in"), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("qemu-ga 7.2"), std::string::npos) << r.out;

    auto j = qmpkit({"--json", "guest-ping", vm});
    ASSERT_EQ(j.code, 0) << j.err;
    auto o = json::parse(j.out).as_object();
    EXPECT_EQ(o.at("vm").as_string(), vm);
    EXPECT_TRUE(o.at("version").as_string().starts_with("7.2"));

    auto info = agent().info();
    for (const auto* command : {"guest-exec", "guest-file-open", "guest-fsfreeze-freeze",
                                "guest-shutdown", "guest-sync-delimited"})
        EXPECT_NE(std::find(info.enabled_commands.begin(), info.enabled_commands.end(), command),
                  info.enabled_commands.end())
            << command;
}

TEST_F(guest_agent_test, exec_prints_the_output_and_exits_with_the_commands_code) {
    auto r = qmpkit({"exec", vm, "--", "sh", "-c", "echo out; echo err >&2; exit 3"});
    EXPECT_EQ(r.code, 3) << r.err;
    EXPECT_EQ(r.out, "out\n");
    EXPECT_EQ(r.err, "err\n");

    auto ok = qmpkit({"exec", vm, "--", "uname", "-n"});
    EXPECT_EQ(ok.code, 0) << ok.err;
    EXPECT_EQ(ok.out, "qmpkit-guest\n");

    auto j = qmpkit({"--json", "exec", vm, "--env", "GREETING=hi there", "--", "sh", "-c",
                     "printf '%s' \"$GREETING\"; printf 'x\\ny' >&2; exit 7"});
    EXPECT_EQ(j.code, 7) << j.err;
    auto o = json::parse(j.out).as_object();
    EXPECT_EQ(o.at("exit_code").as_int64(), 7);
    EXPECT_EQ(o.at("stdout").as_string(), "hi there");
    EXPECT_EQ(o.at("stderr").as_string(), "x\ny");

    auto killed = qmpkit({"exec", vm, "--", "sh", "-c", "kill -9 $$"});
    EXPECT_EQ(killed.code, 128 + 9) << killed.err;
    EXPECT_NE(killed.err.find("signal 9"), std::string::npos) << killed.err;

    auto missing = qmpkit({"exec", vm, "--", "/no/such/program"});
    EXPECT_EQ(missing.code, 1);
    EXPECT_NE(missing.err.find("guest-exec"), std::string::npos) << missing.err;
}

TEST_F(guest_agent_test, exec_gives_up_on_a_program_that_runs_too_long) {
    const auto start = clock_type::now();
    auto r = qmpkit({"exec", vm, "--timeout", "1", "--", "sleep", "30"});
    EXPECT_EQ(r.code, 4) << r.err;
    EXPECT_NE(r.err.find("did not finish"), std::string::npos) << r.err;
    EXPECT_LT(clock_type::now() - start, 10s);
}

TEST_F(guest_agent_test, a_file_written_through_the_agent_reads_back_and_shows_in_the_shell) {
    std::string content = "written by qmpkit\n";
    for (int i = 0; i < 3000; ++i) // over 64 KiB, so reading takes several chunks
        content += "line " + std::to_string(i) + " \x01\xff binary too\n";
    {
        auto a = agent();
        const auto handle = a.file_open("/mnt/from-agent", "w");
        EXPECT_EQ(a.file_write(handle, content), content.size());
        a.file_close(handle);

        const auto in = a.file_open("/mnt/from-agent", "r");
        std::string back;
        for (;;) {
            auto chunk = a.file_read(in);
            back += chunk.data;
            if (chunk.eof || chunk.data.empty())
                break;
        }
        a.file_close(in);
        EXPECT_EQ(back, content);
    }
    EXPECT_EQ(guest("head -n 1 /mnt/from-agent"), "written by qmpkit\n");
    EXPECT_EQ(guest("wc -c < /mnt/from-agent"), std::to_string(content.size()) + "\n");

    auto a = agent();
    try {
        a.file_open("/no/such/dir/f", "r");
        FAIL() << "no error";
    } catch (const qmp::error& e) {
        EXPECT_EQ(e.code(), qmp::errc::command_failed);
        EXPECT_EQ(e.diag().command, "guest-file-open");
    }
    a.ping(); // still in step after an error
}

TEST_F(guest_agent_test, no_agent_gives_a_clear_timeout_within_seconds) {
    stop_agent();
    auto start = clock_type::now();
    auto r = qmpkit({"exec", vm, "--agent-timeout", "2", "--", "true"});
    auto took = clock_type::now() - start;
    EXPECT_EQ(r.code, 4) << r.out << r.err;
    EXPECT_NE(r.err.find("no answer from the guest agent within 2000 ms"), std::string::npos)
        << r.err;
    EXPECT_NE(r.err.find("qemu-ga"), std::string::npos) << r.err;
    EXPECT_LT(took, 8s);

    start = clock_type::now();
    auto ping = qmpkit({"guest-ping", vm, "--timeout", "1"});
    EXPECT_EQ(ping.code, 4) << ping.err;
    EXPECT_LT(clock_type::now() - start, 6s);

    // A quiesced snapshot is refused and leaves nothing behind.
    auto snap = qmpkit({"snapshot", "create", vm, "q-noagent", "--disk-only", "--quiesce"});
    EXPECT_EQ(snap.code, 1);
    EXPECT_NE(snap.err.find("does not answer"), std::string::npos) << snap.err;
    EXPECT_EQ(qmpkit({"snapshot", "info", vm, "q-noagent"}).code, 1);
    for (const auto& f : std::filesystem::directory_iterator(scratch()))
        EXPECT_EQ(f.path().string().find("q-noagent"), std::string::npos) << f.path();

    // `shutdown` does not wait for an agent that is not there: this VM keeps running here, so
    // only the agent's side is checked: the library refuses quickly.
    start = clock_type::now();
    EXPECT_FALSE(launcher::request_agent_shutdown(
        dir(), launcher::load_definition(dir().definition_copy()), 1s));
    EXPECT_LT(clock_type::now() - start, 5s);

    restart_agent();
    EXPECT_EQ(qmpkit({"exec", vm, "--", "true"}).code, 0);
}

TEST_F(guest_agent_test, a_vm_without_guest_agent_is_refused_before_anything_is_sent) {
    auto d = dir();
    auto def = launcher::load_definition(d.definition_copy());
    def.guest_agent = false;
    try {
        launcher::open_guest_agent(d, def);
        FAIL() << "no error";
    } catch (const launcher::error& e) {
        EXPECT_NE(std::string(e.what()).find("guest_agent: true"), std::string::npos) << e.what();
    }
    EXPECT_FALSE(launcher::request_agent_shutdown(d, def, 1s));
}

TEST_F(guest_agent_test, commands_after_a_snapshot_revert_get_their_own_replies) {
    auto a = agent();
    a.ping();
    // Snapshot while the agent is busy: reading and parsing a large request takes it a while
    // under TCG, so the saved guest may hold a half-read request or a reply not yet sent.
    const auto sink = a.file_open("/dev/null", "w");
    std::atomic<bool> stop{false};
    std::atomic<int> writes{0};
    std::thread busy([&] {
        try {
            const std::string chunk(256 * 1024, 'w');
            while (!stop) {
                a.file_write(sink, chunk);
                ++writes;
            }
        } catch (const std::exception& e) {
            ADD_FAILURE() << "writing during the snapshot: " << e.what();
        }
    });
    std::this_thread::sleep_for(300ms);
    auto r = qmpkit({"snapshot", "create", vm, "ga-revert"});
    stop = true;
    busy.join();
    ASSERT_EQ(r.code, 0) << r.err;
    EXPECT_GT(writes.load(), 0);

    EXPECT_EQ(a.exec({.path = "sh", .args = {"-c", "echo after > /run/marker"}}).exit_code, 0);
    r = qmpkit({"snapshot", "revert", vm, "ga-revert"});
    ASSERT_EQ(r.code, 0) << r.err;

    // The library connection that lived through the revert, told to resync.
    a.resync_needed();
    auto marker = a.exec({.path = "cat", .args = {"/run/marker"}});
    EXPECT_EQ(marker.exit_code, 1) << marker.out << marker.err;
    for (int i = 0; i < 5; ++i) {
        auto status = a.exec({.path = "echo", .args = {"reply", std::to_string(i)}});
        EXPECT_EQ(status.out, "reply " + std::to_string(i) + "\n");
    }
    EXPECT_EQ(a.fsfreeze_status(), "thawed");
    a.close(); // the agent's socket takes one client at a time

    // The tool, right after another revert: a fresh connection, synchronised, with the reverted
    // guest's state.
    ASSERT_EQ(qmpkit({"exec", vm, "--", "sh", "-c", "echo again > /run/marker"}).code, 0);
    r = qmpkit({"snapshot", "revert", vm, "ga-revert"});
    ASSERT_EQ(r.code, 0) << r.err;
    auto cli = qmpkit({"exec", vm, "--", "cat", "/run/marker"});
    EXPECT_EQ(cli.code, 1) << cli.out << cli.err;
    EXPECT_NE(cli.err.find("/run/marker"), std::string::npos) << cli.err;
}

TEST_F(guest_agent_test, quiesced_disk_only_snapshot_freezes_and_thaws) {
    guest("echo before > /mnt/q; echo before > /data/data/q; sync");
    const auto start = clock_type::now();
    auto r = qmpkit({"snapshot", "create", vm, "q1", "--disk-only", "--quiesce"});
    ASSERT_EQ(r.code, 0) << r.err;
    const auto took =
        std::chrono::duration_cast<std::chrono::milliseconds>(clock_type::now() - start);
    std::cerr << "quiesced disk-only snapshot took " << took.count() << " ms\n";
    auto info = snapshot_json("q1");
    EXPECT_TRUE(info.at("quiesced").as_bool());
    EXPECT_EQ(info.at("location").as_string(), "external");

    // Thawed: both file systems take writes at once.
    EXPECT_EQ(agent().fsfreeze_status(), "thawed");
    auto w = qmpkit({"exec", vm, "--timeout", "10", "--", "sh", "-c",
                     "echo after > /mnt/q && echo after > /data/data/q && sync && cat /mnt/q "
                     "/data/data/q"});
    EXPECT_EQ(w.code, 0) << w.err;
    EXPECT_EQ(w.out, "after\nafter\n");

    // The virsh spelling takes --quiesce too; without --disk-only it is refused.
    auto plain = qmpkit({"snapshot-create-as", vm, "q-internal", "--quiesce"});
    EXPECT_EQ(plain.code, 1);
    EXPECT_NE(plain.err.find("--quiesce needs a disk-only snapshot"), std::string::npos)
        << plain.err;
    auto virsh = qmpkit({"snapshot-create-as", vm, "q2", "--disk-only", "--quiesce", "--atomic"});
    EXPECT_EQ(virsh.code, 0) << virsh.err;
    EXPECT_TRUE(snapshot_json("q2").at("quiesced").as_bool());
    EXPECT_EQ(agent().fsfreeze_status(), "thawed");
}

TEST_F(guest_agent_test, a_failed_quiesced_snapshot_leaves_the_guest_thawed) {
    auto r = qmpkit({"snapshot", "create", vm, "q-fail", "--disk-only", "--quiesce", "--diskspec",
                     "system,file=/nonexistent-dir/x.qcow2", "--diskspec", "data,snapshot=no"});
    EXPECT_EQ(r.code, 1) << r.out;
    EXPECT_NE(r.err.find("transaction failed"), std::string::npos) << r.err;
    EXPECT_EQ(qmpkit({"snapshot", "info", vm, "q-fail"}).code, 1);

    EXPECT_EQ(agent().fsfreeze_status(), "thawed");
    auto w = qmpkit({"exec", vm, "--timeout", "10", "--", "sh", "-c",
                     "echo still-writable > /mnt/after-fail && sync && cat /mnt/after-fail"});
    EXPECT_EQ(w.code, 0) << w.err;
    EXPECT_EQ(w.out, "still-writable\n");
}

TEST_F(guest_agent_test, freezing_skips_what_cannot_be_frozen) {
    // /, /proc, /sys, /dev, /run, /tmp cannot be frozen; /mnt and /data/data can.
    auto a = agent();
    const int frozen = a.fsfreeze_freeze();
    EXPECT_EQ(a.fsfreeze_status(), "frozen");
    const int thawed = a.fsfreeze_thaw();
    EXPECT_EQ(frozen, 2);
    EXPECT_EQ(thawed, 2);
    EXPECT_EQ(a.fsfreeze_status(), "thawed");
}

// --- a case that ends its VM ------------------------------------------------------------------

TEST_F(guest_agent_test, shutdown_goes_through_the_agent) {
    auto def = test::write_tiny_guest("ga-off", scratch(), {{"system"}}, "guest_agent: true\n");
    auto r = qmpkit({"start", def.string(), "--wait-ready"});
    ASSERT_EQ(r.code, 0) << r.out << r.err;
    const auto start = clock_type::now();
    r = qmpkit({"shutdown", "ga-off", "--timeout", "60"});
    const auto took = clock_type::now() - start;
    EXPECT_EQ(r.code, 0) << r.err;
    EXPECT_NE(r.out.find("guest-shutdown"), std::string::npos) << r.out;
    EXPECT_LT(took, 30s);
    // The guest's /sbin/shutdown (run by qemu-ga) logged it, not the ACPI button handler.
    std::ifstream log(dir("ga-off").serial_log());
    std::string text((std::istreambuf_iterator<char>(log)), std::istreambuf_iterator<char>());
    EXPECT_NE(text.find("shutdown requested (poweroff)"), std::string::npos) << text;
    EXPECT_EQ(text.find("power button pressed"), std::string::npos);
}

} // namespace
