#include "json_output.hpp"

#include <qmpkit/qmp/json_text.hpp>

#include <boost/json/serialize.hpp>

namespace qmpkit::cli {
std::string format_json(const boost::json::value& value, bool compact) {
    if (compact)
        return boost::json::serialize(value);
    return qmp::indented_json(value);
}

} // namespace qmpkit::cli
