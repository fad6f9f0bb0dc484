#pragma once

// Asynchronous QMP client on Boost.Asio. Every operation takes a completion token (a callback,
// asio::use_awaitable, asio::deferred, asio::use_future, ...), honours per-operation
// cancellation, and has a deadline. One reader loop decodes what qemu sends and routes replies
// to commands by id and events to listeners; several commands may be in flight at once.
//
// Not thread-safe: use it from one thread, or through a strand.

#include <qmpkit/qmp/client_options.hpp>
#include <qmpkit/qmp/error.hpp>
#include <qmpkit/qmp/event_listener.hpp>
#include <qmpkit/qmp/message.hpp>

#include <boost/asio/any_completion_handler.hpp>
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/json/object.hpp>
#include <boost/json/value.hpp>

#include <chrono>
#include <filesystem>
#include <memory>
#include <string>

namespace qmpkit::qmp {

class async_client {
public:
    using executor_type = boost::asio::any_io_executor;

    // On errc::command_failed the value is qemu's error object {"class", "desc"}.
    using execute_signature = void(boost::system::error_code, boost::json::value);
    using connect_signature = void(boost::system::error_code);
    using handshake_signature = void(boost::system::error_code, greeting);
    using event_signature = void(boost::system::error_code, event);
    using hmp_signature = void(boost::system::error_code, std::string);
    using has_command_signature = void(boost::system::error_code, bool);

    explicit async_client(executor_type executor, client_options options = {});
    ~async_client();
    async_client(const async_client&) = delete;
    async_client& operator=(const async_client&) = delete;

    executor_type get_executor() const;
    const client_options& options() const;

    // Connects to qemu's QMP socket (a UNIX socket path).
    template <typename Token>
    auto async_connect(std::filesystem::path socket_path, Token&& token) {
        return boost::asio::async_initiate<Token, connect_signature>(
            [this](auto handler, std::filesystem::path path) {
                start_connect(std::move(path), std::move(handler));
            },
            token, std::move(socket_path));
    }

    // Takes ownership of an already connected stream socket, e.g. our end of the socketpair
    // whose other end qemu got as "-chardev socket,id=mon,fd=N".
    void adopt(int connected_fd);

    // Reads the greeting and negotiates capabilities (with "oob" when qemu offers it).
    template <typename Token>
    auto async_handshake(Token&& token) {
        return boost::asio::async_initiate<Token, handshake_signature>(
            [this](auto handler) { start_handshake(std::move(handler)); }, token);
    }

    template <typename Token>
    auto async_execute(std::string name, boost::json::object arguments, execute_options options,
                       Token&& token) {
        return boost::asio::async_initiate<Token, execute_signature>(
            [this](auto handler, std::string n, boost::json::object a, execute_options o) {
                start_execute(std::move(n), std::move(a), std::move(o), std::move(handler));
            },
            token, std::move(name), std::move(arguments), std::move(options));
    }

    template <typename Token>
    auto async_execute(std::string name, boost::json::object arguments, Token&& token) {
        return async_execute(std::move(name), std::move(arguments), execute_options{},
                             std::forward<Token>(token));
    }

    // human-monitor-command; a reply text starting with "Error:" completes with errc::hmp_error
    // and that text.
    template <typename Token>
    auto async_hmp(std::string command_line, Token&& token) {
        return boost::asio::async_initiate<Token, hmp_signature>(
            [this](auto handler, std::string line) {
                start_hmp(std::move(line), std::move(handler));
            },
            token, std::move(command_line));
    }

    // Whether qemu has a command, from query-commands (asked once, then cached).
    template <typename Token>
    auto async_has_command(std::string name, Token&& token) {
        return boost::asio::async_initiate<Token, has_command_signature>(
            [this](auto handler, std::string n) {
                start_has_command(std::move(n), std::move(handler));
            },
            token, std::move(name));
    }

    // Registers interest in the named events (all events if empty). Register before sending
    // the command whose event you will wait for.
    event_listener listen(std::vector<std::string> names = {});

    // The next event queued in (or arriving at) the listener. Completes with errc::timeout
    // after the timeout (zero: no deadline) and with errc::disconnected once the connection is
    // gone and no queued event is left.
    template <typename Token>
    auto async_wait_event(event_listener& listener, std::chrono::milliseconds timeout,
                          Token&& token) {
        return boost::asio::async_initiate<Token, event_signature>(
            [this](auto handler, event_listener* l, std::chrono::milliseconds t) {
                start_wait_event(*l, t, std::move(handler));
            },
            token, &listener, timeout);
    }

    // Fails every pending operation with errc::closed and closes the socket.
    void close();
    bool is_open() const;
    bool is_ready() const; // connected and negotiated
    const std::optional<greeting>& server_greeting() const;

private:
    struct impl;

    void start_connect(std::filesystem::path path,
                       boost::asio::any_completion_handler<connect_signature> handler);
    void start_handshake(boost::asio::any_completion_handler<handshake_signature> handler);
    void start_execute(std::string name, boost::json::object arguments, execute_options options,
                       boost::asio::any_completion_handler<execute_signature> handler);
    void start_hmp(std::string command_line,
                   boost::asio::any_completion_handler<hmp_signature> handler);
    void start_has_command(std::string name,
                           boost::asio::any_completion_handler<has_command_signature> handler);
    void start_wait_event(event_listener& listener, std::chrono::milliseconds timeout,
                          boost::asio::any_completion_handler<event_signature> handler);

    std::shared_ptr<impl> impl_;
};

} // namespace qmpkit::qmp
