#pragma once

#include <boost/json/value.hpp>

#include <string>

namespace qmpkit::qmp {

// JSON indented by two spaces, one member or element per line, for people to read (the CLI's
// output, files people open when something is wrong). Boost.JSON only writes one line.
std::string indented_json(const boost::json::value& value);

} // namespace qmpkit::qmp
