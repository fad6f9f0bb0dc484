#pragma once

// The tiny guest's command channel: a virtio-serial port (org.qmpkit.shell) that qemu connects
// to <state>/shell.sock. We send `CMD <id> <command line>`; the guest runs it with sh -c and
// answers `@@QMPKIT-BEGIN <id>@@`, the output, then `\n@@QMPKIT-END <id> <exit code>@@`.
// Output outside a BEGIN/END pair with our id — late lines from before a snapshot revert, say —
// is ignored.

#include <qmpkit/launcher/state_directory.hpp>
#include <qmpkit/launcher/vm_lock.hpp>

#include <chrono>
#include <filesystem>
#include <optional>
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
    // Connects to the VM's channel (<state>/shell.sock) while holding the guest lock, waited for
    // up to `lock_wait` (see vm_agent.hpp): the channel serves one client at a time, and a
    // command right after a reset runs once the guest's clock is set.
    guest_shell(const state_directory& dir, std::chrono::milliseconds lock_wait);
    guest_shell(guest_shell&& other) noexcept;
    guest_shell& operator=(guest_shell&&) = delete;
    guest_shell(const guest_shell&) = delete;
    ~guest_shell();

    // Throws launcher::error on timeout or when the channel closes.
    guest_command_result run(const std::string& command, std::chrono::milliseconds timeout);

private:
    void connect(const std::filesystem::path& socket);

    std::optional<vm_lock> guest_lock_;
    int fd_ = -1;
    std::string buffer_;
    unsigned long next_id_ = 1;
};

} // namespace qmpkit::launcher
