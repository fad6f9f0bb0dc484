#pragma once

// Private: the shared state behind an event_listener.

#include <qmpkit/qmp/async_client.hpp>

#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/steady_timer.hpp>

#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace spdlog {
class logger;
}

namespace qmpkit::qmp::detail {

struct listener_state : std::enable_shared_from_this<listener_state> {
    using handler_type = boost::asio::any_completion_handler<async_client::event_signature>;

    listener_state(boost::asio::any_io_executor ex, std::vector<std::string> event_names,
                   std::size_t queue_limit, std::shared_ptr<spdlog::logger> log);

    bool matches(std::string_view name) const;

    // An event arrived from qemu.
    void deliver(const event& e);
    // The connection is gone (reason) or the listener was dropped: no more events will come.
    void close(boost::system::error_code reason);

    void wait(std::chrono::milliseconds timeout, handler_type handler);

    boost::asio::any_io_executor executor;
    std::vector<std::string> names;
    std::size_t limit;
    std::shared_ptr<spdlog::logger> logger;
    std::deque<event> queue;
    bool registered = true;
    boost::system::error_code closed_reason;

private:
    void finish(boost::system::error_code ec, event e);

    struct waiter {
        handler_type handler;
        std::unique_ptr<boost::asio::steady_timer> timer;
    };
    std::optional<waiter> waiter_;
};

} // namespace qmpkit::qmp::detail
