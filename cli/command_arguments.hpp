#pragma once

#include <boost/json/object.hpp>

#include <string>
#include <vector>

namespace qmpkit::cli {

// QMP arguments from the command line: one JSON object ('{"device": "x"}'), or key=value words
// whose values are JSON where they parse as JSON (numbers, true, {...}) and strings otherwise.
// Throws std::invalid_argument naming the offending word.
boost::json::object parse_command_arguments(const std::vector<std::string>& words);

} // namespace qmpkit::cli
