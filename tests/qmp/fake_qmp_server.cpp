#include "qmp/fake_qmp_server.hpp"

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include <array>
#include <cerrno>
#include <cstring>
#include <iostream>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

namespace qmpkit::qmp::test {

namespace json = boost::json;
using std::chrono::milliseconds;
using clock_type = std::chrono::steady_clock;

namespace {

std::string system_error_text(const char* what) {
    return std::string(what) + ": " + std::strerror(errno);
}

int remaining_ms(clock_type::time_point until) {
    const auto left = std::chrono::duration_cast<milliseconds>(until - clock_type::now());
    return left.count() > 0 ? static_cast<int>(left.count()) : 0;
}

// Waits until the descriptor is ready for `events`; false when the timeout passed.
bool wait_for(int fd, short events, int timeout_ms) {
    pollfd p{fd, events, 0};
    for (;;) {
        const int n = ::poll(&p, 1, timeout_ms);
        if (n >= 0)
            return n > 0;
        if (errno != EINTR)
            throw fake_qmp_server::failure(system_error_text("poll"));
    }
}

} // namespace

fake_qmp_server::fake_qmp_server(milliseconds deadline)
    : deadline_(deadline) {
    int fds[2];
    if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) != 0)
        throw failure(system_error_text("socketpair"));
    server_fd_ = fds[0];
    client_fd_ = fds[1];
}

fake_qmp_server::~fake_qmp_server() {
    if (thread_.joinable())
        thread_.join();
    if (failure_ && !failure_seen_) {
        try {
            std::rethrow_exception(failure_);
        } catch (const std::exception& e) {
            std::cerr << "fake_qmp_server: unchecked script failure: " << e.what() << '\n';
        }
    }
    close();
    if (client_fd_ >= 0)
        ::close(client_fd_);
    for (int fd : fds_)
        ::close(fd);
}

int fake_qmp_server::take_client_fd() {
    const int fd = client_fd_;
    client_fd_ = -1;
    return fd;
}

void fake_qmp_server::run(std::function<void(fake_qmp_server&)> script) {
    thread_ = std::thread([this, script = std::move(script)] {
        try {
            script(*this);
        } catch (...) {
            failure_ = std::current_exception();
            close();
        }
    });
}

void fake_qmp_server::join() {
    if (thread_.joinable())
        thread_.join();
    if (failure_ && !failure_seen_) {
        failure_seen_ = true;
        std::rethrow_exception(failure_);
    }
}

void fake_qmp_server::write_all(std::string_view bytes) {
    const auto until = clock_type::now() + deadline_;
    while (!bytes.empty()) {
        if (server_fd_ < 0)
            throw failure("write after close()");
        if (!wait_for(server_fd_, POLLOUT, remaining_ms(until)))
            throw failure("deadline passed while writing (the client does not read)");
        const auto n = ::send(server_fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR || errno == EAGAIN)
                continue;
            throw failure(system_error_text("send"));
        }
        bytes.remove_prefix(static_cast<std::size_t>(n));
    }
}

bool fake_qmp_server::read_some(milliseconds timeout) {
    if (server_fd_ < 0)
        throw failure("read after close()");
    if (!wait_for(server_fd_, POLLIN, static_cast<int>(timeout.count())))
        throw failure("deadline passed while waiting for the client");

    std::array<char, 64 * 1024> data;
    alignas(cmsghdr) std::array<char, CMSG_SPACE(sizeof(int) * 16)> control;
    iovec iov{data.data(), data.size()};
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.data();
    msg.msg_controllen = control.size();
    ssize_t n;
    do {
        n = ::recvmsg(server_fd_, &msg, MSG_CMSG_CLOEXEC);
    } while (n < 0 && errno == EINTR);
    if (n < 0)
        throw failure(system_error_text("recvmsg"));

    for (auto* c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
        if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
            continue;
        const auto count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        for (std::size_t i = 0; i < count; ++i) {
            int fd;
            std::memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
            fds_.push_back(fd);
        }
    }
    if (msg.msg_flags & MSG_CTRUNC)
        throw failure("ancillary data truncated (too many descriptors)");
    buffer_.append(data.data(), static_cast<std::size_t>(n));
    return n > 0;
}

std::string fake_qmp_server::read_line() {
    const auto until = clock_type::now() + deadline_;
    for (;;) {
        if (const auto newline = buffer_.find('\n'); newline != std::string::npos) {
            auto line = buffer_.substr(0, newline);
            buffer_.erase(0, newline + 1);
            return line;
        }
        if (!read_some(milliseconds(remaining_ms(until))))
            throw failure("the client closed the connection while a command was expected" +
                          (buffer_.empty() ? std::string() : " (partial line: " + buffer_ + ")"));
    }
}

void fake_qmp_server::accept_from(int listening_fd) {
    if (!wait_for(listening_fd, POLLIN, static_cast<int>(deadline_.count())))
        throw failure("deadline passed while waiting for the client to connect");
    const int fd = ::accept4(listening_fd, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0)
        throw failure(system_error_text("accept"));
    close();
    server_fd_ = fd;
}

void fake_qmp_server::send_raw(std::string_view bytes) {
    write_all(bytes);
}

void fake_qmp_server::send_greeting(std::vector<std::string> capabilities) {
    json::array caps;
    for (auto& c : capabilities)
        caps.emplace_back(c);
    json::object version{{"qemu", {{"major", 7}, {"minor", 2}, {"micro", 0}}},
                         {"package", "qmpkit-fake"}};
    json::object greeting{{"QMP", {{"version", std::move(version)}, {"capabilities", caps}}}};
    write_all(json::serialize(greeting) + "\r\n");
}

json::object fake_qmp_server::accept_handshake(std::vector<std::string> capabilities) {
    send_greeting(std::move(capabilities));
    auto command = expect_command("qmp_capabilities");
    reply(command.at("id"), json::object{});
    return command;
}

json::object fake_qmp_server::expect_command(std::string_view name) {
    const auto line = read_line();
    boost::system::error_code ec;
    auto document = json::parse(line, ec);
    if (ec || !document.is_object())
        throw failure("expected command " + std::string(name) + ", got a malformed line: " + line);
    auto& command = document.get_object();
    const auto* execute = command.if_contains("execute");
    if (!execute)
        execute = command.if_contains("exec-oob");
    if (!execute || !execute->is_string() || execute->get_string() != name)
        throw failure("expected command " + std::string(name) + ", got: " + line);
    return std::move(command);
}

void fake_qmp_server::expect_bytes(std::string_view bytes) {
    const auto until = clock_type::now() + deadline_;
    while (buffer_.size() < bytes.size())
        if (!read_some(milliseconds(remaining_ms(until))))
            throw failure("the client closed the connection while bytes were expected");
    if (std::string_view(buffer_).substr(0, bytes.size()) != bytes)
        throw failure("expected other bytes, got: " + buffer_);
    buffer_.erase(0, bytes.size());
}

void fake_qmp_server::expect_silence(milliseconds quiet) {
    if (!buffer_.empty())
        throw failure("expected silence, but the client had sent: " + buffer_);
    if (wait_for(server_fd_, POLLIN, static_cast<int>(quiet.count()))) {
        if (!read_some(milliseconds(0)))
            throw failure("expected silence, but the client closed the connection");
        throw failure("expected silence, but the client sent: " + buffer_);
    }
}

void fake_qmp_server::expect_eof() {
    const auto until = clock_type::now() + deadline_;
    while (read_some(milliseconds(remaining_ms(until)))) {
    }
    if (!buffer_.empty())
        throw failure("expected the client to close the connection, but it sent: " + buffer_);
}

void fake_qmp_server::reply(const json::value& id, json::value value) {
    json::object message{{"return", std::move(value)}};
    if (!id.is_null())
        message["id"] = id;
    write_all(json::serialize(message) + "\r\n");
}

void fake_qmp_server::error(const json::value& id, std::string_view error_class,
                            std::string_view description) {
    json::object message{{"error", {{"class", error_class}, {"desc", description}}}};
    if (!id.is_null())
        message["id"] = id;
    write_all(json::serialize(message) + "\r\n");
}

void fake_qmp_server::event(std::string_view name, json::object data) {
    const auto now = std::chrono::duration_cast<std::chrono::microseconds>(
        std::chrono::system_clock::now().time_since_epoch());
    json::object message{
        {"event", name},
        {"data", std::move(data)},
        {"timestamp",
         {{"seconds", now.count() / 1000000}, {"microseconds", now.count() % 1000000}}}};
    write_all(json::serialize(message) + "\r\n");
}

std::vector<int> fake_qmp_server::receive_fds() {
    std::vector<int> out;
    out.swap(fds_);
    return out;
}

void fake_qmp_server::close() {
    if (server_fd_ >= 0) {
        ::close(server_fd_);
        server_fd_ = -1;
    }
}

} // namespace qmpkit::qmp::test
