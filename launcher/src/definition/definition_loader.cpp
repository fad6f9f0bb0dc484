#include "schema.hpp"

#include <qmpkit/launcher/definition_loader.hpp>
#include <qmpkit/launcher/error.hpp>

#include <yaml-cpp/eventhandler.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <limits>
#include <map>
#include <optional>
#include <set>
#include <span>
#include <sstream>
#include <system_error>
#include <utility>

namespace qmpkit::launcher {

namespace {

namespace fs = std::filesystem;

std::string join(std::string_view parent, std::string_view key) {
    return parent.empty() ? std::string(key) : std::string(parent) + '.' + std::string(key);
}

std::string indexed(std::string_view parent, std::size_t i) {
    return std::string(parent) + '[' + std::to_string(i) + ']';
}

bool present(const YAML::Node& node) {
    return node.IsDefined() && !node.IsNull();
}

// A quoted scalar is a string even when it reads like a number or a boolean.
bool is_quoted(const YAML::Node& node) {
    return node.Tag() == "!";
}

// YAML 1.2 booleans only: yaml-cpp's own conversion also takes YAML 1.1's yes/no/on/off, which
// quietly turn a value meant as a word into a boolean.
std::optional<bool> plain_bool(const YAML::Node& node) {
    if (is_quoted(node))
        return std::nullopt;
    const auto& s = node.Scalar();
    if (s == "true" || s == "True" || s == "TRUE")
        return true;
    if (s == "false" || s == "False" || s == "FALSE")
        return false;
    return std::nullopt;
}

bool yaml11_bool(const YAML::Node& node) {
    static constexpr std::string_view words[] = {"y",  "Y",   "yes", "Yes", "YES", "n",
                                                 "N",  "no",  "No",  "NO",  "on",  "On",
                                                 "ON", "off", "Off", "OFF"};
    return !is_quoted(node) &&
           std::find(std::begin(words), std::end(words), node.Scalar()) != std::end(words);
}

// Where the first byte that is not part of valid UTF-8 is. yaml-cpp passes such bytes through,
// but YAML text is UTF-8 and dump_definition could not write them back as they were.
std::optional<std::size_t> invalid_utf8_at(std::string_view s) {
    for (std::size_t i = 0; i < s.size();) {
        const auto b = static_cast<unsigned char>(s[i]);
        std::size_t length = 0;
        if (b < 0x80)
            length = 1;
        else if ((b >> 5) == 0x6)
            length = 2;
        else if ((b >> 4) == 0xE)
            length = 3;
        else if ((b >> 3) == 0x1E)
            length = 4;
        if (length == 0 || s.size() - i < length)
            return i;
        char32_t c = length == 1 ? b : b & (0x7F >> length);
        for (std::size_t k = 1; k < length; ++k) {
            const auto next = static_cast<unsigned char>(s[i + k]);
            if ((next & 0xC0) != 0x80)
                return i;
            c = (c << 6) | (next & 0x3F);
        }
        constexpr char32_t shortest[] = {0, 0, 0x80, 0x800, 0x10000};
        if (c < shortest[length] || c > 0x10FFFF || (c >= 0xD800 && c <= 0xDFFF))
            return i;
        i += length;
    }
    return std::nullopt;
}

std::string_view kind_of(const YAML::Node& node) {
    switch (node.Type()) {
    case YAML::NodeType::Map:
        return "a mapping";
    case YAML::NodeType::Sequence:
        return "a list";
    case YAML::NodeType::Scalar:
        return "a scalar";
    default:
        return "nothing";
    }
}

std::size_t edit_distance(std::string_view a, std::string_view b) {
    std::vector<std::size_t> row(b.size() + 1);
    for (std::size_t j = 0; j <= b.size(); ++j)
        row[j] = j;
    for (std::size_t i = 1; i <= a.size(); ++i) {
        std::size_t diagonal = row[0];
        row[0] = i;
        for (std::size_t j = 1; j <= b.size(); ++j) {
            std::size_t above = row[j];
            row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] != b[j - 1])});
            diagonal = above;
        }
    }
    return row[b.size()];
}

std::string unknown_key_message(std::string_view key, std::span<const std::string_view> allowed) {
    std::string_view best;
    std::size_t best_distance = 3; // further than this is a guess, not a typo
    for (auto candidate : allowed) {
        auto d = edit_distance(key, candidate);
        if (d < best_distance) {
            best = candidate;
            best_distance = d;
        }
    }
    std::string message = "unknown key '" + std::string(key) + "'";
    if (!best.empty())
        return message + " (did you mean '" + std::string(best) + "'?)";
    message += " (expected one of: ";
    for (std::size_t i = 0; i < allowed.size(); ++i)
        message += (i ? ", " : "") + std::string(allowed[i]);
    return message + ")";
}

// "q35, pc or microvm": an enum's spellings as YAML takes them.
template <schema::definition_enum Enum>
std::string choices() {
    std::vector<std::string_view> names;
    for (const auto& n : schema::names_of(Enum{}).names)
        if (n.written)
            names.push_back(n.name);
    std::string out;
    for (std::size_t i = 0; i < names.size(); ++i) {
        if (i > 0)
            out += (i + 1 == names.size()) ? " or " : ", ";
        out += names[i];
    }
    return out;
}

// The entries of one YAML mapping that passed the key checks; a key that is not there reads as
// an empty node, the same as one written with no value.
class fields {
public:
    bool contains(std::string_view key) const { return values_.find(key) != values_.end(); }
    void add(std::string key, YAML::Node value) { values_.emplace(std::move(key), value); }
    YAML::Node get(std::string_view key) const {
        auto it = values_.find(key);
        return it == values_.end() ? YAML::Node() : it->second;
    }

private:
    std::map<std::string, YAML::Node, std::less<>> values_;
};

// The keys a section's describe() names, in its order: what its mapping may hold.
class key_list {
public:
    std::vector<std::string_view> keys;

    template <class T>
    void field(std::string_view key, T&, const schema::field_info<T>&) {
        keys.push_back(key);
    }
    template <class T>
    void size(std::string_view key, T&, const schema::field_info<T>&) {
        keys.push_back(key);
    }
    template <class T>
    void section(std::string_view key, T&, const schema::field_info<T>&) {
        keys.push_back(key);
    }
    template <class T>
    void sections(std::string_view key, T&, const schema::field_info<T>&) {
        keys.push_back(key);
    }
    void nvram(std::string_view key, vm_definition&, const schema::field_info<fs::path>&) {
        keys.push_back(key);
    }
    void serial_log(std::string_view key, serial_definition&, const schema::field_info<bool>&) {
        keys.push_back(key);
    }
    void host_port(std::string_view key, std::uint16_t&, const schema::field_info<std::uint16_t>&) {
        keys.push_back(key);
    }
};

template <class Section>
const std::vector<std::string_view>& keys_of() {
    static const auto keys = [] {
        key_list list;
        Section section{};
        schema::describe(list, section);
        return std::move(list.keys);
    }();
    return keys;
}

// Turns one YAML document into a vm_definition, collecting every problem instead of stopping at
// the first, and recording where each field was written. The schema (schema.hpp) says which
// fields each mapping has; this says how a YAML value becomes each type.
class parser {
public:
    parser(source_map& sources, fs::path base_dir)
        : sources_(sources)
        , base_dir_(std::move(base_dir)) {}

    void parse(const YAML::Node& root, vm_definition& def);

    std::vector<diagnostic> take_diagnostics() { return std::move(diagnostics_); }

    // The visitor of one mapping's describe(): it reads the fields the mapping holds.
    class section_reader;

private:
    void fail(const std::string& field, std::string message) {
        diagnostics_.push_back(sources_.make_diagnostic(field, std::move(message)));
    }

    void fail_at(const YAML::Mark& mark, std::string field, std::string message) {
        diagnostics_.push_back(diagnostic{sources_.file(), mark.line + 1, mark.column + 1,
                                          std::move(field), std::move(message)});
    }

    void record(const std::string& field, const YAML::Node& value, const YAML::Mark& fallback) {
        // yaml-cpp places an empty value at the next token, which may be lines further down.
        auto mark = present(value) ? value.Mark() : fallback;
        sources_.set(field, mark.line + 1, mark.column + 1);
    }

    std::optional<fields> read_map(const YAML::Node& node, const std::string& field,
                                   std::span<const std::string_view> allowed);
    bool expect_list(const YAML::Node& node, const std::string& field, std::string_view what);
    std::optional<std::string> read_scalar(const YAML::Node& node, const std::string& field,
                                           std::string_view expected);
    std::optional<std::string> read_string(const YAML::Node& node, const std::string& field);
    std::optional<std::int64_t> read_integer(const YAML::Node& node, const std::string& field,
                                             std::int64_t min, std::int64_t max);
    std::optional<bool> read_bool(const YAML::Node& node, const std::string& field);
    std::optional<std::uint64_t> read_size(const YAML::Node& node, const std::string& field);
    std::optional<fs::path> read_path(const YAML::Node& node, const std::string& field);
    std::optional<std::string> expand_variables(std::string_view text, const std::string& field);

    template <schema::definition_enum Enum>
    std::optional<Enum> read_enum(const YAML::Node& node, const std::string& field) {
        const auto& names = schema::names_of(Enum{});
        auto text = read_scalar(node, field, names.noun);
        if (!text)
            return std::nullopt;
        for (const auto& n : names.names)
            if (n.written && n.name == *text)
                return n.value;
        fail(field, "unknown " + std::string(names.noun) + " '" + *text + "' (expected " +
                        choices<Enum>() + ")");
        return std::nullopt;
    }

    // One plain value of type T.
    template <class T>
    std::optional<T> read_value(const YAML::Node& node, const std::string& field,
                                const auto& info) {
        if constexpr (std::is_same_v<T, std::string>) {
            return read_string(node, field);
        } else if constexpr (std::is_same_v<T, fs::path>) {
            return read_path(node, field);
        } else if constexpr (std::is_same_v<T, bool>) {
            return read_bool(node, field);
        } else if constexpr (std::is_enum_v<T>) {
            return read_enum<T>(node, field);
        } else {
            static_assert(std::is_integral_v<T>);
            auto v = read_integer(node, field, info.min, info.max);
            return v ? std::optional<T>(static_cast<T>(*v)) : std::nullopt;
        }
    }

    template <class Section>
    void read_section(const YAML::Node& node, const std::string& field, Section& section);

    void add_nvram_disk(vm_definition& def);

    source_map& sources_;
    fs::path base_dir_;
    std::vector<diagnostic> diagnostics_;
    // Fields written with a value (not left out, not empty): what complete_defaults asks.
    std::set<std::string, std::less<>> given_;
    // nvram:, read before the disks it joins.
    std::optional<fs::path> nvram_file_;
    bool nvram_written_ = false;
};

class parser::section_reader {
public:
    section_reader(parser& p, const fields& f, const std::string& path)
        : p_(p)
        , f_(f)
        , path_(path) {}

    template <class T>
    void field(std::string_view key, T& value, const schema::field_info<T>& info) {
        const auto n = f_.get(key);
        const auto field = join(path_, key);
        if (!present(n)) {
            if (info.required)
                p_.fail(field, "required field is missing");
            return;
        }
        if constexpr (std::is_same_v<T, std::vector<std::string>>) {
            if (!p_.expect_list(n, field, list_of(info)))
                return;
            std::size_t i = 0;
            for (const auto& item : n) {
                auto item_field = indexed(field, i++);
                p_.record(item_field, item, n.Mark());
                if (auto v = p_.read_string(item, item_field))
                    value.push_back(*v);
            }
        } else if constexpr (schema::is_optional<T>::value) {
            value = p_.read_value<typename T::value_type>(n, field, info);
        } else if (auto v = p_.read_value<T>(n, field, info)) {
            if constexpr (std::is_same_v<T, std::string>)
                if (info.empty_is_unset && v->empty()) {
                    // The writer leaves such a value out: it would not read back.
                    p_.fail(field, "must not be empty (leave it out instead)");
                    return;
                }
            value = std::move(*v);
        }
    }

    template <class T>
    void size(std::string_view key, T& value, const schema::field_info<T>& info) {
        const auto n = f_.get(key);
        const auto field = join(path_, key);
        if (!present(n)) {
            if (info.required)
                p_.fail(field, "required field is missing");
        } else if (auto v = p_.read_size(n, field)) {
            value = *v;
        } else if constexpr (schema::is_optional<T>::value) {
            value.reset();
        }
    }

    template <class Section>
    void section(std::string_view key, Section& value, const schema::field_info<Section>&) {
        if (const auto n = f_.get(key); present(n))
            p_.read_section(n, join(path_, key), value);
    }

    template <class Section>
    void section(std::string_view key, std::optional<Section>& value,
                 const schema::field_info<std::optional<Section>>& info) {
        const auto n = f_.get(key);
        if (!present(n) && !(info.empty_is_defaults && f_.contains(key)))
            return;
        p_.read_section(n.IsNull() ? YAML::Node(YAML::NodeType::Map) : n, join(path_, key),
                        value.emplace());
    }

    template <class Section>
    void sections(std::string_view key, std::vector<Section>& list,
                  const schema::field_info<std::vector<Section>>& info) {
        const auto n = f_.get(key);
        const auto field = join(path_, key);
        if (!present(n) || !p_.expect_list(n, field, list_of(info)))
            return;
        std::size_t i = 0;
        for (const auto& item : n) {
            auto item_field = indexed(field, i++);
            p_.record(item_field, item, n.Mark());
            p_.read_section(item, item_field, list.emplace_back());
        }
    }

    void nvram(std::string_view key, vm_definition&, const schema::field_info<fs::path>&) {
        const auto n = f_.get(key);
        p_.nvram_written_ = present(n);
        if (p_.nvram_written_)
            p_.nvram_file_ = p_.read_path(n, std::string(key));
    }

    void serial_log(std::string_view key, serial_definition& serial,
                    const schema::field_info<bool>&) {
        const auto n = f_.get(key);
        const auto field = join(path_, key);
        if (!present(n) || !p_.read_scalar(n, field, "true, false or a path"))
            return;
        if (auto value = plain_bool(n)) {
            serial.log = *value;
        } else if (yaml11_bool(n)) {
            // Almost surely meant as a boolean; a file of that name must be quoted.
            p_.fail(field,
                    "expected true or false, got '" + n.Scalar() + "' (quote it if it is a path)");
        } else if (auto p = p_.read_path(n, field)) {
            serial.log = true;
            serial.log_file = *p;
        }
    }

    void host_port(std::string_view key, std::uint16_t& port,
                   const schema::field_info<std::uint16_t>& info) {
        const auto n = f_.get(key);
        if (n.IsScalar() && !is_quoted(n) && n.Scalar() == "auto")
            port = 0;
        else
            field(key, port, info);
    }

private:
    // "a list of disks" from the type "list of disks".
    static std::string list_of(const auto& info) {
        return "a " + std::string(info.type.empty() ? std::string_view("list") : info.type);
    }

    parser& p_;
    const fields& f_;
    const std::string& path_;
};

template <class Section>
void parser::read_section(const YAML::Node& node, const std::string& field, Section& section) {
    const auto& keys = keys_of<Section>();
    auto f = read_map(node, field, keys);
    if (!f)
        return;
    section_reader reader(*this, *f, field);
    schema::describe(reader, section);
}

std::optional<fields> parser::read_map(const YAML::Node& node, const std::string& field,
                                       std::span<const std::string_view> allowed) {
    if (!node.IsMap()) {
        fail(field, "expected a mapping, got " + std::string(kind_of(node)));
        return std::nullopt;
    }
    fields out;
    for (const auto& entry : node) {
        // Copies: yaml-cpp's iterator hands out a proxy that dies with the expression.
        const YAML::Node key = entry.first;
        const YAML::Node value = entry.second;
        if (!key.IsScalar()) {
            fail_at(key.Mark(), field,
                    "keys must be plain strings, got " + std::string(kind_of(key)));
            continue;
        }
        const std::string& name = key.Scalar();
        auto path = join(field, name);
        if (std::find(allowed.begin(), allowed.end(), name) == allowed.end()) {
            fail_at(key.Mark(), path, unknown_key_message(name, allowed));
            continue;
        }
        if (out.contains(name)) {
            fail_at(key.Mark(), path,
                    "duplicate key (first given on line " +
                        std::to_string(sources_.locate(path).line) + ")");
            continue;
        }
        record(path, value, key.Mark());
        if (present(value))
            given_.insert(path);
        out.add(name, value);
    }
    return out;
}

bool parser::expect_list(const YAML::Node& node, const std::string& field, std::string_view what) {
    if (node.IsSequence())
        return true;
    fail(field, "expected " + std::string(what) + ", got " + std::string(kind_of(node)));
    return false;
}

std::optional<std::string> parser::read_scalar(const YAML::Node& node, const std::string& field,
                                               std::string_view expected) {
    if (!node.IsScalar()) {
        fail(field, "expected " + std::string(expected) + ", got " + std::string(kind_of(node)));
        return std::nullopt;
    }
    if (auto at = invalid_utf8_at(node.Scalar())) {
        fail(field, "is not valid UTF-8 (at byte " + std::to_string(*at) + ")");
        return std::nullopt;
    }
    return node.Scalar();
}

std::optional<std::string> parser::read_string(const YAML::Node& node, const std::string& field) {
    return read_scalar(node, field, "a string");
}

std::optional<std::int64_t> parser::read_integer(const YAML::Node& node, const std::string& field,
                                                 std::int64_t min, std::int64_t max) {
    auto text = read_scalar(node, field, "an integer");
    if (!text)
        return std::nullopt;
    std::int64_t value = 0;
    auto [end, ec] = std::from_chars(text->data(), text->data() + text->size(), value);
    if (is_quoted(node)) {
        fail(field, "expected an integer, got the string \"" + *text + "\"");
        return std::nullopt;
    }
    if (ec == std::errc::invalid_argument || end != text->data() + text->size()) {
        fail(field, "expected an integer, got '" + *text + "'");
        return std::nullopt;
    }
    if (ec == std::errc::result_out_of_range || value < min || value > max) {
        fail(field, "must be between " + std::to_string(min) + " and " + std::to_string(max) +
                        ", got " + *text);
        return std::nullopt;
    }
    return value;
}

std::optional<bool> parser::read_bool(const YAML::Node& node, const std::string& field) {
    auto text = read_scalar(node, field, "true or false");
    if (!text)
        return std::nullopt;
    if (auto value = plain_bool(node))
        return value;
    fail(field, "expected true or false, got '" + *text + "'");
    return std::nullopt;
}

std::optional<std::uint64_t> parser::read_size(const YAML::Node& node, const std::string& field) {
    auto text = read_scalar(node, field, "a size");
    if (!text)
        return std::nullopt;
    try {
        return parse_size(*text);
    } catch (const error& e) {
        fail(field, e.what());
        return std::nullopt;
    }
}

std::optional<std::string> parser::expand_variables(std::string_view text,
                                                    const std::string& field) {
    std::string out;
    for (std::size_t i = 0; i < text.size(); ++i) {
        if (text[i] != '$' || i + 1 == text.size()) {
            out += text[i];
        } else if (text[i + 1] == '$') {
            out += '$'; // "$$" keeps a literal dollar, which dump_definition relies on
            ++i;
        } else if (text[i + 1] == '{') {
            auto close = text.find('}', i + 2);
            if (close == std::string_view::npos) {
                fail(field, "unterminated '${' in '" + std::string(text) + "'");
                return std::nullopt;
            }
            auto name = text.substr(i + 2, close - i - 2);
            bool valid = !name.empty() && !(name[0] >= '0' && name[0] <= '9') &&
                         std::all_of(name.begin(), name.end(), [](char c) {
                             return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
                                    (c >= '0' && c <= '9') || c == '_';
                         });
            if (!valid) {
                fail(field, "invalid variable name '${" + std::string(name) + "}'");
                return std::nullopt;
            }
            const char* value = std::getenv(std::string(name).c_str());
            if (value == nullptr) {
                fail(field, "environment variable " + std::string(name) + " is not set");
                return std::nullopt;
            }
            out += value;
            i = close;
        } else {
            out += text[i];
        }
    }
    return out;
}

std::optional<fs::path> parser::read_path(const YAML::Node& node, const std::string& field) {
    auto text = read_scalar(node, field, "a path");
    if (!text)
        return std::nullopt;
    auto expanded = expand_variables(*text, field);
    if (!expanded)
        return std::nullopt;
    if (expanded->empty()) {
        fail(field, "must not be empty");
        return std::nullopt;
    }
    fs::path p(*expanded);
    return (p.is_absolute() ? p : base_dir_ / p).lexically_normal();
}

void parser::parse(const YAML::Node& root, vm_definition& def) {
    record("", root, root.Mark());
    read_section(root, "", def);
    schema::complete_defaults(def, [&](std::string_view field) { return given_.contains(field); });
    add_nvram_disk(def);
}

// The UEFI variable store joins the disks (see disk_bus::pflash). By default it sits beside the
// first disk's image, named after the VM, so that it lives and goes with the VM's images.
void parser::add_nvram_disk(vm_definition& def) {
    if (nvram_written_ && def.firmware != firmware_type::uefi) {
        fail("nvram", "only a VM with firmware: uefi has a variable store");
        return;
    }
    if (def.firmware != firmware_type::uefi)
        return;
    auto file = nvram_file_;
    if (!nvram_written_) {
        if (def.disks.empty() || def.disks.front().file.empty()) {
            fail("firmware", "say where the UEFI variable store is kept (nvram: FILE): the VM "
                             "has no disk to keep it beside");
            return;
        }
        file = def.disks.front().file.parent_path() / (def.name + "-nvram.qcow2");
    }
    if (!file)
        return;
    disk_definition nvram;
    nvram.name = std::string(nvram_disk_name);
    nvram.node_name = nvram.name;
    nvram.file = *file;
    nvram.bus = disk_bus::pflash;
    def.disks.push_back(std::move(nvram));
}

// Where the root node of one YAML document is.
class document_root : public YAML::EventHandler {
public:
    std::optional<YAML::Mark> mark;

    void OnDocumentStart(const YAML::Mark&) override {}
    void OnDocumentEnd() override {}
    void OnNull(const YAML::Mark& m, YAML::anchor_t) override { node(m); }
    void OnAlias(const YAML::Mark& m, YAML::anchor_t) override { node(m); }
    void OnScalar(const YAML::Mark& m, const std::string&, YAML::anchor_t,
                  const std::string&) override {
        node(m);
    }
    void OnSequenceStart(const YAML::Mark& m, const std::string&, YAML::anchor_t,
                         YAML::EmitterStyle::value) override {
        node(m);
    }
    void OnSequenceEnd() override {}
    void OnMapStart(const YAML::Mark& m, const std::string&, YAML::anchor_t,
                    YAML::EmitterStyle::value) override {
        node(m);
    }
    void OnMapEnd() override {}

private:
    void node(const YAML::Mark& m) {
        if (!mark)
            mark = m;
    }
};

// Where a second document starts, if the text has one. Not YAML::LoadAll: in yaml-cpp 0.7 it
// loops forever, allocating as it goes, on a token the parser does not consume, such as a stray
// ',' (yaml-cpp issue 1040; found by fuzzing): every call of HandleNextDocument then yields
// another empty document at the same place. So at most three documents are read, and two whose
// roots are at the same place are that token, reported as a syntax error.
std::optional<YAML::Mark> second_document(const std::string& text) {
    std::istringstream in(text);
    YAML::Parser parser(in);
    std::vector<YAML::Mark> roots;
    for (document_root doc; roots.size() < 3 && parser.HandleNextDocument(doc); doc = {}) {
        const auto mark = doc.mark.value_or(YAML::Mark::null_mark());
        if (!roots.empty() && roots.back().pos == mark.pos) {
            const auto at = static_cast<std::size_t>(mark.pos);
            std::string what = "unexpected character";
            if (at < text.size() && text[at] > ' ' && text[at] < 0x7f)
                what = "unexpected '" + std::string(1, text[at]) + "'";
            throw YAML::ParserException(mark, what);
        }
        roots.push_back(mark);
    }
    return roots.size() > 1 ? std::optional(roots[1]) : std::nullopt;
}

vm_definition parse_document(const std::string& text, const fs::path& origin) {
    vm_definition def;
    def.sources = source_map(origin.string());
    YAML::Node root;
    std::optional<YAML::Mark> second;
    try {
        root = YAML::Load(text);
        second = second_document(text);
    } catch (const YAML::Exception& e) {
        throw error(diagnostic{origin.string(), e.mark.line + 1, e.mark.column + 1, "", e.msg});
    }
    if (root.IsNull())
        throw error(diagnostic{origin.string(), 1, 1, "", "the definition is empty"});
    if (second)
        throw error(diagnostic{origin.string(), second->line + 1, second->column + 1, "",
                               "only one YAML document is allowed"});

    auto base_dir = origin.empty() ? fs::current_path() : fs::absolute(origin).parent_path();
    parser p(def.sources, base_dir);
    p.parse(root, def);
    auto problems = p.take_diagnostics();
    if (!problems.empty()) {
        sort_by_position(problems);
        throw error(std::move(problems));
    }
    return def;
}

} // namespace

vm_definition load_definition(const std::filesystem::path& file) {
    // A directory opens fine as a stream and then reads as an empty definition.
    if (std::error_code ec; fs::is_directory(file, ec))
        throw error(
            diagnostic{file.string(), 0, 0, "", "cannot read the definition: it is a directory"});
    std::ifstream in(file, std::ios::binary);
    if (!in)
        throw error(diagnostic{file.string(), 0, 0, "",
                               std::string("cannot read the definition: ") + std::strerror(errno)});
    std::ostringstream text;
    text << in.rdbuf();
    if (in.bad())
        throw error(diagnostic{file.string(), 0, 0, "", "cannot read the definition"});
    return parse_document(text.str(), file);
}

vm_definition load_definition_from_string(std::string_view yaml,
                                          const std::filesystem::path& origin) {
    return parse_document(std::string(yaml), origin);
}

} // namespace qmpkit::launcher
