#pragma once

// A bare qemu for QMP integration tests: `qemu-system-x86_64 -S -nodefaults -display none` under
// TCG, with its monitor on one end of a socketpair (our end: monitor_fd()) and, optionally, a
// second monitor on a socket path. Killed and reaped on destruction.

#include <filesystem>
#include <string>
#include <sys/types.h>
#include <vector>

namespace qmpkit::test {

// Whether qemu-system-x86_64 can be found; integration tests skip with a clear message if not.
bool qemu_available();

class bare_qemu {
public:
    explicit bare_qemu(std::vector<std::string> extra_args = {},
                       std::filesystem::path socket_path = {});
    ~bare_qemu();
    bare_qemu(const bare_qemu&) = delete;
    bare_qemu& operator=(const bare_qemu&) = delete;

    // Our end of the monitor socketpair; ownership passes to whoever takes it.
    int take_monitor_fd();
    const std::filesystem::path& socket_path() const { return socket_path_; }
    pid_t pid() const { return pid_; }

    void signal(int sig);
    // Waits for qemu to exit and returns its wait status, or -1 after the timeout.
    int wait_exit(int timeout_ms);

private:
    pid_t pid_ = -1;
    int monitor_fd_ = -1;
    std::filesystem::path socket_path_;
    bool reaped_ = false;
};

} // namespace qmpkit::test
