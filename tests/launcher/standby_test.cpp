// Discarding a VM's standbys never stops the one a reset is promoting: once the VM's runtime
// record names a standby's qemu (promote_standby writes it before the standby's marker goes),
// that qemu is the VM's, even while its standby directory is still being removed.

#include "launcher/test_support.hpp"

#include <qmpkit/launcher/runtime_info.hpp>
#include <qmpkit/launcher/standby.hpp>
#include <qmpkit/launcher/state_directory.hpp>

#include <gtest/gtest.h>

#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdlib>
#include <fcntl.h>
#include <filesystem>
#include <spawn.h>
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

} // namespace
} // namespace qmpkit::launcher
