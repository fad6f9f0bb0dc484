// `qmpkit reset` with a real qemu and the tiny guest, for each strategy (loadvm, template,
// standby): the seeds-style check after each reset, a hundred resets without leaks, a damaged
// reset point failing cleanly, and clones. Each strategy boots one VM, shared by its tests.

#include "bare_qemu.hpp"
#include "cli_runner.hpp"
#include "processes.hpp"
#include "tiny_guest.hpp"

#include <qmpkit/launcher/runtime_info.hpp>
#include <qmpkit/launcher/standby.hpp>
#include <qmpkit/launcher/state_directory.hpp>
#include <qmpkit/snapshot/vm_reset.hpp>

#include <boost/json.hpp>

#include <malloc.h>
#if defined(__SANITIZE_ADDRESS__)
// From the sanitizer runtime; GCC ships no header declaring it.
extern "C" std::size_t __sanitizer_get_current_allocated_bytes();
#endif
#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>
#include <limits>
#include <map>
#include <memory>
#include <set>
#include <thread>

namespace {

using namespace qmpkit;
using test::processes_mentioning;
using namespace std::chrono_literals;
namespace fs = std::filesystem;
namespace json = boost::json;

std::size_t open_descriptors() {
    return static_cast<std::size_t>(
        std::distance(fs::directory_iterator("/proc/self/fd"), fs::directory_iterator()));
}

// Bytes the process has allocated and not freed, from the sanitizer's allocator when there is
// one (it replaces malloc), else from glibc's.
long long heap_in_use() {
#if defined(__SANITIZE_ADDRESS__)
    return static_cast<long long>(__sanitizer_get_current_allocated_bytes());
#else
    const auto info = ::mallinfo2();
    return static_cast<long long>(info.uordblks + info.hblkhd);
#endif
}

// Names of the files under `dir`, with a standby's changing directory name made generic.
std::multiset<std::string> files_under(const fs::path& dir) {
    std::multiset<std::string> names;
    for (auto it = fs::recursive_directory_iterator(dir); it != fs::recursive_directory_iterator();
         ++it) {
        auto rel = fs::relative(it->path(), dir).string();
        // Made the first time a request queues behind a standby preparation, or the first time
        // standbys are asked for; not a leak.
        if (rel == "standby-queue.lock" || rel == "standby-wanted")
            continue;
        if (rel.rfind("standby.", 0) == 0 && rel != "standby.lock")
            rel = "standby.*" + rel.substr(std::min(rel.size(), rel.find('/')));
        // A reset's fresh overlays: overlays/<disk>.<random id>.qcow2
        if (rel.rfind("overlays/", 0) == 0 && rel.find('.') != std::string::npos)
            rel = rel.substr(0, rel.find('.')) + ".*.qcow2";
        names.insert(rel);
    }
    return names;
}

// What of a running VM is still in its stopped VM's state directory after up to a minute: its
// sockets, standbys, start directories. The VM's supervisor removes them once a standby
// preparation under way has ended, which runs at nice 19 and on a busy machine takes longer.
std::vector<std::string> running_files_left(const fs::path& dir) {
    const auto left = [&] {
        std::vector<std::string> files;
        for (const auto& e : fs::directory_iterator(dir)) {
            const auto file = e.path().filename().string();
            if ((file.rfind("standby.", 0) == 0 && file != "standby.lock") ||
                file.rfind("starting.", 0) == 0 || e.path().extension() == ".sock")
                files.push_back(file);
        }
        return files;
    };
    for (int i = 0; i < 600 && !left().empty(); ++i)
        std::this_thread::sleep_for(100ms);
    return left();
}

std::set<std::string> shm_files(const std::string& vm) {
    std::set<std::string> names;
    for (const auto& e : fs::directory_iterator("/dev/shm"))
        if (e.path().filename().string().rfind("qmpkit-" + vm + "-", 0) == 0)
            names.insert(e.path().filename().string());
    return names;
}

// One booted VM per strategy, shared by the tests and destroyed at the end.
class reset_test : public ::testing::TestWithParam<std::string> {
protected:
    static inline std::unique_ptr<test::scratch_dir> scratch_;
    static inline std::unique_ptr<test::cli_runner> run_;
    static inline std::map<std::string, bool> booted_;

    static void SetUpTestSuite() {
        scratch_ = std::make_unique<test::scratch_dir>();
        run_ = std::make_unique<test::cli_runner>(scratch_->path() / "state");
    }
    static void TearDownTestSuite() {
        for (const auto& [vm, ok] : booted_)
            (*run_)({"destroy", vm});
        for (const auto& vm : launcher::state_directory::list(scratch_->path() / "state"))
            (*run_)({"destroy", vm});
        run_.reset();
        scratch_.reset();
    }

    void SetUp() override {
        if (!test::qemu_available())
            GTEST_SKIP() << "qemu-system-x86_64 is not installed (scripts/setup installs it)";
    }

    // A failed case shows what its VM's supervisor and qemu logged last: the scratch directory
    // is gone once the suite ends.
    void TearDown() override {
        if (!HasFailure())
            return;
        for (const auto* log : {"supervisor.log", "qemu.log"}) {
            std::string text;
            for (const auto& line : launcher::tail_lines(state() / log, 25))
                text += "  " + line + "\n";
            ADD_FAILURE() << state() / log << " ends:\n" << text;
        }
    }

    const std::string& strategy() const { return GetParam(); }
    std::string vm() const { return "r" + strategy(); }
    test::cli_runner& run() const { return *run_; }
    fs::path state() const { return scratch_->path() / "state" / vm(); }

    // The strategy's VM, booted once, with "seed" in /mnt/f at its known state: reset point
    // "known" (or snapshot "known" for loadvm).
    void ensure_vm() {
        if (booted_.count(vm()))
            return;
        booted_[vm()] = true;
        auto def = test::write_tiny_guest(vm(), scratch_->path(), {{"system"}},
                                          "reset: {strategy: " + strategy() + "}\n");
        auto r = run()({"start", def.string(), "--wait-ready"});
        ASSERT_EQ(r.code, 0) << r.out << r.err;
        run().guest(vm(), "echo seed > /mnt/f; sync");
        boot_id_[vm()] = run().boot_id(vm());
        // Read before the snapshot, the counter is a lower bound of the one it holds: read
        // after, it may already be past it on a loaded machine.
        at_known_[vm()] = run().counter(vm());
        r = strategy() == "loadvm" ? run()({"snapshot", "create", vm(), "known"})
                                   : run()({"reset-point", "create", vm(), "known"});
        ASSERT_EQ(r.code, 0) << r.err;
        if (strategy() == "standby")
            wait_for_standby();
    }

    // Until the VM's pool of standbys is full (three ready ones) and no preparation is under way.
    void wait_for_standby() {
        const launcher::state_directory dir(scratch_->path() / "state", vm());
        auto ready = [&] {
            return launcher::ready_standby_keys(dir).size() == standby_pool &&
                   !launcher::standby_being_prepared(dir);
        };
        // Generous: under the sanitizers, on a loaded machine, each standby's qemu and
        // supervisor take seconds to start, and refills queue behind one another.
        bool settled = ready();
        for (int i = 0; i < 2400 && !settled; ++i) {
            std::this_thread::sleep_for(50ms);
            settled = ready();
        }
        ASSERT_TRUE(settled) << "no full pool of standbys after 120 s";
    }

    static constexpr std::size_t standby_pool = 3;

    // The seeds-style check: the disk and the RAM counter are the known state's, and the guest
    // was not rebooted. The counter is read first: it runs on while the checks run.
    void expect_known_state(long counter_before) {
        const auto after = run().counter(vm());
        EXPECT_LT(after, counter_before);
        EXPECT_GE(after, at_known_[vm()]);
        EXPECT_EQ(run().guest(vm(), "cat /mnt/f"), "seed\n");
        EXPECT_EQ(run()({"shell", vm(), "--", "test -e /mnt/g"}).code, 1)
            << "a file written after the known state survived";
        EXPECT_EQ(run().boot_id(vm()), boot_id_[vm()]) << "a reset is not a reboot";
    }

    // The counter, once the guest has run at least `seconds` past the known state.
    long counter_after_running(int seconds) {
        auto c = run().counter(vm());
        for (int i = 0; i < 100 && c < at_known_[vm()] + 10 * seconds; ++i) {
            std::this_thread::sleep_for(100ms);
            c = run().counter(vm());
        }
        return c;
    }

    static inline std::map<std::string, std::string> boot_id_;
    static inline std::map<std::string, long> at_known_;
};

TEST_P(reset_test, brings_back_disk_and_ram_and_keeps_the_qmp_socket_path) {
    ensure_vm();
    // --print-plan shows this strategy's way back, and changes nothing.
    run().guest(vm(), "echo planned > /mnt/g; sync");
    auto planned = run()({"--json", "reset", vm(), "--print-plan"});
    ASSERT_EQ(planned.code, 0) << planned.err;
    const auto plan = json::serialize(json::parse(planned.out));
    const std::string expected = strategy() == "loadvm"     ? "\"execute\":\"snapshot-load\""
                                 : strategy() == "template" ? "\"load-device-state\""
                                                            : "\"standby\"";
    EXPECT_NE(plan.find(expected), std::string::npos) << plan;
    EXPECT_EQ(run().guest(vm(), "cat /mnt/g"), "planned\n") << "a printed plan reset the VM";
    // So does that of a new reset point: the disks' transaction is in it, nothing is made.
    auto point = run()({"--json", "reset-point", "create", vm(), "planned", "--print-plan"});
    if (strategy() == "loadvm") {
        EXPECT_NE(point.code, 0) << "a loadvm VM's RAM is not in a file";
    } else {
        ASSERT_EQ(point.code, 0) << point.err;
        EXPECT_NE(point.out.find("\"transaction\""), std::string::npos) << point.out;
        EXPECT_FALSE(fs::exists(state() / "reset" / "planned")) << "a printed plan made the point";
    }
    for (int round = 0; round < 3; ++round) {
        run().guest(vm(), "echo dirty > /mnt/f; echo more > /mnt/g; sync");
        const auto before = counter_after_running(2);
        auto r = run()({"--json", "reset", vm()});
        ASSERT_EQ(r.code, 0) << r.err;
        auto result = json::parse(r.out).as_object();
        // The first standby reset may find its standby still starting up and wait for it, but
        // never falls back to the template once the standby is ready.
        EXPECT_EQ(result.at("strategy").as_string(), strategy());
        EXPECT_EQ(result.at("target").as_string(), "known");
        expect_known_state(before);
        // The socket path people know keeps working.
        auto status = run()({"qmp", vm(), "query-status", "--compact"});
        EXPECT_NE(status.out.find("\"running\":true"), std::string::npos)
            << status.out << status.err;
    }
    if (strategy() != "loadvm") {
        auto points = run()({"--json", "reset-point", "list", vm()});
        EXPECT_EQ(json::parse(points.out).as_array().size(), 1u);
    } else {
        auto refused = run()({"reset-point", "create", vm(), "p"});
        EXPECT_EQ(refused.code, 1);
        EXPECT_NE(refused.err.find("not file-backed"), std::string::npos) << refused.err;
    }
}

TEST_P(reset_test, paused_reset_leaves_the_guest_stopped_at_the_known_state) {
    ensure_vm();
    run().guest(vm(), "echo more > /mnt/g; sync");
    auto r = run()({"reset", vm(), "--paused"});
    ASSERT_EQ(r.code, 0) << r.err;
    auto status = run()({"qmp", vm(), "query-status", "--compact"});
    EXPECT_NE(status.out.find("\"running\":false"), std::string::npos) << status.out;
    ASSERT_EQ(run()({"qmp", vm(), "cont"}).code, 0);
    expect_known_state(std::numeric_limits<long>::max());
}

// A hundred resets through the library, in this process: afterwards the same processes, files,
// RAM files and descriptors as after the first, and no growth in memory.
TEST_P(reset_test, a_hundred_resets_leak_nothing) {
    ensure_vm();
    snapshot::manager_options options;
    options.state_root = scratch_->path() / "state";
    snapshot::vm_reset reset(vm(), options);
    reset.reset();
    if (strategy() == "standby")
        wait_for_standby();
    const auto files = files_under(state());
    const auto shm = shm_files(vm());
    const auto descriptors = open_descriptors();
    const auto heap = heap_in_use();
    const int qemus = processes_mentioning(state().string(), "qemu-system");
    EXPECT_EQ(qemus, strategy() == "standby" ? 1 + static_cast<int>(standby_pool) : 1)
        << "the VM's qemu (and its standbys)";

    std::map<std::string, int> used;
    std::map<std::string, int> fallbacks; // why, how often
    for (int i = 0; i < 100; ++i) {
        const auto r = reset.reset();
        ++used[r.strategy];
        if (!r.fallback.empty())
            ++fallbacks[r.fallback];
    }
    if (strategy() == "standby")
        wait_for_standby();
    // The standby may still be on its way after a reset that came quickly: then the reset waits
    // for it. Only a machine too busy to prepare one in 10 s makes a reset fall back (how often
    // resets find their standby at once is a speed figure, for bench/); a standby that failed,
    // or a pool left empty with nothing on its way, is a fault whatever the load.
    const auto timeouts = fallbacks.find(std::string(snapshot::reset_fallback::none_in_time));
    EXPECT_EQ(used[strategy()] + (timeouts == fallbacks.end() ? 0 : timeouts->second), 100)
        << "resets by another strategy: " << 100 - used[strategy()] << "\n"
        << [&] {
               std::string text;
               for (const auto& [why, times] : fallbacks)
                   text += "  " + std::to_string(times) + " times: " + why + "\n";
               text += "supervisor.log ends:\n";
               for (const auto& l : launcher::tail_lines(state() / "supervisor.log", 10))
                   text += l + "\n";
               return text;
           }();

    EXPECT_EQ(run().guest(vm(), "cat /mnt/f"), "seed\n");
    EXPECT_EQ(processes_mentioning(state().string(), "qemu-system"), qemus);
    EXPECT_EQ(files_under(state()), files);
    EXPECT_EQ(shm_files(vm()), shm);
    EXPECT_EQ(open_descriptors(), descriptors);
    // Heap bytes in use, not RSS: RSS also moves with the allocator's caching and with the
    // kernel's transparent huge pages, which have nothing to do with a leak.
    const auto grown = heap_in_use() - heap;
    RecordProperty("heap_growth_bytes", std::to_string(grown));
    EXPECT_LT(grown, 1 << 20) << "bytes more in use on the heap after 100 resets";
}

TEST_P(reset_test, clones_are_independent_vms_from_one_reset_point) {
    if (strategy() == "loadvm")
        GTEST_SKIP() << "clones come from reset points";
    ensure_vm();
    auto r = run()({"--json", "clone", vm(), "--count", "3"});
    ASSERT_EQ(r.code, 0) << r.err;
    const auto result = json::parse(r.out).as_object();
    std::vector<std::string> clones;
    for (const auto& n : result.at("clones").as_array())
        clones.emplace_back(n.as_string());
    ASSERT_EQ(clones.size(), 3u);
    EXPECT_EQ(clones[0], vm() + "-clone-1");

    for (const auto& c : clones) {
        EXPECT_EQ(run().guest(c, "cat /mnt/f"), "seed\n") << c;
        EXPECT_EQ(run().boot_id(c), boot_id_[vm()])
            << c << " is the VM at its point, not a new boot";
    }
    run().guest(clones[0], "echo mine > /mnt/only-here; sync");
    EXPECT_EQ(run()({"shell", clones[1], "--", "test -e /mnt/only-here"}).code, 1)
        << "a write in one clone is seen in another";
    EXPECT_EQ(run()({"shell", vm(), "--", "test -e /mnt/only-here"}).code, 1)
        << "a write in a clone is seen in its origin";
    EXPECT_EQ(run().guest(clones[0], "cat /mnt/only-here"), "mine\n");

    // A clone resets to the point like its origin.
    r = run()({"--json", "reset", clones[0]});
    ASSERT_EQ(r.code, 0) << r.err;
    EXPECT_EQ(run()({"shell", clones[0], "--", "test -e /mnt/only-here"}).code, 1);

    // The point cannot go while clones run on it; clones go with `remove` once stopped.
    r = run()({"reset-point", "delete", vm(), "known"});
    EXPECT_EQ(r.code, 1);
    EXPECT_NE(r.err.find("runs on reset point 'known'"), std::string::npos) << r.err;
    for (const auto& c : clones) {
        ASSERT_EQ(run()({"destroy", c}).code, 0);
        r = run()({"remove", c});
        ASSERT_EQ(r.code, 0) << r.err;
        EXPECT_FALSE(fs::exists(scratch_->path() / "state" / c));
    }
    EXPECT_TRUE(fs::exists(state() / "reset" / "known" / "ram")) << "the origin's point stays";
}

// qmpkit killed while it makes clones: the half-made ones (qemus waiting for the guest's
// state, or some with it and some without) are not VMs anyone asked for. The next clone removes
// them, qemus and files, and makes its own.
TEST_P(reset_test, clones_left_by_a_killed_clone_are_removed_by_the_next_one) {
    if (strategy() != "template")
        GTEST_SKIP() << "one strategy with reset points shows it";
    ensure_vm();
    const auto root = scratch_->path() / "state";
    for (const std::string step : {"clone.after-start", "clone.after-load"}) {
        ::setenv("QMPKIT_FAULT_AT", step.c_str(), 1);
        auto r = run()({"clone", vm(), "--count", "2", "--prefix", "half-"});
        ::unsetenv("QMPKIT_FAULT_AT");
        ASSERT_NE(r.err.find("fault injection: " + step), std::string::npos) << r.out << r.err;
        EXPECT_TRUE(fs::exists(root / "half-1")) << "the killed clone left nothing to clean up";

        r = run()({"--json", "clone", vm(), "--count", "1", "--prefix", "half-"});
        ASSERT_EQ(r.code, 0) << r.err;
        EXPECT_EQ(json::parse(r.out).at("clones").as_array().at(0).as_string(), "half-1");
        EXPECT_FALSE(fs::exists(root / "half-2")) << step << ": a half-made clone is left";
        EXPECT_EQ(processes_mentioning((root / "half-2").string()), 0)
            << step << ": a half-made clone's qemu is left";
        EXPECT_FALSE(fs::exists(root / "half-1" / "clone-in-progress.json"));
        EXPECT_EQ(run().guest("half-1", "cat /mnt/f"), "seed\n");
        ASSERT_EQ(run()({"destroy", "half-1"}).code, 0);
        ASSERT_EQ(run()({"remove", "half-1"}).code, 0);
    }
}

// qmpkit killed (or the qemu it is bringing in) at each step of a reset: the next reset works
// and leaves the same processes and files as any other.
// Snapshots taken while the VM runs on a reset point's overlays live in (or are built on) those
// overlays: a reset must keep them, and they must still revert.
TEST_P(reset_test, snapshots_taken_after_the_point_survive_resets) {
    if (strategy() != "template")
        GTEST_SKIP() << "one strategy with reset points shows it";
    ensure_vm();
    run().guest(vm(), "echo later > /mnt/g; sync");
    ASSERT_EQ(run()({"snapshot", "create", vm(), "later", "--disk-only"}).code, 0);
    ASSERT_EQ(run()({"snapshot", "create", vm(), "inside"}).code, 0);
    auto r = run()({"reset", vm()});
    ASSERT_EQ(r.code, 0) << r.err;
    r = run()({"reset", vm()}); // twice: the second one sweeps what nothing uses
    ASSERT_EQ(r.code, 0) << r.err;
    expect_known_state(std::numeric_limits<long>::max());

    r = run()({"snapshot", "revert", vm(), "later", "--running"});
    ASSERT_EQ(r.code, 0) << r.err;
    EXPECT_EQ(run().guest(vm(), "cat /mnt/g"), "later\n");
    // The internal one lives in an overlay the VM no longer runs on: deleted with qemu-img.
    r = run()({"snapshot", "delete", vm(), "inside"});
    EXPECT_EQ(r.code, 0) << r.err;
    r = run()({"snapshot", "delete", vm(), "later", "--metadata"});
    EXPECT_EQ(r.code, 0) << r.err;
    r = run()({"reset", vm()});
    ASSERT_EQ(r.code, 0) << r.err;
    expect_known_state(std::numeric_limits<long>::max());
    // With no snapshot left to keep them, the old overlays go: only the running one remains.
    std::size_t overlays = 0;
    for ([[maybe_unused]] const auto& e : fs::directory_iterator(state() / "overlays"))
        ++overlays;
    EXPECT_EQ(overlays, 1u);
}

// A revert that fails half-way leaves qemu in run state restore-vm with the guest half-loaded:
// nothing may save that, and a migration from it would make qemu abort. A reset repairs it.
TEST_P(reset_test, a_half_loaded_guest_is_never_saved) {
    if (strategy() != "template")
        GTEST_SKIP() << "one strategy with reset points shows it";
    ensure_vm();
    // A serial port the snapshot has and the VM then loses: loading the snapshot fails in the
    // middle of the device state, after the disks were switched.
    auto qmp = [&](std::vector<std::string> args) {
        args.insert(args.begin(), {"qmp", vm()});
        auto r = run()(args);
        EXPECT_EQ(r.code, 0) << r.err;
        return r;
    };
    qmp({"chardev-add", R"({"id":"extra","backend":{"type":"null","data":{}}})"});
    qmp({"device_add", "driver=virtserialport", "bus=vser0.0", "chardev=extra", "id=extra0",
         "name=org.qmpkit.extra"});
    ASSERT_EQ(run()({"snapshot", "create", vm(), "with-port"}).code, 0);
    qmp({"device_del", "id=extra0"});
    auto r = run()({"snapshot", "revert", vm(), "with-port"});
    ASSERT_NE(r.code, 0) << "loading a port the VM no longer has must fail";
    auto status = qmp({"query-status", "--compact"});
    ASSERT_NE(status.out.find("restore-vm"), std::string::npos) << status.out;

    for (auto args : std::vector<std::vector<std::string>>{
             {"reset-point", "create", vm(), "half"},
             {"snapshot", "create", vm(), "half"},
             {"snapshot", "create", vm(), "half-ext", "--disk-only"}}) {
        r = run()(args);
        EXPECT_EQ(r.code, 1) << args[0] << " " << args[1] << ": " << r.err;
        EXPECT_NE(r.err.find("restore-vm"), std::string::npos) << r.err;
        // qemu is still there, still in the same state.
        EXPECT_NE(qmp({"query-status", "--compact"}).out.find("restore-vm"), std::string::npos);
    }
    auto points = run()({"--json", "reset-point", "list", vm()});
    EXPECT_EQ(json::parse(points.out).as_array().size(), 1u) << points.out;

    // A reset brings back the known state; the snapshot goes so later tests see the old tree.
    r = run()({"reset", vm()});
    ASSERT_EQ(r.code, 0) << r.err;
    expect_known_state(std::numeric_limits<long>::max());
    r = run()({"snapshot", "delete", vm(), "with-port"});
    EXPECT_EQ(r.code, 0) << r.err;
}

TEST_P(reset_test, a_reset_killed_at_any_step_is_undone_by_the_next_one) {
    if (strategy() == "loadvm")
        GTEST_SKIP() << "snapshot-load faults are covered by the fault injection tests";
    ensure_vm();
    ASSERT_EQ(run()({"reset", vm()}).code, 0);
    if (strategy() == "standby")
        wait_for_standby();
    const auto files = files_under(state());
    const int qemus = processes_mentioning(state().string(), "qemu-system");
    const std::vector<std::pair<std::string, int>> faults =
        strategy() == "template"
            ? std::vector<std::pair<std::string, int>>{{"reset.template.after-stop", 137},
                                                       {"reset.template.after-start", 137},
                                                       {"reset.template.after-start:qemu", 3},
                                                       {"reset.template.after-load", 137}}
            : std::vector<std::pair<std::string, int>>{{"reset.standby.before-load:qemu", 0},
                                                       {"reset.standby.after-load", 137},
                                                       {"reset.standby.after-promote", 137}};
    for (const auto& [fault, code] : faults) {
        SCOPED_TRACE(fault);
        run().guest(vm(), "echo more > /mnt/g; sync");
        ::setenv("QMPKIT_FAULT_AT", fault.c_str(), 1);
        auto r = run()({"--json", "reset", vm()});
        ::unsetenv("QMPKIT_FAULT_AT");
        EXPECT_EQ(r.code, code) << r.out << r.err;
        if (fault == "reset.standby.before-load:qemu" && r.code == 0) {
            // The reset fell back to the template and says why.
            const auto result = json::parse(r.out);
            EXPECT_EQ(result.at("strategy").as_string(), "template") << r.out;
            EXPECT_TRUE(std::string_view(result.at("fallback").as_string())
                            .starts_with(snapshot::reset_fallback::standby_failed))
                << r.out;
        }
        r = run()({"--json", "reset", vm()});
        ASSERT_EQ(r.code, 0) << r.err;
        expect_known_state(std::numeric_limits<long>::max());
        if (strategy() == "standby")
            wait_for_standby();
        // The qemu a killed reset replaced quits by itself.
        for (int i = 0; i < 100 && processes_mentioning(state().string(), "qemu-system") > qemus;
             ++i)
            std::this_thread::sleep_for(100ms);
        EXPECT_EQ(processes_mentioning(state().string(), "qemu-system"), qemus);
        EXPECT_EQ(files_under(state()), files);
    }
}

// Last: it damages the point.
// A CLI reset returns once the guest runs: the replaced qemu's clean-up and the next standby's
// preparation come after. Two resets back to back, no pause between them, both bring the guest
// back to the point.
TEST_P(reset_test, back_to_back_resets_return_before_the_clean_up_and_both_reset) {
    if (strategy() != "standby")
        GTEST_SKIP() << "about the standby strategy";
    ensure_vm();
    wait_for_standby();
    const launcher::state_directory dir(scratch_->path() / "state", vm());
    run().guest(vm(), "echo more > /mnt/g; sync");
    const auto before = counter_after_running(2);
    auto first = run()({"--json", "reset", vm()});
    ASSERT_EQ(first.code, 0) << first.err;
    // Returned while the pool is being refilled (a preparation takes far longer than this).
    EXPECT_TRUE(launcher::standby_being_prepared(dir)) << "the reset waited for its clean-up";
    auto second = run()({"--json", "-v", "reset", vm()});
    ASSERT_EQ(second.code, 0) << second.err;
    EXPECT_EQ(json::parse(first.out).at("strategy").as_string(), "standby");
    EXPECT_EQ(json::parse(second.out).at("strategy").as_string(), "standby") << second.err;
    expect_known_state(before);
    // And once more with the pool drained: the standby on its way is taken (-v says so).
    auto third = run()({"--json", "-v", "reset", vm()});
    ASSERT_EQ(third.code, 0) << third.err;
    EXPECT_EQ(json::parse(third.out).at("strategy").as_string(), "standby") << third.err;
    EXPECT_NE(third.err.find("reset: finding the standby"), std::string::npos) << third.err;
    expect_known_state(std::numeric_limits<long>::max());
    wait_for_standby();
}

// A VM whose definition names no strategy (auto) resets by standby once it has a reset point,
// and destroying it right after resets, while standbys are being prepared, leaves no qemu,
// supervisor, standby or RAM file behind.
TEST_P(reset_test, auto_resets_by_standby_and_destroy_leaves_nothing) {
    if (strategy() != "standby")
        GTEST_SKIP() << "one auto VM is enough";
    const std::string name = "rauto";
    auto def = test::write_tiny_guest(name, scratch_->path(), {{"system"}});
    ASSERT_EQ(run()({"start", def.string(), "--wait-ready"}).code, 0);
    const auto state_dir = scratch_->path() / "state" / name;
    auto r = run()({"reset-point", "create", name, "p"});
    ASSERT_EQ(r.code, 0) << r.err;
    for (int i = 0; i < 2; ++i) {
        r = run()({"--json", "reset", name});
        ASSERT_EQ(r.code, 0) << r.err;
        EXPECT_EQ(json::parse(r.out).at("strategy").as_string(), "standby") << r.out;
    }
    EXPECT_EQ(run().guest(name, "echo alive"), "alive\n");
    r = run()({"destroy", name});
    ASSERT_EQ(r.code, 0) << r.err;
    for (int i = 0; i < 100 && processes_mentioning(state_dir.string()) > 0; ++i)
        std::this_thread::sleep_for(100ms);
    EXPECT_EQ(processes_mentioning(state_dir.string()), 0) << "a qemu or supervisor is left";
    EXPECT_EQ(running_files_left(state_dir), std::vector<std::string>{});
    EXPECT_EQ(shm_files(name), std::set<std::string>{});
}

TEST_P(reset_test, zz_a_reset_point_missing_its_ram_fails_cleanly) {
    if (strategy() == "loadvm")
        GTEST_SKIP() << "loadvm has no reset point";
    ensure_vm();
    const auto files = files_under(state());
    fs::remove(state() / "reset" / "known" / "ram");
    auto r = run()({"reset", vm()});
    EXPECT_EQ(r.code, 1);
    EXPECT_NE(r.err.find("reset point 'known' is damaged"), std::string::npos) << r.err;
    // Refused before anything was touched: the VM runs on.
    EXPECT_EQ(run().guest(vm(), "echo still here"), "still here\n");
    auto now = files_under(state());
    now.insert("reset/known/ram");
    EXPECT_EQ(now, files);
}

// After everything else: a VM that stops takes its standby, supervisors and RAM file with it.
TEST_P(reset_test, zzz_stopping_the_vm_leaves_nothing_running) {
    ensure_vm();
    auto r = run()({"shutdown", vm()});
    ASSERT_EQ(r.code, 0) << r.err;
    for (int i = 0; i < 50 && processes_mentioning(state().string()) > 0; ++i)
        std::this_thread::sleep_for(100ms);
    EXPECT_EQ(processes_mentioning(state().string()), 0) << "a qemu or supervisor is left";
    EXPECT_EQ(running_files_left(state()), std::vector<std::string>{});
    EXPECT_EQ(shm_files(vm()), std::set<std::string>{});
    booted_.erase(vm());
}

INSTANTIATE_TEST_SUITE_P(strategies, reset_test, ::testing::Values("loadvm", "template", "standby"),
                         [](const auto& info) { return info.param; });

} // namespace
