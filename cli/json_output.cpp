#include "json_output.hpp"

#include <boost/json/serialize.hpp>

namespace qmpkit::cli {
namespace {

namespace json = boost::json;

void pretty(const json::value& v, std::string& out, int depth) {
    const auto indent = [&](int d) { out.append(static_cast<std::size_t>(d) * 2, ' '); };
    if (v.is_object() && !v.get_object().empty()) {
        out += "{\n";
        bool first = true;
        for (const auto& [key, member] : v.get_object()) {
            if (!first)
                out += ",\n";
            first = false;
            indent(depth + 1);
            out += json::serialize(json::value(key));
            out += ": ";
            pretty(member, out, depth + 1);
        }
        out += "\n";
        indent(depth);
        out += "}";
    } else if (v.is_array() && !v.get_array().empty()) {
        out += "[\n";
        bool first = true;
        for (const auto& element : v.get_array()) {
            if (!first)
                out += ",\n";
            first = false;
            indent(depth + 1);
            pretty(element, out, depth + 1);
        }
        out += "\n";
        indent(depth);
        out += "]";
    } else {
        out += json::serialize(v);
    }
}

} // namespace

std::string format_json(const json::value& value, bool compact) {
    if (compact)
        return json::serialize(value);
    std::string out;
    pretty(value, out, 0);
    return out;
}

} // namespace qmpkit::cli
