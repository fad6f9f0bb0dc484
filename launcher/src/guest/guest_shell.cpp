#include <qmpkit/launcher/error.hpp>
#include <qmpkit/launcher/guest_shell.hpp>
#include <qmpkit/launcher/vm_agent.hpp>

#include <cerrno>
#include <cstring>
#include <poll.h>
#include <random>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>
#include <utility>

namespace qmpkit::launcher {

guest_shell::guest_shell(const std::filesystem::path& socket) {
    connect(socket);
}

void guest_shell::connect(const std::filesystem::path& socket) {
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    if (socket.native().size() >= sizeof addr.sun_path)
        throw error("guest shell socket path is too long: " + socket.string());
    std::memcpy(addr.sun_path, socket.c_str(), socket.native().size() + 1);
    fd_ = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd_ < 0 || ::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
        const int err = errno;
        if (fd_ >= 0)
            ::close(fd_);
        fd_ = -1;
        throw error("cannot connect to the guest's command channel " + socket.string() + ": " +
                    std::strerror(err) + " (does the VM have command_channel: true?)");
    }
    // Ids differ between connections, so a reply meant for an earlier client is never ours.
    next_id_ = std::random_device{}() % 1000000 * 1000;
}

guest_shell::guest_shell(const state_directory& dir, std::chrono::milliseconds lock_wait)
    : guest_lock_(lock_guest(dir, lock_wait)) {
    connect(dir.shell_socket());
}

guest_shell::guest_shell(guest_shell&& other) noexcept
    : guest_lock_(std::move(other.guest_lock_))
    , fd_(std::exchange(other.fd_, -1))
    , buffer_(std::move(other.buffer_))
    , next_id_(other.next_id_) {}

guest_shell::~guest_shell() {
    if (fd_ >= 0)
        ::close(fd_);
}

guest_command_result guest_shell::run(const std::string& command,
                                      std::chrono::milliseconds timeout) {
    if (command.find('\n') != std::string::npos)
        throw error("a guest command must be one line");
    const auto id = std::to_string(next_id_++);
    const std::string request = "CMD " + id + " " + command + "\n";
    for (std::size_t sent = 0; sent < request.size();) {
        const auto n = ::send(fd_, request.data() + sent, request.size() - sent, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            throw error(std::string("guest command channel: ") + std::strerror(errno));
        }
        sent += static_cast<std::size_t>(n);
    }

    const std::string begin = "@@QMPKIT-BEGIN " + id + "@@\n";
    const std::string end = "\n@@QMPKIT-END " + id + " ";
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    for (;;) {
        if (auto b = buffer_.find(begin); b != std::string::npos) {
            const auto body = b + begin.size();
            if (auto e = buffer_.find(end, body); e != std::string::npos) {
                const auto code_start = e + end.size();
                if (auto close = buffer_.find("@@\n", code_start); close != std::string::npos) {
                    guest_command_result result;
                    result.output = buffer_.substr(body, e - body);
                    result.exit_code = std::stoi(buffer_.substr(code_start, close - code_start));
                    buffer_.erase(0, close + 3);
                    return result;
                }
            }
        }
        const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
            deadline - std::chrono::steady_clock::now());
        if (left.count() <= 0)
            throw error("the guest did not finish `" + command + "` within " +
                        std::to_string(timeout.count()) + " ms");
        pollfd p{fd_, POLLIN, 0};
        const int ready = ::poll(&p, 1, static_cast<int>(left.count()));
        if (ready < 0 && errno != EINTR)
            throw error(std::string("guest command channel: ") + std::strerror(errno));
        if (ready <= 0)
            continue;
        char chunk[8192];
        const auto n = ::recv(fd_, chunk, sizeof chunk, 0);
        if (n == 0)
            throw error("the guest's command channel closed (qemu stopped?)");
        if (n < 0) {
            if (errno == EINTR || errno == EAGAIN)
                continue;
            throw error(std::string("guest command channel: ") + std::strerror(errno));
        }
        buffer_.append(chunk, static_cast<std::size_t>(n));
    }
}

} // namespace qmpkit::launcher
