#pragma once

#include <CLI/CLI.hpp>
#include <boost/json/object.hpp>

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace qmpkit::cli {

// QMP arguments from the command line: one JSON object ('{"device": "x"}'), or key=value words
// whose values are JSON where they parse as JSON (numbers, true, {...}) and strings otherwise.
// Throws std::invalid_argument naming the offending word.
boost::json::object parse_command_arguments(const std::vector<std::string>& words);

// A CLI11 check for counts and timeouts: a number from 0 to a billion. A negative timeout would
// act at once instead of waiting, and a huge or infinite one overflows its conversion to
// milliseconds. Text that is no number at all is left to CLI11's own conversion error.
const CLI::Validator& non_negative_number();

// A CLI11 check for an input file, like CLI::ExistingFile but saying why a path cannot be used
// (a dangling symlink or a symlink loop is not simply "File does not exist").
const CLI::Validator& existing_file();

// A size written on the command line (`1G`, `512M`) for `option`. Throws std::invalid_argument
// (a usage error) naming the option, where launcher::parse_size's error would read as a failure.
std::uint64_t parse_size_argument(std::string_view option, const std::string& text);

} // namespace qmpkit::cli
