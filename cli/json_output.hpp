#pragma once

#include <boost/json/value.hpp>

#include <string>

namespace qmpkit::cli {

// Indented JSON for people; one line for programs (--compact).
std::string format_json(const boost::json::value& value, bool compact = false);

} // namespace qmpkit::cli
