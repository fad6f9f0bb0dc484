#pragma once

// qemu as a child process: started from an argv vector (never a shell), in its own process
// group (a terminal's Ctrl-C goes to qmpkit, which shuts the guest down gracefully), with
// stdout/stderr appended to a log file, only the listed descriptors inherited, and SIGTERM sent
// to it if its parent dies. Its end is observed through a pidfd, which becomes readable as soon
// as the process exits.

#include <chrono>
#include <filesystem>
#include <optional>
#include <string>
#include <sys/types.h>
#include <utility>
#include <vector>

namespace qmpkit::launcher {

struct spawn_options {
    std::vector<std::string> argv;
    std::vector<int> inherit_fds; // kept open, at the same numbers, across exec
    std::filesystem::path log_file;
    // Added to (or replacing in) this process's environment for qemu only.
    std::vector<std::pair<std::string, std::string>> env{};
};

// How a process ended, from its wait status.
struct exit_status {
    int code = 0;   // exit code when it exited
    int signal = 0; // terminating signal, or 0

    bool clean() const noexcept { return signal == 0 && code == 0; }
    std::string describe() const;
    static exit_status from_wait_status(int status);
};

class qemu_process {
public:
    // Throws launcher::error when the program cannot be executed.
    static qemu_process spawn(const spawn_options& options);

    qemu_process(qemu_process&& other) noexcept;
    qemu_process& operator=(qemu_process&& other) noexcept;
    qemu_process(const qemu_process&) = delete;
    qemu_process& operator=(const qemu_process&) = delete;
    // Reaps the child if it has exited; never kills it (a started VM may outlive its handle).
    ~qemu_process();

    pid_t pid() const noexcept { return pid_; }
    int pidfd() const noexcept { return pidfd_; }

    // The exit status if the child has ended (reaps it).
    std::optional<exit_status> try_wait();
    // Waits up to `timeout` (negative: forever).
    std::optional<exit_status> wait_for(std::chrono::milliseconds timeout);
    void kill(int signal);
    bool running();

private:
    qemu_process(pid_t pid, int pidfd)
        : pid_(pid)
        , pidfd_(pidfd) {}

    pid_t pid_ = -1;
    int pidfd_ = -1;
    std::optional<exit_status> status_;
};

// Whether a process (not necessarily our child) still runs; a zombie counts as ended.
bool process_alive(pid_t pid);

// A process's argv as /proc shows it (NUL-separated); empty once it has gone, and for a kernel
// thread. Read with plain read(2): a process that exits mid-read makes it fail with ESRCH, which
// std::istreambuf_iterator turns into an exception.
std::string process_command_line(pid_t pid);

// Waits until such a process has ended (through a pidfd, which wakes the moment it exits);
// true when it has, false after the timeout.
bool wait_for_exit(pid_t pid, std::chrono::milliseconds timeout);

} // namespace qmpkit::launcher
