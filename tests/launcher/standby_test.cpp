// Standbys, without qemu: discarding them never stops the one a reset is promoting, and a
// preparation whose turn comes after a later request for other standbys makes none.

#include "launcher/test_support.hpp"

#include <qmpkit/launcher/runtime_info.hpp>
#include <qmpkit/launcher/standby.hpp>
#include <qmpkit/launcher/state_directory.hpp>
#include <qmpkit/launcher/vm_lock.hpp>

#include <gtest/gtest.h>

#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdlib>
#include <fcntl.h>
#include <filesystem>
#include <fstream>
#include <spawn.h>
#include <sstream>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>

extern char** environ;

namespace qmpkit::launcher {
namespace {

namespace fs = std::filesystem;

// A process whose command line names `dir`, as a standby qemu's names its directory: a shell
// waiting on a sleep, in a process group of its own (so that the sleep goes with it) and with no
// descriptor of the test's (ctest waits for its output pipe to close).
pid_t start_naming(const fs::path& dir) {
    const std::string script = "sleep 60; :";
    const std::string name = dir.string();
    char* argv[] = {const_cast<char*>("sh"), const_cast<char*>("-c"),
                    const_cast<char*>(script.c_str()), const_cast<char*>(name.c_str()), nullptr};
    posix_spawn_file_actions_t files;
    posix_spawnattr_t attributes;
    posix_spawn_file_actions_init(&files);
    for (int fd : {0, 1, 2})
        posix_spawn_file_actions_addopen(&files, fd, "/dev/null", O_RDWR, 0);
    posix_spawnattr_init(&attributes);
    posix_spawnattr_setflags(&attributes, POSIX_SPAWN_SETPGROUP);
    posix_spawnattr_setpgroup(&attributes, 0);
    pid_t pid = -1;
    EXPECT_EQ(::posix_spawnp(&pid, "sh", &files, &attributes, argv, environ), 0);
    posix_spawn_file_actions_destroy(&files);
    posix_spawnattr_destroy(&attributes);
    return pid;
}

bool alive(pid_t pid) {
    // Reaps it if it has ended (it is this process's child).
    return ::waitpid(pid, nullptr, WNOHANG) == 0;
}

// Once the VM's runtime record names a standby's qemu (promote_standby writes it before the
// standby's marker goes), that qemu is the VM's, even while its standby directory is still being
// removed.
TEST(standby_discard, a_promoted_standby_is_the_vms_and_is_left_running) {
    const test::temp_dir root;
    const state_directory vm(root.path(), "vm");
    vm.create();
    const state_directory standby(vm.path(), "standby.0a1b2c3d");
    fs::create_directories(standby.path());
    const pid_t qemu = start_naming(standby.path());
    ASSERT_GT(qemu, 0);
    runtime_info own;
    own.qemu_pid = qemu;
    write_runtime_info(standby, own); // its marker is gone: a promotion is half done

    // The VM's record names it: the promotion wrote it first. It stays.
    write_runtime_info(vm, own);
    discard_standbys(vm);
    EXPECT_TRUE(alive(qemu)) << "the promoted standby was stopped";
    EXPECT_TRUE(fs::exists(standby.path())) << "the promotion removes its directory itself";

    // Named by nothing: a left-over standby, stopped and removed.
    runtime_info other;
    other.qemu_pid = ::getpid();
    write_runtime_info(vm, other);
    discard_standbys(vm);
    for (int i = 0; i < 100 && alive(qemu); ++i)
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
    EXPECT_FALSE(alive(qemu));
    EXPECT_FALSE(fs::exists(standby.path()));
    ::kill(-qemu, SIGKILL); // and its sleep
}

std::string text_of(const fs::path& file) {
    std::ifstream in(file);
    std::stringstream text;
    text << in.rdbuf();
    return text.str();
}

// Two requests wait behind a preparation under way, the first for one key and the second for
// another (resets to one point, then to another): once the preparation ends, the first request's
// turn makes nothing, since its standbys are no longer wanted, and the second fills its pool.
// Without that, whichever came last would discard the other's standbys and fill its own.
TEST(standby_preparation, a_late_preparation_for_a_key_no_longer_wanted_makes_nothing) {
    const test::temp_dir root;
    const state_directory vm(root.path(), "vm");
    vm.create();
    auto plan_for = [&](const std::string& key) {
        standby_plan plan;
        plan.key = key;
        // The VM is not running, so no standby is started; what the preparer got to is seen
        // from its last step.
        plan.prepare = [] { return std::pair<vm_definition, std::vector<fs::path>>{}; };
        plan.finish = [done = root.path() / ("finished-" + key)] { std::ofstream{done}; };
        return plan;
    };
    auto under_way = vm_lock::acquire(vm.standby_lock(), "a preparation under way", {});
    prepare_standby_in_background(vm, plan_for("old"));
    prepare_standby_in_background(vm, plan_for("new"));
    under_way.release();

    const auto log = vm.supervisor_log();
    for (int i = 0; i < 500 && !(fs::exists(root.path() / "finished-new") &&
                                 text_of(log).find("no longer wanted") != std::string::npos);
         ++i)
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
    EXPECT_TRUE(fs::exists(root.path() / "finished-new")) << text_of(log);
    EXPECT_NE(text_of(log).find("standbys for old are no longer wanted"), std::string::npos)
        << text_of(log);
    EXPECT_FALSE(fs::exists(root.path() / "finished-old")) << text_of(log);
    // Both requests' processes are done with the locks.
    EXPECT_NO_THROW(vm_lock::acquire(vm.standby_lock(), "test", std::chrono::seconds(10)));
    // The requests' intermediate processes (they exit at once; the library reaps them on a later
    // call, which this test does not make).
    while (::waitpid(-1, nullptr, 0) > 0) {
    }
}

// A request that finds a preparation under way queues behind it in a process of its own, which
// runs at nice 19 and may be scheduled late. From the moment the call returns until that process
// has prepared, someone looking for standbys on their way (a reset deciding whether to wait for
// one) sees them: the caller takes the queue's place before it forks.
TEST(standby_preparation, a_queued_request_is_seen_from_the_moment_it_is_made) {
    const test::temp_dir root;
    const state_directory vm(root.path(), "vm");
    vm.create();
    const auto go = root.path() / "go";
    const auto finished = root.path() / "finished";
    standby_plan plan;
    plan.key = "k";
    plan.prepare = [] { return std::pair<vm_definition, std::vector<fs::path>>{}; };
    // Holds the preparation until the test lets it end.
    plan.finish = [go, finished] {
        for (int i = 0; i < 1000 && !fs::exists(go); ++i)
            std::this_thread::sleep_for(std::chrono::milliseconds(10));
        std::ofstream{finished};
    };
    auto under_way = vm_lock::acquire(vm.standby_lock(), "a preparation under way", {});
    prepare_standby_in_background(vm, std::move(plan));
    under_way.release();
    // The queued process has perhaps not run yet, or is taking the preparation's lock.
    for (int i = 0; i < 20; ++i) {
        EXPECT_TRUE(standby_being_prepared(vm)) << "look " << i;
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    std::ofstream{go};
    for (int i = 0; i < 500 && !fs::exists(finished); ++i)
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
    ASSERT_TRUE(fs::exists(finished)) << text_of(vm.supervisor_log());
    for (int i = 0; i < 500 && standby_being_prepared(vm); ++i)
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
    EXPECT_FALSE(standby_being_prepared(vm)) << "the preparation ended and let go of the locks";
    while (::waitpid(-1, nullptr, 0) > 0) {
    }
}

// A standby reset forks nothing for the next standbys: the promoted standby's supervisor prepares
// them, and until it has taken its place the marker the promotion left shows them on their way.
// Only the marker of the VM's live supervisor counts: one a killed supervisor left, or one of a
// qemu replaced since, would keep resets waiting for standbys nobody prepares.
TEST(standby_preparation, a_promotion_shows_standbys_on_their_way_until_its_supervisor_has_begun) {
    const test::temp_dir root;
    const state_directory vm(root.path(), "vm");
    vm.create();
    const pid_t supervisor = start_naming(vm.path());
    ASSERT_GT(supervisor, 0);
    runtime_info promoted;
    promoted.qemu_pid = supervisor;
    promoted.supervisor_pid = supervisor;
    write_runtime_info(vm, promoted);
    EXPECT_FALSE(standby_being_prepared(vm)) << "no marker, no lock";

    std::ofstream{vm.standby_refill(supervisor)};
    EXPECT_TRUE(standby_being_prepared(vm)) << "the promoted standby's supervisor has not begun";

    // A later reset replaced that qemu: its supervisor prepares nothing for this VM any more.
    runtime_info later = promoted;
    later.supervisor_pid = ::getpid();
    write_runtime_info(vm, later);
    EXPECT_FALSE(standby_being_prepared(vm)) << "the marker of a supervisor the VM left";

    // The supervisor died before it began.
    write_runtime_info(vm, promoted);
    ::kill(-supervisor, SIGKILL);
    ::waitpid(supervisor, nullptr, 0);
    EXPECT_FALSE(standby_being_prepared(vm)) << "the marker of a supervisor that is gone";
}

} // namespace
} // namespace qmpkit::launcher
