#pragma once

// One qmpkit operation at a time per VM: an exclusive flock on <state>/lock. qemu's QMP socket
// serves one client at a time anyway, so without the lock a second command would only hang.
// The holder writes its pid and purpose into the file so a waiter can say who it waits for.

#include <chrono>
#include <filesystem>
#include <string_view>

namespace qmpkit::launcher {

class vm_lock {
public:
    // Waits up to `timeout` (zero: try once); throws launcher::error naming the VM (the lock
    // file's directory: a state directory is named after its VM) and the holder's pid and
    // purpose.
    static vm_lock acquire(const std::filesystem::path& lock_file, std::string_view purpose,
                           std::chrono::milliseconds timeout);

    vm_lock(vm_lock&& other) noexcept;
    vm_lock& operator=(vm_lock&& other) noexcept;
    vm_lock(const vm_lock&) = delete;
    vm_lock& operator=(const vm_lock&) = delete;
    ~vm_lock();

    void release();
    bool held() const noexcept { return fd_ >= 0; }

    // For handing the lock to a forked child: a flock belongs to the open file, which parent and
    // child share, so the child keeps holding it through this descriptor once the parent has
    // closed its own copy with close_without_unlock().
    int native_handle() const noexcept { return fd_; }
    void close_without_unlock() noexcept;

private:
    explicit vm_lock(int fd)
        : fd_(fd) {}
    int fd_ = -1;
};

} // namespace qmpkit::launcher
