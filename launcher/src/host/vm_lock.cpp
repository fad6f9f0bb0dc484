#include <qmpkit/launcher/error.hpp>
#include <qmpkit/launcher/vm_lock.hpp>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fcntl.h>
#include <string>
#include <sys/file.h>
#include <thread>
#include <unistd.h>

namespace qmpkit::launcher {
namespace {

std::string holder_of(int fd) {
    char text[256] = {};
    const auto n = ::pread(fd, text, sizeof text - 1, 0);
    std::string holder = n > 0 ? std::string(text, static_cast<std::size_t>(n)) : std::string();
    while (!holder.empty() && (holder.back() == '\n' || holder.back() == '\0'))
        holder.pop_back();
    return holder.empty() ? "another qmpkit process" : holder;
}

// The lock sits in the VM's state directory, which is named after the VM; a pool's lock sits
// in .pools/<pool>/.
std::string vm_named_by(const std::filesystem::path& lock_file) {
    const auto dir = lock_file.parent_path();
    const auto name = dir.filename().string();
    if (dir.parent_path().filename() == ".pools")
        return "pool '" + name + "'";
    return name.empty() ? std::string("the VM") : "VM '" + name + "'";
}

std::string waited_for(std::chrono::milliseconds timeout) {
    if (timeout.count() <= 0)
        return {};
    char text[32];
    std::snprintf(text, sizeof text, "%.1f", static_cast<double>(timeout.count()) / 1000.0);
    return std::string(" after waiting ") + text + " s";
}

} // namespace

vm_lock vm_lock::acquire(const std::filesystem::path& lock_file, std::string_view purpose,
                         std::chrono::milliseconds timeout) {
    const int fd = ::open(lock_file.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0)
        throw error("cannot open lock " + lock_file.string() + ": " + std::strerror(errno));
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
        if (errno != EWOULDBLOCK && errno != EINTR) {
            const int err = errno;
            ::close(fd);
            throw error("cannot lock " + lock_file.string() + ": " + std::strerror(err));
        }
        if (std::chrono::steady_clock::now() >= deadline) {
            auto holder = holder_of(fd);
            ::close(fd);
            throw error(vm_named_by(lock_file) + " is busy" + waited_for(timeout) + ": " + holder +
                        " holds its lock " + lock_file.string() +
                        (timeout.count() > 0
                             ? "; try again when it is done, or raise --lock-timeout"
                             : "; try again when it is done, or give "
                               "--lock-timeout SECONDS to wait for it"));
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    const auto me = "pid " + std::to_string(::getpid()) + " (" + std::string(purpose) + ")\n";
    if (::ftruncate(fd, 0) == 0 && ::pwrite(fd, me.data(), me.size(), 0) < 0) {
        // The note is only for messages; the lock holds without it.
    }
    return vm_lock(fd);
}

vm_lock::vm_lock(vm_lock&& other) noexcept
    : fd_(other.fd_) {
    other.fd_ = -1;
}

vm_lock& vm_lock::operator=(vm_lock&& other) noexcept {
    if (this != &other) {
        release();
        fd_ = other.fd_;
        other.fd_ = -1;
    }
    return *this;
}

vm_lock::~vm_lock() {
    release();
}

void vm_lock::close_without_unlock() noexcept {
    if (fd_ >= 0)
        ::close(fd_);
    fd_ = -1;
}

void vm_lock::release() {
    if (fd_ < 0)
        return;
    if (::ftruncate(fd_, 0) != 0) {
        // Stale holder text is harmless: it is read only while the lock is held.
    }
    ::flock(fd_, LOCK_UN);
    ::close(fd_);
    fd_ = -1;
}

} // namespace qmpkit::launcher
