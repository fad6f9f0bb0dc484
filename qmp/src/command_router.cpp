#include <qmpkit/qmp/command_router.hpp>

#include <algorithm>

namespace qmpkit::qmp {

command_router::command_router(std::size_t max_in_flight)
    : max_in_flight_(max_in_flight == 0 ? 1 : max_in_flight) {}

std::uint64_t command_router::submit(bool out_of_band) {
    const auto id = next_id_++;
    if (out_of_band) {
        out_of_band_.insert(id);
        sendable_.push_back(id);
    } else {
        queued_.push_back(id);
        fill_window();
    }
    return id;
}

void command_router::fill_window() {
    while (!queued_.empty() && in_flight_.size() < max_in_flight_) {
        in_flight_.push_back(queued_.front());
        sendable_.push_back(queued_.front());
        queued_.pop_front();
    }
}

std::vector<std::uint64_t> command_router::take_sendable() {
    std::vector<std::uint64_t> out;
    out.swap(sendable_);
    return out;
}

std::pair<command_router::match, std::uint64_t>
command_router::on_reply(std::optional<std::uint64_t> id) {
    std::uint64_t which = 0;
    if (id) {
        which = *id;
        if (out_of_band_.erase(which) == 0) {
            auto it = std::find(in_flight_.begin(), in_flight_.end(), which);
            if (it == in_flight_.end())
                return {match::unknown, which};
            in_flight_.erase(it);
        }
    } else {
        if (in_flight_.empty())
            return {match::unknown, 0};
        which = in_flight_.front();
        in_flight_.pop_front();
    }
    fill_window();
    if (abandoned_.erase(which) > 0)
        return {match::abandoned, which};
    return {match::completes, which};
}

bool command_router::abandon(std::uint64_t id) {
    if (auto it = std::find(queued_.begin(), queued_.end(), id); it != queued_.end()) {
        queued_.erase(it);
        return true;
    }
    const bool in_band = std::find(in_flight_.begin(), in_flight_.end(), id) != in_flight_.end();
    if (in_band || out_of_band_.count(id) > 0) {
        // Not yet taken by the writer: never written, so it need not hold a slot.
        if (auto it = std::find(sendable_.begin(), sendable_.end(), id); it != sendable_.end()) {
            sendable_.erase(it);
            out_of_band_.erase(id);
            if (in_band)
                in_flight_.erase(std::find(in_flight_.begin(), in_flight_.end(), id));
            fill_window();
            return true;
        }
        abandoned_.insert(id);
    }
    return false;
}

std::vector<std::uint64_t> command_router::fail_all() {
    std::vector<std::uint64_t> out;
    for (auto id : in_flight_)
        if (abandoned_.count(id) == 0)
            out.push_back(id);
    for (auto id : out_of_band_)
        if (abandoned_.count(id) == 0)
            out.push_back(id);
    out.insert(out.end(), queued_.begin(), queued_.end());
    in_flight_.clear();
    queued_.clear();
    sendable_.clear();
    out_of_band_.clear();
    abandoned_.clear();
    return out;
}

} // namespace qmpkit::qmp
