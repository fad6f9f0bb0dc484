#include "schema.hpp"

#include <qmpkit/launcher/definition_reference.hpp>

#include <type_traits>

namespace qmpkit::launcher {

namespace {

namespace fs = std::filesystem;

std::string code(std::string_view text) {
    return "`" + std::string(text) + "`";
}

// What the reference says of a value's type when the schema does not say it.
template <class T>
std::string type_of(const schema::field_info<T>& info) {
    if constexpr (schema::is_optional<T>::value) {
        return type_of(
            schema::field_info<typename T::value_type>{.min = info.min, .max = info.max});
    } else if constexpr (std::is_same_v<T, std::string>) {
        return "string";
    } else if constexpr (std::is_same_v<T, fs::path>) {
        return "path";
    } else if constexpr (std::is_same_v<T, bool>) {
        return "boolean";
    } else if constexpr (std::is_enum_v<T>) {
        std::string out;
        for (const auto& n : schema::names_of(T{}).names)
            if (n.written)
                out += (out.empty() ? "" : " \\| ") + code(n.name);
        return out;
    } else if constexpr (std::is_same_v<T, std::vector<std::string>>) {
        return "list of strings";
    } else {
        static_assert(std::is_integral_v<T>);
        return info.min < info.max
                   ? "integer " + std::to_string(info.min) + "–" + std::to_string(info.max)
                   : "integer";
    }
}

// ... and of its default, from the value a default-made section holds.
template <class T>
std::string default_of(const T& value) {
    if constexpr (schema::is_optional<T>::value) {
        return value ? default_of(*value) : "none";
    } else if constexpr (std::is_same_v<T, std::vector<std::string>>) {
        std::string out;
        for (const auto& item : value)
            out += (out.empty() ? "" : ", ") + code(item);
        return out.empty() ? "none" : out;
    } else if constexpr (std::is_same_v<T, std::string>) {
        return value.empty() ? "none" : code(value);
    } else if constexpr (std::is_same_v<T, fs::path>) {
        return value.empty() ? "none" : code(value.string());
    } else if constexpr (std::is_same_v<T, bool>) {
        return code(value ? "true" : "false");
    } else if constexpr (std::is_enum_v<T>) {
        return code(to_string(value));
    } else {
        return code(std::to_string(value));
    }
}

// The visitor of describe() that lists each mapping's fields.
class reference_writer {
public:
    reference_writer(std::vector<definition_fields>& out, std::string section)
        : out_(out)
        , index_(out.size()) {
        out_.push_back({std::move(section), {}});
    }

    template <class T>
    void field(std::string_view key, const T& value, const schema::field_info<T>& info) {
        row(key, info, info.type.empty() ? type_of(info) : std::string(info.type),
            default_of(value));
    }

    template <class T>
    void size(std::string_view key, const T& value, const schema::field_info<T>& info) {
        std::string fallback = "none";
        if constexpr (!schema::is_optional<T>::value)
            fallback = code(format_size(value));
        row(key, info, info.type.empty() ? "size" : std::string(info.type), fallback);
    }

    template <class Section>
    void section(std::string_view key, const Section&, const schema::field_info<Section>& info) {
        row(key, info, "mapping", schema::is_optional<Section>::value ? "none" : "see below");
        if constexpr (schema::is_optional<Section>::value)
            describe_section<typename Section::value_type>(child(key));
        else
            describe_section<Section>(child(key));
    }

    template <class Section>
    void sections(std::string_view key, const std::vector<Section>&,
                  const schema::field_info<std::vector<Section>>& info) {
        row(key, info, info.type.empty() ? "list" : std::string(info.type), "none");
        describe_section<Section>(child(key) + "[]");
    }

    void nvram(std::string_view key, const vm_definition&,
               const schema::field_info<fs::path>& info) {
        row(key, info, std::string(info.type), "none");
    }
    void serial_log(std::string_view key, const serial_definition&,
                    const schema::field_info<bool>& info) {
        row(key, info, std::string(info.type), "none");
    }
    void host_port(std::string_view key, const std::uint16_t&,
                   const schema::field_info<std::uint16_t>& info) {
        row(key, info, std::string(info.type), "none");
    }

private:
    template <class T>
    void row(std::string_view key, const schema::field_info<T>& info, const std::string& type,
             const std::string& fallback) {
        out_[index_].fields.push_back({std::string(key), type,
                                       info.required                ? "**required**"
                                       : !info.default_text.empty() ? std::string(info.default_text)
                                                                    : fallback,
                                       std::string(info.meaning)});
    }

    std::string child(std::string_view key) const {
        const auto& section = out_[index_].section;
        return section.empty() ? std::string(key) : section + "." + std::string(key);
    }

    template <class Section>
    void describe_section(std::string path) {
        const Section defaults{};
        reference_writer inner(out_, std::move(path));
        schema::describe(inner, defaults);
    }

    std::vector<definition_fields>& out_;
    std::size_t index_;
};

} // namespace

std::string plain_text(std::string_view markdown) {
    std::string out;
    for (std::size_t i = 0; i < markdown.size(); ++i) {
        const char c = markdown[i];
        if (c == '`' || (c == '*' && i + 1 < markdown.size() && markdown[i + 1] == '*' && ++i))
            continue;
        if (c == '\\' && i + 1 < markdown.size() && markdown[i + 1] == '|')
            continue;
        out += c;
    }
    return out;
}

std::string definition_fields::table() const {
    std::string out = "| Field | Type | Default | Meaning |\n|---|---|---|---|\n";
    for (const auto& f : fields)
        out += "| " + code(f.key) + " | " + f.type + " | " + f.default_value + " | " + f.meaning +
               (f.meaning.empty() ? "|" : " |") + "\n";
    return out;
}

std::vector<definition_fields> definition_reference() {
    std::vector<definition_fields> out;
    const vm_definition defaults{};
    reference_writer writer(out, "");
    schema::describe(writer, defaults);
    return out;
}

} // namespace qmpkit::launcher
