// The VM lifecycle end to end: the qmpkit tool, a real qemu, the tiny guest. Most cases share
// one booted VM (boots take seconds under TCG); the ones that end a VM start their own.

#include "bare_qemu.hpp"
#include "cli_runner.hpp"
#include "tiny_guest.hpp"

#include <qmpkit/launcher/atomic_file.hpp>
#include <qmpkit/launcher/definition_loader.hpp>
#include <qmpkit/launcher/launch.hpp>
#include <qmpkit/launcher/qemu_process.hpp>
#include <qmpkit/launcher/runtime_info.hpp>
#include <qmpkit/launcher/standby.hpp>
#include <qmpkit/launcher/state_directory.hpp>
#include <qmpkit/launcher/subprocess.hpp>
#include <qmpkit/launcher/vm_lock.hpp>

#include <boost/json.hpp>
#include <gtest/gtest.h>

#include <csignal>
#include <cstdlib>
#include <fstream>
#include <set>
#include <spawn.h>
#include <string_view>
#include <sys/resource.h>
#include <sys/wait.h>
#include <thread>

namespace {

using namespace qmpkit;
using namespace std::chrono_literals;
namespace json = boost::json;
namespace fs = std::filesystem;

using test::cli_result;

class lifecycle_test : public ::testing::Test {
protected:
    static void SetUpTestSuite() {
        if (!test::qemu_available())
            return;
        scratch_ = new test::scratch_dir();
        definition_ = test::write_tiny_guest("shared", scratch_->path());
        auto r = qmpkit({"start", definition_.string(), "--wait-ready"});
        ASSERT_EQ(r.code, 0) << r.out << r.err;
        ASSERT_NE(r.out.find("guest ready: QMPKIT-GUEST-READY"), std::string::npos) << r.out;
    }

    static void TearDownTestSuite() {
        if (scratch_) {
            // Every VM, and what a test that failed half-way left (standbys of a VM whose qemu
            // it killed): nothing may outlive the suite.
            for (const auto& vm : launcher::state_directory::list(state_root()))
                qmpkit({"destroy", vm});
            qmpkit({"gc"});
            delete scratch_;
            scratch_ = nullptr;
        }
    }

    void SetUp() override {
        if (!test::qemu_available())
            GTEST_SKIP() << "qemu-system-x86_64 is not installed (scripts/setup installs it)";
    }

    static cli_result qmpkit(std::vector<std::string> args) {
        return test::cli_runner(state_root())(std::move(args));
    }

    static std::filesystem::path state_root() { return scratch_->path() / "state"; }

    // A tiny guest `vm` booted from definition `def`, with reset point "p" and at least one
    // standby ready for it.
    static void start_with_a_standby(const std::string& vm, std::filesystem::path& def) {
        def = test::write_tiny_guest(vm, scratch_->path());
        ASSERT_EQ(qmpkit({"start", def.string(), "--wait-ready"}).code, 0);
        ASSERT_EQ(qmpkit({"reset-point", "create", vm, "p"}).code, 0);
        const launcher::state_directory dir(state_root(), vm);
        for (int wait = 0; wait < 300 && launcher::ready_standby_keys(dir).empty(); ++wait)
            std::this_thread::sleep_for(100ms);
        ASSERT_FALSE(launcher::ready_standby_keys(dir).empty());
    }

    static std::string guest(const std::string& vm, const std::string& command) {
        return test::cli_runner(state_root()).guest(vm, command);
    }

    // `qmpkit run DEFINITION` in the foreground, as a service manager starts it. Whatever fails,
    // it does not outlive the test: the destructor kills it and destroys its VM.
    class foreground_run {
    public:
        foreground_run(const std::filesystem::path& definition, std::string vm)
            : vm_(std::move(vm)) {
            const auto bin = test::qmpkit_binary().string();
            const auto root = state_root().string();
            const char* argv[] = {bin.c_str(),        "--state-dir",        root.c_str(), "run",
                                  definition.c_str(), "--shutdown-timeout", "30",         nullptr};
            if (posix_spawn(&pid_, argv[0], nullptr, nullptr, const_cast<char**>(argv), environ) !=
                0)
                pid_ = -1;
        }
        foreground_run(const foreground_run&) = delete;
        foreground_run& operator=(const foreground_run&) = delete;
        ~foreground_run() {
            if (pid_ > 0 && !ended_) {
                ::kill(pid_, SIGKILL);
                ::waitpid(pid_, nullptr, 0);
                qmpkit({"destroy", vm_});
            }
        }
        bool started() const { return pid_ > 0; }
        bool still_running() const { return ::waitpid(pid_, nullptr, WNOHANG) == 0; }
        // SIGTERM, then its exit code (-1: it did not exit normally).
        int terminate() {
            ::kill(pid_, SIGTERM);
            int status = 0;
            if (::waitpid(pid_, &status, 0) != pid_)
                return -1;
            ended_ = true;
            return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
        }

    private:
        std::string vm_;
        pid_t pid_ = -1;
        bool ended_ = false;
    };

    static inline test::scratch_dir* scratch_ = nullptr;
    static inline std::filesystem::path definition_;
};

// How many qemu processes have a path under `under` on their command line.
int qemus_under(const std::filesystem::path& under) {
    int n = 0;
    for (const auto& e : std::filesystem::directory_iterator("/proc")) {
        const auto name = e.path().filename().string();
        if (name.find_first_not_of("0123456789") != std::string::npos)
            continue;
        const auto args = launcher::process_command_line(std::stoi(name));
        n += args.find("qemu-system") == 0 && args.find(under.string() + "/") != std::string::npos;
    }
    return n;
}

TEST_F(lifecycle_test, status_says_running_with_the_accelerator_auto_would_pick) {
    auto r = qmpkit({"--json", "status", "shared"});
    ASSERT_EQ(r.code, 0) << r.err;
    auto st = json::parse(r.out).as_object();
    EXPECT_EQ(st.at("state").as_string(), "running");
    EXPECT_EQ(st.at("accel").as_string(), "tcg");
    EXPECT_GT(st.at("qemu_pid").as_int64(), 0);

    auto list = qmpkit({"list"});
    EXPECT_NE(list.out.find("shared"), std::string::npos);
    EXPECT_NE(list.out.find("running"), std::string::npos);
}

TEST_F(lifecycle_test, qemu_mallocs_from_huge_pages_and_its_log_says_how_it_was_started) {
    const launcher::state_directory dir(state_root(), "shared");
    const auto runtime = launcher::read_runtime_info(dir);
    ASSERT_TRUE(runtime);
    // What qemu started with: the runner's tunables, with the huge-page one added unless the
    // runner set that one itself.
    const std::string runners = std::getenv("GLIBC_TUNABLES") ? std::getenv("GLIBC_TUNABLES") : "";
    const bool runner_chose = (":" + runners).find(":glibc.malloc.hugetlb=") != std::string::npos;
    // qemu's glibc splits GLIBC_TUNABLES at its ':' in place as it reads it, so that each tunable
    // after the first is a string of its own in /proc/PID/environ.
    const auto qemu_environment =
        launcher::read_file("/proc/" + std::to_string(runtime->qemu_pid) + "/environ");
    EXPECT_NE(
        qemu_environment.find(runner_chose ? "glibc.malloc.hugetlb=" : "glibc.malloc.hugetlb=1"),
        std::string::npos);
    if (!runner_chose) {
        // The log's line runs the same qemu again when pasted into a shell.
        const auto value = (runners.empty() ? "" : runners + ":") + "glibc.malloc.hugetlb=1";
        EXPECT_NE(
            launcher::read_file(dir.qemu_log())
                .find("GLIBC_TUNABLES=" + launcher::describe({value}) + " qemu-system-x86_64 "),
            std::string::npos)
            << value;
    }
}

TEST_F(lifecycle_test, runs_commands_in_the_guest_and_reads_files_back) {
    guest("shared", "echo 123 > /mnt/abc; sync");
    EXPECT_EQ(guest("shared", "cat /mnt/abc"), "123\n");
    auto r = qmpkit({"shell", "shared", "--", "echo out; echo err >&2; exit 3"});
    EXPECT_EQ(r.code, 3);
    EXPECT_EQ(r.out, "out\nerr\n");
}

TEST_F(lifecycle_test, a_second_process_reattaches_by_name) {
    auto r = qmpkit({"qmp", "shared", "query-status", "--compact"});
    ASSERT_EQ(r.code, 0) << r.err;
    EXPECT_NE(r.out.find("\"running\":true"), std::string::npos) << r.out;

    auto error = qmpkit({"qmp", "shared", "no-such-command"});
    EXPECT_EQ(error.code, 1);
    EXPECT_NE(error.err.find("CommandNotFound"), std::string::npos) << error.err;
}

TEST_F(lifecycle_test, attaches_and_detaches_a_disk_live) {
    const auto image = scratch_->path() / "hot.qcow2";
    auto r = qmpkit({"attach-disk", "shared", image.string(), "--name", "hot", "--size", "32M"});
    ASSERT_EQ(r.code, 0) << r.err;
    EXPECT_TRUE(std::filesystem::exists(image));

    // The guest mounts new disks within a second or so.
    ASSERT_TRUE(test::cli_runner(state_root()).wait_for_mount("shared", "/data/hot"));
    guest("shared", "echo hotplugged > /data/hot/f; sync");
    EXPECT_EQ(guest("shared", "cat /data/hot/f"), "hotplugged\n");

    auto disks = qmpkit({"--json", "disks", "shared"});
    EXPECT_NE(disks.out.find(image.string()), std::string::npos) << disks.out;
    launcher::state_directory dir(state_root(), "shared");
    EXPECT_EQ(launcher::load_definition(dir.definition_copy()).disks.size(), 2u);

    guest("shared", "umount /data/hot");
    r = qmpkit({"detach-disk", "shared", "hot"});
    ASSERT_EQ(r.code, 0) << r.err;
    disks = qmpkit({"--json", "disks", "shared"});
    EXPECT_EQ(disks.out.find(image.string()), std::string::npos) << disks.out;
    EXPECT_EQ(launcher::load_definition(dir.definition_copy()).disks.size(), 1u);

    auto again = qmpkit({"detach-disk", "shared", "hot"});
    EXPECT_EQ(again.code, 1);
    EXPECT_NE(again.err.find("no disk named 'hot'"), std::string::npos) << again.err;
}

TEST_F(lifecycle_test, attaches_disks_live_on_q35_through_spare_root_ports) {
    auto yaml = test::tiny_guest_yaml("qz", scratch_->path());
    yaml.replace(yaml.find("machine: pc"), 11, "machine: q35");
    const auto def = scratch_->path() / "qz.yaml";
    test::write_text(def, yaml);
    ASSERT_EQ(qmpkit({"start", def.string(), "--wait-ready"}).code, 0);
    for (const auto* name : {"one", "two"}) {
        auto image = scratch_->path() / (std::string(name) + ".qcow2");
        auto r = qmpkit({"attach-disk", "qz", image.string(), "--name", name, "--size", "16M"});
        ASSERT_EQ(r.code, 0) << r.err;
    }
    EXPECT_TRUE(test::cli_runner(state_root()).wait_for_mount("qz", "/data/one"));
    EXPECT_TRUE(test::cli_runner(state_root()).wait_for_mount("qz", "/data/two"));
    guest("qz", "umount /data/one");
    auto r = qmpkit({"detach-disk", "qz", "one"});
    EXPECT_EQ(r.code, 0) << r.err;
    qmpkit({"destroy", "qz"});
}

TEST_F(lifecycle_test, commands_on_one_vm_take_turns) {
    // One command holds the VM for a while; a second one waits for it, a third gives up.
    std::thread slow([] { qmpkit({"shell", "shared", "--", "sleep 2"}); });
    std::this_thread::sleep_for(500ms);
    const auto start = std::chrono::steady_clock::now();
    auto waited = qmpkit({"qmp", "shared", "query-status"});
    const auto waited_for = std::chrono::steady_clock::now() - start;
    slow.join();
    EXPECT_EQ(waited.code, 0) << waited.err;
    EXPECT_GT(waited_for, 1s);

    std::thread slow_again([] { qmpkit({"shell", "shared", "--", "sleep 2"}); });
    std::this_thread::sleep_for(500ms);
    auto impatient = qmpkit({"--lock-timeout", "0.2", "qmp", "shared", "query-status"});
    slow_again.join();
    EXPECT_EQ(impatient.code, 1);
    EXPECT_NE(impatient.err.find("busy"), std::string::npos) << impatient.err;
    EXPECT_NE(impatient.err.find("running a guest command"), std::string::npos) << impatient.err;
}

TEST_F(lifecycle_test, events_stream_on_their_own_monitor_while_commands_run) {
    cli_result events;
    std::thread watcher([&] {
        events = qmpkit({"events", "shared", "STOP", "RESUME", "--count", "2", "--timeout", "30"});
    });
    std::this_thread::sleep_for(700ms);
    EXPECT_EQ(qmpkit({"qmp", "shared", "stop"}).code, 0);
    EXPECT_EQ(qmpkit({"qmp", "shared", "cont"}).code, 0);
    watcher.join();
    EXPECT_EQ(events.code, 0) << events.err;
    EXPECT_NE(events.out.find("\"event\":\"STOP\""), std::string::npos) << events.out;
    EXPECT_NE(events.out.find("\"event\":\"RESUME\""), std::string::npos) << events.out;
}

TEST_F(lifecycle_test, files_in_the_state_directory_are_private) {
    launcher::state_directory dir(state_root(), "shared");
    EXPECT_EQ(std::filesystem::status(dir.path()).permissions() & std::filesystem::perms::all,
              std::filesystem::perms::owner_all);
    for (const auto& f : {dir.qmp_socket(), dir.events_socket(), dir.shell_socket(),
                          dir.console_socket(), dir.qemu_log(), dir.runtime_file()}) {
        auto others = std::filesystem::status(f).permissions() &
                      (std::filesystem::perms::group_all | std::filesystem::perms::others_all);
        EXPECT_EQ(others, std::filesystem::perms::none) << f;
    }
}

// --- cases that end their VM ------------------------------------------------------------------

TEST_F(lifecycle_test, run_in_the_foreground_shuts_down_gracefully_on_sigterm) {
    auto def = test::write_tiny_guest("fg", scratch_->path());
    foreground_run run(def, "fg");
    ASSERT_TRUE(run.started());
    auto ready = qmpkit({"wait-ready", "fg", "--timeout", "120"});
    ASSERT_EQ(ready.code, 0) << ready.err;
    EXPECT_EQ(guest("fg", "echo alive"), "alive\n");
    EXPECT_EQ(run.terminate(), 0) << "0: the guest powered off; 6: it had to be stopped";
    auto record = launcher::read_exit_record(launcher::state_directory(state_root(), "fg"));
    ASSERT_TRUE(record);
    EXPECT_EQ(record->state, "shutoff");
    EXPECT_EQ(record->reason, "guest-shutdown");
    EXPECT_FALSE(record->forced);
}

// A CI task's entry point: resets replace the qemu `run` started (each standby has a supervisor
// of its own), and `run` must last as long as the VM, then end with the VM's real ending.
TEST_F(lifecycle_test, run_lasts_through_standby_resets_and_still_shuts_down_on_sigterm) {
    auto def = test::write_tiny_guest("fgreset", scratch_->path());
    foreground_run run(def, "fgreset");
    ASSERT_TRUE(run.started());
    ASSERT_EQ(qmpkit({"wait-ready", "fgreset", "--timeout", "120"}).code, 0);
    ASSERT_EQ(qmpkit({"reset-point", "create", "fgreset", "clean"}).code, 0);
    const launcher::state_directory dir(state_root(), "fgreset");
    // Logs that resets made long are moved aside (LOG.1) when the next qemu starts.
    for (const auto& log : {dir.qemu_log(), dir.supervisor_log()})
        std::ofstream(log, std::ios::app) << std::string(5u << 20, 'x') << "\n";
    for (int i = 0; i < 5; ++i) {
        for (int wait = 0; wait < 300 && launcher::ready_standby_keys(dir).empty(); ++wait)
            std::this_thread::sleep_for(100ms);
        auto reset = qmpkit({"reset", "fgreset"});
        ASSERT_EQ(reset.code, 0) << reset.err;
        EXPECT_NE(reset.out.find("(standby"), std::string::npos) << reset.out;
        ASSERT_TRUE(run.still_running()) << "run ended with reset " << i + 1;
    }
    EXPECT_EQ(guest("fgreset", "echo alive"), "alive\n");
    // Standbys start at a low priority and the replaced qemus end at one: the promoted guest runs
    // at the normal priority, and the session of `run`'s caller (this test, which the first
    // qemu shared) was left alone.
    auto session_nice = [](const std::string& pid) {
        std::ifstream in("/proc/" + pid + "/autogroup");
        std::string group, word;
        int nice = 0;
        in >> group >> word >> nice;
        return nice;
    };
    const auto now = launcher::read_runtime_info(dir);
    ASSERT_TRUE(now);
    const auto qemu = std::to_string(now->qemu_pid);
    EXPECT_EQ(session_nice(qemu), 0);
    for (const auto& task : fs::directory_iterator("/proc/" + qemu + "/task"))
        EXPECT_EQ(::getpriority(PRIO_PROCESS,
                                static_cast<id_t>(std::stoi(task.path().filename().string()))),
                  0)
            << "qemu thread " << task.path().filename();
    EXPECT_EQ(session_nice("self"), 0) << "a reset lowered the session of run's caller";
    EXPECT_EQ(::getpriority(PRIO_PROCESS, 0), 0);
    for (const auto& log : {dir.qemu_log(), dir.supervisor_log()}) {
        const fs::path old = log.string() + ".1";
        ASSERT_TRUE(fs::exists(old)) << log;
        EXPECT_GT(fs::file_size(old), 5u << 20) << old;
        EXPECT_LT(fs::file_size(log), 1u << 20) << log;
    }
    EXPECT_NE(launcher::read_file(dir.qemu_log()).find("--- qmpkit: starting a standby"),
              std::string::npos);
    EXPECT_EQ(run.terminate(), 0) << "0: the guest powered off; 6: it had to be stopped";
    auto record = launcher::read_exit_record(dir);
    ASSERT_TRUE(record);
    EXPECT_EQ(record->state, "shutoff");
    EXPECT_FALSE(record->forced);
    EXPECT_FALSE(launcher::is_running(dir));
    EXPECT_TRUE(launcher::list_standbys(dir).empty()) << "standbys outlived the VM";
}

// Killing a VM's supervisor and qemu (as an OOM killer or `kill -9` would) leaves its RAM file
// in /dev/shm and its warm standbys waiting; `gc` finds and removes exactly those.
// The template strategy stops `run`'s qemu itself and starts another: `run` records the first
// qemu's end and follows the next, and the reset does not wait for `run` to exit.
TEST_F(lifecycle_test, run_lasts_through_template_resets) {
    auto def = test::write_tiny_guest("fgtemplate", scratch_->path(), {{"system"}},
                                      "reset: {strategy: template}\n");
    foreground_run run(def, "fgtemplate");
    ASSERT_TRUE(run.started());
    ASSERT_EQ(qmpkit({"wait-ready", "fgtemplate", "--timeout", "120"}).code, 0);
    ASSERT_EQ(qmpkit({"reset-point", "create", "fgtemplate", "clean"}).code, 0);
    for (int i = 0; i < 2; ++i) {
        const auto t0 = std::chrono::steady_clock::now();
        auto reset = qmpkit({"reset", "fgtemplate"});
        ASSERT_EQ(reset.code, 0) << reset.err;
        EXPECT_NE(reset.out.find("(template"), std::string::npos) << reset.out;
        EXPECT_LT(std::chrono::steady_clock::now() - t0, 10s) << "the reset waited for run";
        ASSERT_TRUE(run.still_running()) << "run ended with reset " << i + 1;
    }
    EXPECT_EQ(guest("fgtemplate", "echo alive"), "alive\n");
    EXPECT_EQ(run.terminate(), 0);
    const launcher::state_directory dir(state_root(), "fgtemplate");
    EXPECT_FALSE(launcher::is_running(dir));
}

TEST_F(lifecycle_test, gc_removes_what_a_killed_vm_left_and_nothing_a_running_one_uses) {
    const launcher::state_directory dir(state_root(), "litter");
    std::filesystem::path def;
    ASSERT_NO_FATAL_FAILURE(start_with_a_standby("litter", def));
    const auto ram = dir.ram_file();
    ASSERT_TRUE(std::filesystem::exists(ram));
    const auto runtime = launcher::read_runtime_info(dir);
    ASSERT_TRUE(runtime);
    ::kill(runtime->supervisor_pid, SIGKILL);
    ::kill(runtime->qemu_pid, SIGKILL);
    launcher::wait_for_exit(runtime->qemu_pid, 10s);

    ASSERT_GT(qemus_under(dir.path()), 0) << "the standbys should still wait";

    {
        // A VM whose lock stays held is not looked at, and gc says so.
        // (The standbys' preparation may still hold it for a moment: wait for that.)
        auto held = launcher::vm_lock::acquire(dir.lock_file(), "a test holding the VM", 10s);
        auto busy = qmpkit({"--lock-timeout", "0.2", "gc", "--dry-run"});
        EXPECT_EQ(busy.code, 1) << busy.out;
        EXPECT_NE(busy.err.find("VM 'litter' is busy"), std::string::npos) << busy.err;
        EXPECT_EQ(busy.out.find(ram.string()), std::string::npos) << busy.out;
    }
    // A standby preparation may take the lock for a moment: gc waits for it like any command.
    auto dry = qmpkit({"gc", "--dry-run"});
    ASSERT_EQ(dry.code, 0) << dry.err;
    EXPECT_NE(dry.out.find(ram.string()), std::string::npos) << dry.out;
    EXPECT_NE(dry.out.find("standby"), std::string::npos) << dry.out;
    EXPECT_TRUE(std::filesystem::exists(ram)) << "--dry-run removed something";

    auto r = qmpkit({"--json", "gc"});
    ASSERT_EQ(r.code, 0) << r.err;
    bool ram_reported = false;
    const auto removed = json::parse(r.out);
    // Tests running beside this one may have left RAM files of their own: only ours count.
    for (const auto& item : removed.as_array()) {
        const auto& o = item.as_object();
        if (o.at("vm").as_string().empty())
            continue;
        EXPECT_EQ(o.at("vm").as_string(), "litter") << r.out;
        EXPECT_TRUE(o.at("removed").as_bool()) << r.out;
        ram_reported = ram_reported || (o.at("what").as_string() == "RAM file" &&
                                        o.at("bytes").to_number<std::uint64_t>() > 0);
    }
    EXPECT_TRUE(ram_reported) << r.out;
    EXPECT_FALSE(std::filesystem::exists(ram));
    for (int i = 0; i < 50 && qemus_under(dir.path()) > 0; ++i)
        std::this_thread::sleep_for(100ms);
    EXPECT_EQ(qemus_under(dir.path()), 0);
    EXPECT_TRUE(launcher::list_standbys(dir).empty());

    // The fixture's VM runs on: its RAM file and its qemu were left alone.
    const launcher::state_directory shared(state_root(), "shared");
    EXPECT_TRUE(std::filesystem::exists(shared.ram_file()));
    EXPECT_EQ(guest("shared", "echo alive"), "alive\n");
    const auto again_gc = qmpkit({"gc"});
    EXPECT_EQ(again_gc.out.find(state_root().string()), std::string::npos) << again_gc.out;
    EXPECT_EQ(again_gc.out.find(shared.ram_file().string()), std::string::npos) << again_gc.out;

    // And the killed VM starts again.
    auto again = qmpkit({"start", def.string(), "--wait-ready"});
    EXPECT_EQ(again.code, 0) << again.err;
    qmpkit({"destroy", "litter"});
}

// A harness that deletes a VM's state directory without stopping it (its scratch directory
// removed at the end of a run), while standbys wait or are being prepared: every qemu of the VM
// stops, since nothing could reach it any more.
TEST_F(lifecycle_test, removing_a_vms_state_directory_stops_its_qemus) {
    const launcher::state_directory dir(state_root(), "dropped");
    std::filesystem::path def;
    ASSERT_NO_FATAL_FAILURE(start_with_a_standby("dropped", def));
    ASSERT_GE(qemus_under(dir.path()), 2) << "the VM's qemu and a standby";
    // As a harness's `rm -rf` would be, when it fails on a file made meanwhile (the standbys'
    // preparation still writes its log there): tried again until the directory is gone.
    for (int attempt = 0; attempt < 50 && std::filesystem::exists(dir.path()); ++attempt) {
        std::error_code ec;
        std::filesystem::remove_all(dir.path(), ec);
        if (ec)
            std::this_thread::sleep_for(100ms);
    }
    ASSERT_FALSE(std::filesystem::exists(dir.path()));
    for (int wait = 0; wait < 300 && qemus_under(dir.path()) > 0; ++wait)
        std::this_thread::sleep_for(100ms);
    EXPECT_EQ(qemus_under(dir.path()), 0) << "qemus of a removed VM still run after 30 s";
}

// A guest copied by a clone or put back by a reset learns it through its VM generation ID: every
// qemu gets a new one, and loading a state hands it to the guest (ACPI).
TEST_F(lifecycle_test, vmgenid_differs_in_every_clone_and_changes_on_a_reset) {
    auto def = test::write_tiny_guest("genid", scratch_->path(), {{"system"}}, "vmgenid: true\n");
    ASSERT_EQ(qmpkit({"start", def.string(), "--wait-ready"}).code, 0);
    auto generation_of = [](const std::string& vm) {
        auto r = qmpkit({"qmp", vm, "query-vm-generation-id"});
        EXPECT_EQ(r.code, 0) << r.err;
        const auto reply = json::parse(r.out);
        return std::string(reply.at("guid").as_string());
    };
    const auto origin = generation_of("genid");
    EXPECT_EQ(origin.size(), 36u) << origin;
    ASSERT_EQ(qmpkit({"reset-point", "create", "genid", "p"}).code, 0);
    auto cloned = qmpkit({"--json", "clone", "genid", "--count", "2"});
    ASSERT_EQ(cloned.code, 0) << cloned.err;
    std::set<std::string> ids{origin};
    const auto clones = json::parse(cloned.out);
    for (const auto& c : clones.at("clones").as_array()) {
        const std::string name(c.as_string());
        ids.insert(generation_of(name));
        EXPECT_EQ(guest(name, "echo alive"), "alive\n");
        qmpkit({"destroy", name});
        qmpkit({"remove", name});
    }
    EXPECT_EQ(ids.size(), 3u) << "clones share a generation id";
    auto reset = qmpkit({"reset", "genid"});
    ASSERT_EQ(reset.code, 0) << reset.err;
    EXPECT_TRUE(ids.insert(generation_of("genid")).second) << "a reset kept the generation id";
    EXPECT_EQ(guest("genid", "echo alive"), "alive\n");
    qmpkit({"destroy", "genid"});
}

// A guest reset to a point, or cloned from one, would run on the point's clock; with a guest
// agent its clock is the host's again.
TEST_F(lifecycle_test, a_reset_or_clone_sets_the_guest_clock_to_the_hosts) {
    auto def =
        test::write_tiny_guest("clock", scratch_->path(), {{"system"}}, "guest_agent: true\n");
    ASSERT_EQ(qmpkit({"start", def.string(), "--wait-ready"}).code, 0);
    ASSERT_EQ(qmpkit({"reset-point", "create", "clock", "p"}).code, 0);
    std::this_thread::sleep_for(4s); // the point's clock falls behind
    auto seconds_behind = [](const std::string& vm) {
        const auto guest_now = std::stoll(guest(vm, "date +%s"));
        const auto host_now = std::chrono::duration_cast<std::chrono::seconds>(
                                  std::chrono::system_clock::now().time_since_epoch())
                                  .count();
        return host_now - guest_now;
    };
    auto reset = qmpkit({"reset", "clock"});
    ASSERT_EQ(reset.code, 0) << reset.err;
    EXPECT_LE(std::llabs(seconds_behind("clock")), 1) << reset.err;
    auto cloned = qmpkit({"--json", "clone", "clock", "--count", "1"});
    ASSERT_EQ(cloned.code, 0) << cloned.err;
    const auto clones = json::parse(cloned.out);
    const std::string clone(clones.at("clones").as_array().at(0).as_string());
    EXPECT_LE(std::llabs(seconds_behind(clone)), 1) << cloned.err;
    qmpkit({"destroy", clone});
    qmpkit({"remove", clone});
    qmpkit({"destroy", "clock"});
}

TEST_F(lifecycle_test, qemu_killed_with_sigkill_is_reported_as_crashed) {
    auto def = test::write_tiny_guest("victim", scratch_->path());
    ASSERT_EQ(qmpkit({"start", def.string()}).code, 0);
    launcher::state_directory dir(state_root(), "victim");
    auto runtime = launcher::read_runtime_info(dir);
    ASSERT_TRUE(runtime);
    ::kill(runtime->qemu_pid, SIGKILL);
    std::string state;
    for (int i = 0; i < 100 && state != "crashed"; ++i) {
        std::this_thread::sleep_for(100ms);
        auto r = qmpkit({"--json", "status", "victim"});
        state = std::string(json::parse(r.out).at("state").as_string());
    }
    EXPECT_EQ(state, "crashed");
    auto r = qmpkit({"status", "victim"});
    EXPECT_NE(r.out.find("signal 9"), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("qemu's last words"), std::string::npos) << r.out;
    auto attach = qmpkit({"qmp", "victim", "query-status"});
    EXPECT_EQ(attach.code, 1);
    EXPECT_NE(attach.err.find("not running: crashed"), std::string::npos) << attach.err;
}

TEST_F(lifecycle_test, a_failed_launch_reports_qemu_and_leaves_nothing_behind) {
    auto def = test::write_tiny_guest("broken", scratch_->path(), {{"system"}},
                                      "extra_args: [\"-device\", \"no-such-device-model\"]\n");
    auto ram_files = [] {
        std::set<std::string> names;
        for (const auto& e : std::filesystem::directory_iterator("/dev/shm"))
            if (e.path().filename().string().rfind("qmpkit-broken-", 0) == 0)
                names.insert(e.path().filename().string());
        return names;
    };
    const auto ram_before = ram_files();
    auto r = qmpkit({"start", def.string()});
    EXPECT_EQ(r.code, 1);
    EXPECT_NE(r.err.find("qemu failed to start"), std::string::npos) << r.err;
    EXPECT_NE(r.err.find("exited with code 1"), std::string::npos) << r.err;
    EXPECT_NE(r.err.find("no-such-device-model"), std::string::npos) << r.err;
    EXPECT_NE(r.err.find("command: qemu-system-x86_64"), std::string::npos) << r.err;
    EXPECT_FALSE(std::filesystem::exists(scratch_->path() / "broken-system.qcow2"));
    EXPECT_EQ(ram_files(), ram_before) << "the RAM file made for qemu was left in /dev/shm";
}

// A second VM on an image the running one writes: qemu's own reason leads the message, not the
// closed QMP connection that revealed it.
TEST_F(lifecycle_test, a_launch_qemu_refuses_says_why_first) {
    ASSERT_EQ(qmpkit({"status", "shared"}).code, 0);
    auto yaml = test::tiny_guest_yaml("intruder", scratch_->path());
    const auto own = (scratch_->path() / "intruder-system.qcow2").string();
    const auto shared = (scratch_->path() / "shared-system.qcow2").string();
    ASSERT_NE(yaml.find(own), std::string::npos) << yaml;
    yaml.replace(yaml.find(own), own.size(), shared);
    const auto def = scratch_->path() / "intruder.yaml";
    test::write_text(def, yaml);
    auto r = qmpkit({"start", def.string()});
    EXPECT_EQ(r.code, 1);
    const auto headline = r.err.substr(0, r.err.find('\n'));
    EXPECT_NE(headline.find("qemu failed to start: -blockdev"), std::string::npos) << r.err;
    EXPECT_NE(headline.find("Failed to get \"write\" lock Is another process using the image [" +
                            shared + "]?"),
              std::string::npos)
        << r.err;
    EXPECT_NE(headline.find("(exited with code 1)"), std::string::npos) << r.err;
    EXPECT_EQ(qmpkit({"status", "shared"}).code, 0) << "the running VM is untouched";
}

TEST_F(lifecycle_test, an_invalid_definition_is_refused_before_anything_happens) {
    auto def = scratch_->path() / "bad.yaml";
    test::write_text(def, test::tiny_guest_yaml("bad", scratch_->path(), {{"system", "12QB"}}));
    auto r = qmpkit({"start", def.string()});
    EXPECT_EQ(r.code, 2);
    EXPECT_NE(r.err.find("bad.yaml:"), std::string::npos) << r.err;
    EXPECT_NE(r.err.find("12QB"), std::string::npos) << r.err;
    EXPECT_FALSE(std::filesystem::exists(state_root() / "bad"));
    EXPECT_FALSE(std::filesystem::exists(scratch_->path() / "bad-system.qcow2"));
}

} // namespace
