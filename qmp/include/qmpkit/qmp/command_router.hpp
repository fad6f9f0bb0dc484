#pragma once

// Sans-I/O bookkeeping of commands by id: which may go on the wire now, which wait, and which
// command a reply completes. qemu reads at most 8 queued in-band commands before it stops
// reading the socket, so the router keeps at most max_in_flight in-band commands outstanding
// and queues the rest itself. Out-of-band commands bypass the window: that is their purpose.

#include <cstddef>
#include <cstdint>
#include <deque>
#include <optional>
#include <unordered_set>
#include <vector>

namespace qmpkit::qmp {

class command_router {
public:
    static constexpr std::size_t default_max_in_flight = 8;

    explicit command_router(std::size_t max_in_flight = default_max_in_flight);

    // Registers a command and returns its id. Whether it may be written now is told by
    // take_sendable().
    std::uint64_t submit(bool out_of_band = false);

    // Ids that may be written now, in submission order; each is returned once.
    std::vector<std::uint64_t> take_sendable();

    enum class match { completes, abandoned, unknown };

    // A reply (or error) arrived. An absent id means qemu could not parse a command: in-band
    // commands are answered in order, so it belongs to the oldest outstanding in-band command.
    // Returns which command it completes, if any waiter still wants it.
    std::pair<match, std::uint64_t> on_reply(std::optional<std::uint64_t> id);

    // The caller gave up on a command. A queued one is dropped and returns true ("never sent");
    // a sent one keeps its slot until qemu answers, and its reply is then dropped.
    bool abandon(std::uint64_t id);

    // The connection is gone: every command still wanted, sent or queued.
    std::vector<std::uint64_t> fail_all();

    std::size_t in_flight() const noexcept { return in_flight_.size(); }
    std::size_t queued() const noexcept { return queued_.size() + sendable_.size(); }

private:
    void fill_window();

    std::size_t max_in_flight_;
    std::uint64_t next_id_ = 1;
    std::deque<std::uint64_t> queued_;    // waiting for a window slot
    std::deque<std::uint64_t> in_flight_; // in-band, sendable or sent, oldest first
    std::vector<std::uint64_t> sendable_; // admitted, not yet taken by the writer
    std::unordered_set<std::uint64_t> out_of_band_;
    std::unordered_set<std::uint64_t> abandoned_;
};

} // namespace qmpkit::qmp
