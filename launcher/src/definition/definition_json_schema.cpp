#include "schema.hpp"

#include <qmpkit/launcher/definition_reference.hpp>

#include <boost/json.hpp>

#include <type_traits>

namespace qmpkit::launcher {

namespace {

namespace fs = std::filesystem;
namespace json = boost::json;

// What JSON Schema says of one plain value.
template <class T>
json::object value_schema(const schema::field_info<T>& info) {
    if constexpr (std::is_same_v<T, std::string> || std::is_same_v<T, fs::path>) {
        return {{"type", "string"}};
    } else if constexpr (std::is_same_v<T, bool>) {
        return {{"type", "boolean"}};
    } else if constexpr (std::is_enum_v<T>) {
        json::array names;
        for (const auto& n : schema::names_of(T{}).names)
            if (n.written)
                names.emplace_back(n.name);
        return {{"enum", std::move(names)}};
    } else if constexpr (std::is_same_v<T, std::vector<std::string>>) {
        return {{"type", "array"}, {"items", {{"type", "string"}}}};
    } else {
        static_assert(std::is_integral_v<T>);
        json::object o{{"type", "integer"}};
        if (info.min < info.max) {
            o["minimum"] = info.min;
            o["maximum"] = info.max;
        }
        return o;
    }
}

// Sizes: a number of bytes, or a number with a binary unit (parse_size says the rest).
json::object size_schema() {
    return {{"anyOf",
             {{{"type", "integer"}, {"minimum", 0}},
              {{"type", "string"}, {"pattern", "^[0-9]+(\\.[0-9]+)?\\s*([KMGT](i|iB|B)?|B)?$"}}}}};
}

// The visitor of describe() that writes one mapping as a JSON Schema object. An empty value
// (`key:` or `key: ~`) is a left-out one, so every optional field also takes null.
class json_schema_writer {
public:
    json::object properties;
    json::array required;

    template <class T>
    void field(std::string_view key, const T&, const schema::field_info<T>& info) {
        if constexpr (schema::is_optional<T>::value)
            add(key,
                value_schema(
                    schema::field_info<typename T::value_type>{.min = info.min, .max = info.max}),
                info);
        else
            add(key, value_schema(info), info);
    }

    template <class T>
    void size(std::string_view key, const T&, const schema::field_info<T>& info) {
        add(key, size_schema(), info);
    }

    template <class Section>
    void section(std::string_view key, const Section&, const schema::field_info<Section>& info) {
        if constexpr (schema::is_optional<Section>::value)
            add(key, object_of<typename Section::value_type>(), info);
        else
            add(key, object_of<Section>(), info);
    }

    template <class Section>
    void sections(std::string_view key, const std::vector<Section>&,
                  const schema::field_info<std::vector<Section>>& info) {
        add(key, {{"type", "array"}, {"items", object_of<Section>()}}, info);
    }

    void nvram(std::string_view key, const vm_definition&,
               const schema::field_info<fs::path>& info) {
        add(key, {{"type", "string"}}, info);
    }
    void serial_log(std::string_view key, const serial_definition&,
                    const schema::field_info<bool>& info) {
        add(key, {{"type", {"boolean", "string"}}}, info);
    }
    void host_port(std::string_view key, const std::uint16_t&,
                   const schema::field_info<std::uint16_t>& info) {
        add(key,
            {{"anyOf",
              {{{"type", "integer"}, {"minimum", info.min}, {"maximum", info.max}},
               {{"const", "auto"}}}}},
            info);
    }

    template <class Section>
    static json::object object_of() {
        const Section defaults{};
        json_schema_writer inner;
        schema::describe(inner, defaults);
        json::object o{{"type", "object"},
                       {"additionalProperties", false},
                       {"properties", std::move(inner.properties)}};
        if (!inner.required.empty())
            o["required"] = std::move(inner.required);
        return o;
    }

private:
    template <class T>
    void add(std::string_view key, json::object value, const schema::field_info<T>& info) {
        if (!info.meaning.empty())
            value["description"] = plain_text(info.meaning);
        if (info.required) {
            required.emplace_back(key);
        } else {
            // An empty value is a left-out one.
            value = {{"anyOf", {std::move(value), {{"type", "null"}}}}};
        }
        properties[key] = std::move(value);
    }
};

} // namespace

std::string definition_json_schema() {
    auto root = json_schema_writer::object_of<vm_definition>();
    json::object out{{"$schema", "http://json-schema.org/draft-07/schema#"},
                     {"$id", "https://qmpkit.invalid/definition.schema.json"},
                     {"title", "qmpkit VM definition"}};
    for (auto& [key, value] : root)
        out[key] = std::move(value);
    return json::serialize(out) + "\n";
}

} // namespace qmpkit::launcher
