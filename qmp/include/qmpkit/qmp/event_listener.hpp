#pragma once

// A registration for events, made *before* the command whose event it waits for, so the
// event cannot slip by between the command's reply and the wait. Events that match are queued
// in the listener until taken; destroying the listener unregisters it.

#include <qmpkit/qmp/message.hpp>

#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace qmpkit::qmp {

namespace detail {
struct listener_state;
}

class event_listener {
public:
    event_listener() = default;
    explicit event_listener(std::shared_ptr<detail::listener_state> state);
    event_listener(event_listener&&) noexcept = default;
    event_listener& operator=(event_listener&&) noexcept;
    event_listener(const event_listener&) = delete;
    event_listener& operator=(const event_listener&) = delete;
    ~event_listener();

    // The event names this listener takes; empty means every event.
    const std::vector<std::string>& names() const;
    bool matches(std::string_view name) const;

    // Takes a queued event without waiting.
    std::optional<event> try_pop();
    std::size_t queued() const;

    bool is_registered() const noexcept { return state_ != nullptr; }
    void unregister();

    detail::listener_state* state() const noexcept { return state_.get(); }

private:
    std::shared_ptr<detail::listener_state> state_;
};

} // namespace qmpkit::qmp
