#include <qmpkit/qmp/json_text.hpp>

#include <boost/json/serialize.hpp>

namespace qmpkit::qmp {
namespace {

namespace json = boost::json;

void indent_into(const json::value& v, std::string& out, int depth) {
    const auto indent = [&](int d) { out.append(static_cast<std::size_t>(d) * 2, ' '); };
    const bool object = v.is_object() && !v.get_object().empty();
    const bool array = v.is_array() && !v.get_array().empty();
    if (!object && !array) {
        out += json::serialize(v);
        return;
    }
    out += object ? "{\n" : "[\n";
    bool first = true;
    auto item = [&](const json::value& element) {
        out += first ? "" : ",\n";
        first = false;
        indent(depth + 1);
        indent_into(element, out, depth + 1);
    };
    if (object) {
        for (const auto& [key, member] : v.get_object()) {
            out += first ? "" : ",\n";
            first = false;
            indent(depth + 1);
            out += json::serialize(json::string_view(key));
            out += ": ";
            indent_into(member, out, depth + 1);
        }
    } else {
        for (const auto& element : v.get_array())
            item(element);
    }
    out += "\n";
    indent(depth);
    out += object ? "}" : "]";
}

} // namespace

std::string indented_json(const json::value& value) {
    std::string out;
    indent_into(value, out, 0);
    return out;
}

} // namespace qmpkit::qmp
