#pragma once

#include <boost/json/object.hpp>

#include <cstdint>
#include <string>
#include <string_view>

namespace qmpkit::qmp {

// One command as it goes on the wire, newline-terminated:
// {"execute": NAME, "arguments": ARGS, "id": ID}. "exec-oob" replaces "execute" for
// out-of-band commands; empty arguments are left out.
std::string encode_command(std::string_view name, const boost::json::object& arguments,
                           std::uint64_t id, bool out_of_band = false);

} // namespace qmpkit::qmp
