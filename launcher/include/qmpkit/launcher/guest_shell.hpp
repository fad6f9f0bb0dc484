#pragma once

// The tiny guest's command channel: a virtio-serial port (org.qmpkit.shell) that qemu connects
// to <state>/shell.sock. We send `CMD <id> <command line>`; the guest runs it with sh -c and
// answers `@@QMPKIT-BEGIN <id>@@`, the output, then `\n@@QMPKIT-END <id> <exit code>@@`.
// Output outside a BEGIN/END pair with our id — late lines from before a snapshot revert, say —
// is ignored.

#include <chrono>
#include <filesystem>
#include <string>

namespace qmpkit::launcher {

struct guest_command_result {
    int exit_code = 0;
    std::string output; // stdout and stderr, merged as the guest produced them
};

class guest_shell {
public:
    // Connects to the channel socket; throws launcher::error.
    explicit guest_shell(const std::filesystem::path& socket);
    guest_shell(guest_shell&& other) noexcept;
    guest_shell& operator=(guest_shell&&) = delete;
    guest_shell(const guest_shell&) = delete;
    ~guest_shell();

    // Throws launcher::error on timeout or when the channel closes.
    guest_command_result run(const std::string& command, std::chrono::milliseconds timeout);

private:
    int fd_ = -1;
    std::string buffer_;
    unsigned long next_id_ = 1;
};

} // namespace qmpkit::launcher
