#include "schema.hpp"

#include <qmpkit/launcher/definition_loader.hpp>

#include <yaml-cpp/yaml.h>

#include <type_traits>

namespace qmpkit::launcher {

namespace {

namespace fs = std::filesystem;

// Strings are always quoted so that a name like "true" or "1e3" reads back as the same string;
// paths are absolute already, with '$' doubled so that reading does not expand it.
std::string escaped(const fs::path& p) {
    std::string out;
    for (char c : p.string()) {
        out += c;
        if (c == '$')
            out += '$';
    }
    return out;
}

// The visitor of describe() that writes each field the way the reader takes it back.
class section_writer {
public:
    explicit section_writer(YAML::Emitter& out)
        : out_(out) {}

    template <class T>
    void field(std::string_view key, const T& value, const schema::field_info<T>& info) {
        if constexpr (schema::is_optional<T>::value) {
            if (value)
                field(key, *value, schema::field_info<typename T::value_type>{});
        } else if constexpr (std::is_same_v<T, std::vector<std::string>>) {
            out_ << YAML::Key << std::string(key) << YAML::Value << YAML::Flow << YAML::BeginSeq;
            for (const auto& item : value)
                out_ << YAML::DoubleQuoted << item;
            out_ << YAML::EndSeq;
        } else if constexpr (std::is_same_v<T, std::string>) {
            if (!(info.empty_is_unset && value.empty()))
                out_ << YAML::Key << std::string(key) << YAML::Value << YAML::DoubleQuoted << value;
        } else if constexpr (std::is_same_v<T, fs::path>) {
            out_ << YAML::Key << std::string(key) << YAML::Value << YAML::DoubleQuoted
                 << escaped(value);
        } else if constexpr (std::is_enum_v<T>) {
            out_ << YAML::Key << std::string(key) << YAML::Value << std::string(to_string(value));
        } else {
            out_ << YAML::Key << std::string(key) << YAML::Value << value;
        }
    }

    template <class T>
    void size(std::string_view key, const T& value, const schema::field_info<T>&) {
        if constexpr (schema::is_optional<T>::value) {
            if (value)
                out_ << YAML::Key << std::string(key) << YAML::Value << format_size(*value);
        } else {
            out_ << YAML::Key << std::string(key) << YAML::Value << format_size(value);
        }
    }

    template <class Section>
    void section(std::string_view key, const Section& value, const schema::field_info<Section>&) {
        if constexpr (schema::is_optional<Section>::value) {
            if (value)
                write_section(key, *value);
        } else {
            write_section(key, value);
        }
    }

    template <class Section>
    void sections(std::string_view key, const std::vector<Section>& list,
                  const schema::field_info<std::vector<Section>>&) {
        out_ << YAML::Key << std::string(key) << YAML::Value << YAML::BeginSeq;
        for (const auto& item : list) {
            // The UEFI variable store is written as nvram:.
            if constexpr (std::is_same_v<Section, disk_definition>)
                if (item.bus == disk_bus::pflash)
                    continue;
            out_ << YAML::BeginMap;
            schema::describe(*this, item);
            out_ << YAML::EndMap;
        }
        out_ << YAML::EndSeq;
    }

    void nvram(std::string_view key, const vm_definition& def,
               const schema::field_info<fs::path>& info) {
        if (const auto* disk = nvram_disk(def))
            field(key, disk->file, info);
    }

    void serial_log(std::string_view key, const serial_definition& serial,
                    const schema::field_info<bool>&) {
        if (serial.log && !serial.log_file.empty())
            field(key, serial.log_file, {});
        else
            field(key, serial.log, {});
    }

    void host_port(std::string_view key, const std::uint16_t& port,
                   const schema::field_info<std::uint16_t>& info) {
        if (port == 0)
            out_ << YAML::Key << std::string(key) << YAML::Value << "auto";
        else
            field(key, port, info);
    }

private:
    template <class Section>
    void write_section(std::string_view key, const Section& value) {
        out_ << YAML::Key << std::string(key) << YAML::Value << YAML::BeginMap;
        schema::describe(*this, value);
        out_ << YAML::EndMap;
    }

    YAML::Emitter& out_;
};

} // namespace

std::string dump_definition(const vm_definition& def) {
    YAML::Emitter out;
    out << YAML::BeginMap;
    section_writer writer(out);
    schema::describe(writer, def);
    out << YAML::EndMap;
    return std::string("# Written by qmpkit; paths are absolute.\n") + out.c_str() + "\n";
}

} // namespace qmpkit::launcher
