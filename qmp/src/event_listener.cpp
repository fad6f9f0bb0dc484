#include "completion.hpp"
#include "listener_state.hpp"

#include <spdlog/logger.h>

#include <algorithm>

namespace qmpkit::qmp {
namespace detail {

listener_state::listener_state(boost::asio::any_io_executor ex,
                               std::vector<std::string> event_names, std::size_t queue_limit,
                               std::shared_ptr<spdlog::logger> log)
    : executor(std::move(ex))
    , names(std::move(event_names))
    , limit(queue_limit == 0 ? 1 : queue_limit)
    , logger(std::move(log)) {}

bool listener_state::matches(std::string_view name) const {
    return names.empty() || std::find(names.begin(), names.end(), name) != names.end();
}

void listener_state::deliver(const event& e) {
    if (waiter_) {
        finish({}, e);
        return;
    }
    queue.push_back(e);
    if (queue.size() > limit) {
        logger->warn("event listener full: dropped {} event", queue.front().name);
        queue.pop_front();
    }
}

void listener_state::close(boost::system::error_code reason) {
    if (closed_reason)
        return;
    closed_reason = reason;
    // A waiter only gets the error once nothing is queued, and it would not be waiting otherwise.
    if (waiter_)
        finish(reason, {});
}

void listener_state::wait(std::chrono::milliseconds timeout, handler_type handler) {
    if (!queue.empty()) {
        auto e = std::move(queue.front());
        queue.pop_front();
        post_completion(executor, std::move(handler), boost::system::error_code{}, std::move(e));
        return;
    }
    if (closed_reason) {
        post_completion(executor, std::move(handler), closed_reason, event{});
        return;
    }
    if (waiter_) {
        post_completion(executor, std::move(handler),
                        make_error_code(boost::system::errc::operation_in_progress), event{});
        return;
    }

    auto slot = boost::asio::get_associated_cancellation_slot(handler);
    std::weak_ptr<listener_state> weak = shared_from_this();
    if (slot.is_connected()) {
        slot.assign([weak](boost::asio::cancellation_type) {
            if (auto self = weak.lock(); self && self->waiter_)
                self->finish(make_error_code(errc::cancelled), {});
        });
    }
    waiter_.emplace(waiter{std::move(handler), nullptr});
    if (timeout.count() > 0) {
        waiter_->timer = std::make_unique<boost::asio::steady_timer>(executor, timeout);
        waiter_->timer->async_wait([weak](boost::system::error_code ec) {
            if (ec)
                return;
            if (auto self = weak.lock(); self && self->waiter_)
                self->finish(make_error_code(errc::timeout), {});
        });
    }
}

void listener_state::finish(boost::system::error_code ec, event e) {
    auto w = std::move(*waiter_);
    waiter_.reset();
    if (w.timer)
        w.timer->cancel();
    post_completion(executor, std::move(w.handler), ec, std::move(e));
}

} // namespace detail

event_listener::event_listener(std::shared_ptr<detail::listener_state> state)
    : state_(std::move(state)) {}

event_listener& event_listener::operator=(event_listener&& other) noexcept {
    if (this != &other) {
        unregister();
        state_ = std::move(other.state_);
    }
    return *this;
}

event_listener::~event_listener() {
    unregister();
}

const std::vector<std::string>& event_listener::names() const {
    static const std::vector<std::string> none;
    return state_ ? state_->names : none;
}

bool event_listener::matches(std::string_view name) const {
    return state_ && state_->matches(name);
}

std::optional<event> event_listener::try_pop() {
    if (!state_ || state_->queue.empty())
        return std::nullopt;
    auto e = std::move(state_->queue.front());
    state_->queue.pop_front();
    return e;
}

std::size_t event_listener::queued() const {
    return state_ ? state_->queue.size() : 0;
}

void event_listener::unregister() {
    if (!state_)
        return;
    state_->registered = false;
    state_->close(make_error_code(errc::closed));
    state_.reset();
}

} // namespace qmpkit::qmp
