#pragma once

// The four kinds of message a QMP server sends.

#include <boost/json/object.hpp>
#include <boost/json/value.hpp>

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <variant>
#include <vector>

namespace qmpkit::qmp {

struct greeting {
    boost::json::object version; // {"qemu": {major, minor, micro}, "package": ...}
    std::vector<std::string> capabilities;

    bool offers(std::string_view capability) const;
    std::string version_string() const; // "7.2.22"
};

// {"return": ...}
struct reply {
    boost::json::value id; // null when the server sent none
    boost::json::value value;
};

// {"error": {"class": ..., "desc": ...}}
struct error_reply {
    boost::json::value id; // null: qemu could not parse what was sent
    std::string error_class;
    std::string description;
};

struct event {
    std::string name;
    boost::json::object data;
    std::int64_t seconds = 0; // qemu's timestamp
    std::int64_t microseconds = 0;

    // Clamped to what a time_point holds: the fields are whatever the peer sent.
    std::chrono::system_clock::time_point timestamp() const;
};

using message = std::variant<greeting, reply, error_reply, event>;

// The id of a reply or error as an unsigned integer, if it is one (qmpkit only sends those).
std::optional<std::uint64_t> numeric_id(const boost::json::value& id);

} // namespace qmpkit::qmp
