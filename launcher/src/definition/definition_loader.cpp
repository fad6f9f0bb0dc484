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
#include <initializer_list>
#include <limits>
#include <map>
#include <optional>
#include <span>
#include <sstream>
#include <system_error>
#include <utility>

namespace qmpkit::launcher {

namespace {

namespace fs = std::filesystem;

constexpr std::string_view root_keys[] = {
    "name",        "machine",    "accel", "cpus",     "memory",  "kernel",
    "initrd",      "append",     "boot",  "firmware", "nvram",   "command_channel",
    "guest_agent", "vmgenid",    "disks", "serial",   "network", "cloud_init",
    "shares",      "extra_args", "reset", "security"};
constexpr std::string_view disk_keys[] = {"name", "file",      "format", "size",      "backing",
                                          "bus",  "read_only", "cache",  "node_name", "encryption"};
constexpr std::string_view encryption_keys[] = {"format", "key_file"};
constexpr std::string_view security_keys[] = {"sandbox", "run_as"};
constexpr std::string_view serial_keys[] = {"log", "socket"};
constexpr std::string_view reset_keys[] = {"strategy"};
constexpr std::string_view network_keys[] = {"mode", "forwards", "mac"};
constexpr std::string_view cloud_init_keys[] = {"user", "hostname", "ssh_authorized_keys",
                                                "user_data", "network_config"};
constexpr std::string_view share_keys[] = {"tag", "path", "read_only", "mount"};
constexpr std::string_view forward_keys[] = {"protocol", "host_addr", "host_port", "guest_port"};

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

template <class Enum>
std::string choices(std::initializer_list<Enum> values) {
    std::string out;
    std::size_t i = 0;
    for (auto v : values) {
        if (i > 0)
            out += (i + 1 == values.size()) ? " or " : ", ";
        out += to_string(v);
        ++i;
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

// Turns one YAML document into a vm_definition, collecting every problem instead of stopping at
// the first, and recording where each field was written.
class parser {
public:
    parser(source_map& sources, fs::path base_dir)
        : sources_(sources)
        , base_dir_(std::move(base_dir)) {}

    void parse(const YAML::Node& root, vm_definition& def);

    std::vector<diagnostic> take_diagnostics() { return std::move(diagnostics_); }

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

    template <class Enum>
    std::optional<Enum> read_enum(const YAML::Node& node, const std::string& field,
                                  std::string_view what, std::initializer_list<Enum> values) {
        auto text = read_scalar(node, field, what);
        if (!text)
            return std::nullopt;
        for (auto v : values)
            if (to_string(v) == *text)
                return v;
        fail(field, "unknown " + std::string(what) + " '" + *text + "' (expected " +
                        choices(values) + ")");
        return std::nullopt;
    }

    void parse_disk(const YAML::Node& node, const std::string& field, disk_definition& disk);
    void parse_nvram(const YAML::Node& node, vm_definition& def);
    void parse_encryption(const YAML::Node& node, const std::string& field,
                          disk_encryption& encryption);
    void parse_security(const YAML::Node& node, security_definition& security);
    void parse_serial(const YAML::Node& node, serial_definition& serial);
    void parse_network(const YAML::Node& node, network_definition& network);
    void parse_forward(const YAML::Node& node, const std::string& field, port_forward& forward);
    void parse_cloud_init(const YAML::Node& node, cloud_init_definition& cloud_init);
    void parse_share(const YAML::Node& node, const std::string& field, share_definition& share);

    source_map& sources_;
    fs::path base_dir_;
    std::vector<diagnostic> diagnostics_;
};

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
        out.add(name, value);
    }
    return out;
}

bool parser::expect_list(const YAML::Node& node, const std::string& field, std::string_view what) {
    if (node.IsSequence())
        return true;
    fail(field, "expected a list of " + std::string(what) + ", got " + std::string(kind_of(node)));
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
    auto f = read_map(root, "", root_keys);
    if (!f)
        return;

    if (auto n = f->get("name"); present(n)) {
        if (auto v = read_string(n, "name"))
            def.name = *v;
    } else {
        fail("name", "required field is missing");
    }
    if (auto n = f->get("machine"); present(n))
        if (auto v = read_enum(n, "machine", "machine type",
                               {machine_type::q35, machine_type::pc, machine_type::microvm}))
            def.machine = *v;
    if (auto n = f->get("accel"); present(n))
        if (auto v = read_enum(n, "accel", "accelerator",
                               {accel_mode::automatic, accel_mode::kvm, accel_mode::tcg}))
            def.accel = *v;
    if (auto n = f->get("cpus"); present(n))
        if (auto v = read_integer(n, "cpus", 1, 255))
            def.cpus = static_cast<int>(*v);
    if (auto n = f->get("memory"); present(n))
        if (auto v = read_size(n, "memory"))
            def.memory = *v;
    if (auto n = f->get("kernel"); present(n))
        def.kernel = read_path(n, "kernel");
    if (auto n = f->get("initrd"); present(n))
        def.initrd = read_path(n, "initrd");
    if (auto n = f->get("append"); present(n))
        def.append = read_string(n, "append");
    def.boot = def.kernel ? boot_mode::kernel : boot_mode::disk;
    if (auto n = f->get("boot"); present(n))
        if (auto v = read_enum(n, "boot", "boot mode", {boot_mode::kernel, boot_mode::disk}))
            def.boot = *v;
    if (auto n = f->get("firmware"); present(n))
        if (auto v =
                read_enum(n, "firmware", "firmware", {firmware_type::bios, firmware_type::uefi}))
            def.firmware = *v;
    if (auto n = f->get("command_channel"); present(n))
        if (auto v = read_bool(n, "command_channel"))
            def.command_channel = *v;
    if (auto n = f->get("guest_agent"); present(n))
        if (auto v = read_bool(n, "guest_agent"))
            def.guest_agent = *v;
    if (auto n = f->get("vmgenid"); present(n))
        if (auto v = read_bool(n, "vmgenid"))
            def.vmgenid = *v;

    if (auto n = f->get("disks"); present(n) && expect_list(n, "disks", "disks")) {
        std::size_t i = 0;
        for (const auto& item : n) {
            auto field = disk_field(i++);
            record(field, item, n.Mark());
            parse_disk(item, field, def.disks.emplace_back());
        }
    }
    parse_nvram(f->get("nvram"), def);
    if (auto n = f->get("serial"); present(n))
        parse_serial(n, def.serial);
    if (auto n = f->get("reset"); present(n)) {
        if (auto r = read_map(n, "reset", reset_keys))
            if (auto s = r->get("strategy"); present(s))
                if (auto v = read_enum(s, "reset.strategy", "reset strategy",
                                       {reset_strategy::automatic, reset_strategy::loadvm,
                                        reset_strategy::template_ram, reset_strategy::standby}))
                    def.reset.strategy = *v;
    }
    if (auto n = f->get("network"); present(n)) {
        network_definition network;
        parse_network(n, network);
        if (network.mac.empty())
            network.mac = default_mac_address(def.name);
        def.network = std::move(network);
    }
    if (auto n = f->get("security"); present(n))
        parse_security(n, def.security);
    if (f->contains("cloud_init")) {
        auto n = f->get("cloud_init");
        // An empty section (cloud_init: with nothing after it) asks for every default.
        auto& cloud_init = def.cloud_init.emplace();
        if (!n.IsNull())
            parse_cloud_init(n, cloud_init);
        if (cloud_init.hostname.empty())
            cloud_init.hostname = def.name;
    }
    if (auto n = f->get("shares"); present(n) && expect_list(n, "shares", "shares")) {
        std::size_t i = 0;
        for (const auto& item : n) {
            auto field = indexed("shares", i++);
            record(field, item, n.Mark());
            parse_share(item, field, def.shares.emplace_back());
        }
    }
    if (auto n = f->get("extra_args"); present(n) && expect_list(n, "extra_args", "strings")) {
        std::size_t i = 0;
        for (const auto& item : n) {
            auto field = indexed("extra_args", i++);
            record(field, item, n.Mark());
            if (auto v = read_string(item, field))
                def.extra_args.push_back(*v);
        }
    }
}

void parser::parse_disk(const YAML::Node& node, const std::string& field, disk_definition& disk) {
    auto f = read_map(node, field, disk_keys);
    if (!f)
        return;
    auto sub = [&](std::string_view key) { return join(field, key); };

    if (auto n = f->get("name"); present(n)) {
        if (auto v = read_string(n, sub("name")))
            disk.name = *v;
    } else {
        fail(sub("name"), "required field is missing");
    }
    if (auto n = f->get("file"); present(n)) {
        if (auto v = read_path(n, sub("file")))
            disk.file = *v;
    } else {
        fail(sub("file"), "required field is missing");
    }
    if (auto n = f->get("format"); present(n))
        if (auto v =
                read_enum(n, sub("format"), "disk format", {disk_format::qcow2, disk_format::raw}))
            disk.format = *v;
    if (auto n = f->get("size"); present(n))
        disk.size = read_size(n, sub("size"));
    if (auto n = f->get("backing"); present(n))
        disk.backing = read_path(n, sub("backing"));
    if (auto n = f->get("bus"); present(n))
        if (auto v = read_enum(n, sub("bus"), "disk bus",
                               {disk_bus::virtio, disk_bus::scsi, disk_bus::ide}))
            disk.bus = *v;
    if (auto n = f->get("read_only"); present(n))
        if (auto v = read_bool(n, sub("read_only")))
            disk.read_only = *v;
    if (auto n = f->get("cache"); present(n))
        if (auto v = read_enum(n, sub("cache"), "cache mode",
                               {cache_mode::writeback, cache_mode::none, cache_mode::writethrough,
                                cache_mode::directsync, cache_mode::unsafe}))
            disk.cache = *v;
    disk.node_name = disk.name;
    if (auto n = f->get("node_name"); present(n))
        if (auto v = read_string(n, sub("node_name")))
            disk.node_name = *v;
    if (auto n = f->get("encryption"); present(n))
        parse_encryption(n, sub("encryption"), disk.encryption.emplace());
}

// The UEFI variable store joins the disks (see disk_bus::pflash). By default it sits beside the
// first disk's image, named after the VM, so that it lives and goes with the VM's images.
void parser::parse_nvram(const YAML::Node& node, vm_definition& def) {
    std::optional<fs::path> file;
    if (present(node)) {
        file = read_path(node, "nvram");
        if (def.firmware != firmware_type::uefi) {
            fail("nvram", "only a VM with firmware: uefi has a variable store");
            return;
        }
    }
    if (def.firmware != firmware_type::uefi)
        return;
    if (!file && !present(node)) {
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

void parser::parse_encryption(const YAML::Node& node, const std::string& field,
                              disk_encryption& encryption) {
    auto f = read_map(node, field, encryption_keys);
    if (!f)
        return;
    if (auto n = f->get("format"); present(n))
        if (auto v =
                read_enum(n, join(field, "format"), "encryption format", {encryption_format::luks}))
            encryption.format = *v;
    if (auto n = f->get("key_file"); present(n)) {
        if (auto v = read_path(n, join(field, "key_file")))
            encryption.key_file = *v;
    } else {
        fail(join(field, "key_file"), "required field is missing");
    }
}

void parser::parse_security(const YAML::Node& node, security_definition& security) {
    auto f = read_map(node, "security", security_keys);
    if (!f)
        return;
    if (auto n = f->get("sandbox"); present(n))
        if (auto v = read_bool(n, "security.sandbox"))
            security.sandbox = *v;
    if (auto n = f->get("run_as"); present(n)) {
        if (auto v = read_string(n, "security.run_as")) {
            if (v->empty())
                fail("security.run_as", "must not be empty (leave it out to keep qmpkit's user)");
            security.run_as = *v;
        }
    }
}

void parser::parse_serial(const YAML::Node& node, serial_definition& serial) {
    auto f = read_map(node, "serial", serial_keys);
    if (!f)
        return;
    if (auto n = f->get("log");
        present(n) && read_scalar(n, "serial.log", "true, false or a path")) {
        if (auto value = plain_bool(n)) {
            serial.log = *value;
        } else if (yaml11_bool(n)) {
            // Almost surely meant as a boolean; a file of that name must be quoted.
            fail("serial.log",
                 "expected true or false, got '" + n.Scalar() + "' (quote it if it is a path)");
        } else if (auto p = read_path(n, "serial.log")) {
            serial.log = true;
            serial.log_file = *p;
        }
    }
    if (auto n = f->get("socket"); present(n))
        if (auto v = read_bool(n, "serial.socket"))
            serial.socket = *v;
}

void parser::parse_network(const YAML::Node& node, network_definition& network) {
    auto f = read_map(node, "network", network_keys);
    if (!f)
        return;
    if (auto n = f->get("mode"); present(n))
        if (auto v = read_enum(n, "network.mode", "network mode", {network_mode::user}))
            network.mode = *v;
    if (auto n = f->get("forwards");
        present(n) && expect_list(n, "network.forwards", "port forwards")) {
        std::size_t i = 0;
        for (const auto& item : n) {
            auto field = indexed("network.forwards", i++);
            record(field, item, n.Mark());
            parse_forward(item, field, network.forwards.emplace_back());
        }
    }
    if (auto n = f->get("mac"); present(n))
        if (auto v = read_string(n, "network.mac"))
            network.mac = *v;
}

void parser::parse_forward(const YAML::Node& node, const std::string& field,
                           port_forward& forward) {
    auto f = read_map(node, field, forward_keys);
    if (!f)
        return;
    if (auto n = f->get("protocol"); present(n))
        if (auto v = read_enum(n, join(field, "protocol"), "protocol",
                               {forward_protocol::tcp, forward_protocol::udp}))
            forward.protocol = *v;
    if (auto n = f->get("host_addr"); present(n))
        if (auto v = read_string(n, join(field, "host_addr")))
            forward.host_addr = *v;
    for (auto [key, port] : {std::pair{"host_port", &forward.host_port},
                             std::pair{"guest_port", &forward.guest_port}}) {
        auto path = join(field, key);
        if (auto n = f->get(key);
            port == &forward.host_port && n.IsScalar() && !is_quoted(n) && n.Scalar() == "auto") {
            *port = 0;
        } else if (present(n)) {
            if (auto v = read_integer(n, path, 1, std::numeric_limits<std::uint16_t>::max()))
                *port = static_cast<std::uint16_t>(*v);
        } else {
            fail(path, "required field is missing");
        }
    }
}

void parser::parse_cloud_init(const YAML::Node& node, cloud_init_definition& cloud_init) {
    auto f = read_map(node, "cloud_init", cloud_init_keys);
    if (!f)
        return;
    if (auto n = f->get("user"); present(n))
        if (auto v = read_string(n, "cloud_init.user"))
            cloud_init.user = *v;
    if (auto n = f->get("hostname"); present(n))
        if (auto v = read_string(n, "cloud_init.hostname"))
            cloud_init.hostname = *v;
    if (auto n = f->get("ssh_authorized_keys");
        present(n) && expect_list(n, "cloud_init.ssh_authorized_keys", "SSH public keys")) {
        std::size_t i = 0;
        for (const auto& item : n) {
            auto field = indexed("cloud_init.ssh_authorized_keys", i++);
            record(field, item, n.Mark());
            if (auto v = read_string(item, field))
                cloud_init.ssh_authorized_keys.push_back(*v);
        }
    }
    if (auto n = f->get("user_data"); present(n))
        cloud_init.user_data = read_path(n, "cloud_init.user_data");
    if (auto n = f->get("network_config"); present(n))
        cloud_init.network_config = read_path(n, "cloud_init.network_config");
}

void parser::parse_share(const YAML::Node& node, const std::string& field,
                         share_definition& share) {
    auto f = read_map(node, field, share_keys);
    if (!f)
        return;
    for (auto [key, value] : {std::pair{"tag", &share.tag}, std::pair{"mount", &share.mount}})
        if (auto n = f->get(key); present(n)) {
            if (auto v = read_string(n, join(field, key)))
                *value = *v;
        } else if (value == &share.tag) {
            fail(join(field, key), "required field is missing");
        }
    if (auto n = f->get("path"); present(n)) {
        if (auto p = read_path(n, join(field, "path")))
            share.path = *p;
    } else {
        fail(join(field, "path"), "required field is missing");
    }
    if (auto n = f->get("read_only"); present(n))
        if (auto v = read_bool(n, join(field, "read_only")))
            share.read_only = *v;
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

// Strings are always quoted so that a name like "true" or "1e3" reads back as the same string.
void emit_string(YAML::Emitter& out, std::string_view key, const std::string& value) {
    out << YAML::Key << std::string(key) << YAML::Value << YAML::DoubleQuoted << value;
}

void emit_path(YAML::Emitter& out, std::string_view key, const fs::path& value) {
    std::string escaped;
    for (char c : value.string()) {
        escaped += c;
        if (c == '$')
            escaped += '$';
    }
    emit_string(out, key, escaped);
}

template <class T>
void emit_plain(YAML::Emitter& out, std::string_view key, const T& value) {
    out << YAML::Key << std::string(key) << YAML::Value << value;
}

void emit_enum(YAML::Emitter& out, std::string_view key, auto value) {
    emit_plain(out, key, std::string(to_string(value)));
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

std::string dump_definition(const vm_definition& def) {
    YAML::Emitter out;
    out << YAML::BeginMap;
    emit_string(out, "name", def.name);
    emit_enum(out, "machine", def.machine);
    emit_enum(out, "accel", def.accel);
    emit_plain(out, "cpus", def.cpus);
    emit_plain(out, "memory", format_size(def.memory));
    if (def.kernel)
        emit_path(out, "kernel", *def.kernel);
    if (def.initrd)
        emit_path(out, "initrd", *def.initrd);
    if (def.append)
        emit_string(out, "append", *def.append);
    emit_enum(out, "boot", def.boot);
    emit_enum(out, "firmware", def.firmware);
    if (const auto* nvram = nvram_disk(def))
        emit_path(out, "nvram", nvram->file);
    emit_plain(out, "command_channel", def.command_channel);
    emit_plain(out, "guest_agent", def.guest_agent);
    emit_plain(out, "vmgenid", def.vmgenid);

    out << YAML::Key << "disks" << YAML::Value << YAML::BeginSeq;
    for (const auto& disk : def.disks) {
        if (disk.bus == disk_bus::pflash)
            continue; // written as nvram:
        out << YAML::BeginMap;
        emit_string(out, "name", disk.name);
        emit_path(out, "file", disk.file);
        emit_enum(out, "format", disk.format);
        if (disk.size)
            emit_plain(out, "size", format_size(*disk.size));
        if (disk.backing)
            emit_path(out, "backing", *disk.backing);
        emit_enum(out, "bus", disk.bus);
        emit_plain(out, "read_only", disk.read_only);
        emit_enum(out, "cache", disk.cache);
        emit_string(out, "node_name", disk.node_name);
        if (disk.encryption) {
            out << YAML::Key << "encryption" << YAML::Value << YAML::BeginMap;
            emit_enum(out, "format", disk.encryption->format);
            emit_path(out, "key_file", disk.encryption->key_file);
            out << YAML::EndMap;
        }
        out << YAML::EndMap;
    }
    out << YAML::EndSeq;

    out << YAML::Key << "reset" << YAML::Value << YAML::BeginMap;
    emit_enum(out, "strategy", def.reset.strategy);
    out << YAML::EndMap;

    out << YAML::Key << "serial" << YAML::Value << YAML::BeginMap;
    if (def.serial.log && !def.serial.log_file.empty())
        emit_path(out, "log", def.serial.log_file);
    else
        emit_plain(out, "log", def.serial.log);
    emit_plain(out, "socket", def.serial.socket);
    out << YAML::EndMap;

    if (def.network) {
        out << YAML::Key << "network" << YAML::Value << YAML::BeginMap;
        emit_enum(out, "mode", def.network->mode);
        out << YAML::Key << "forwards" << YAML::Value << YAML::BeginSeq;
        for (const auto& fwd : def.network->forwards) {
            out << YAML::Flow << YAML::BeginMap;
            emit_enum(out, "protocol", fwd.protocol);
            emit_string(out, "host_addr", fwd.host_addr);
            if (fwd.host_port == 0)
                emit_plain(out, "host_port", "auto");
            else
                emit_plain(out, "host_port", fwd.host_port);
            emit_plain(out, "guest_port", fwd.guest_port);
            out << YAML::EndMap;
        }
        out << YAML::EndSeq;
        emit_string(out, "mac", def.network->mac);
        out << YAML::EndMap;
    }

    if (def.cloud_init) {
        const auto& ci = *def.cloud_init;
        out << YAML::Key << "cloud_init" << YAML::Value << YAML::BeginMap;
        emit_string(out, "user", ci.user);
        emit_string(out, "hostname", ci.hostname);
        out << YAML::Key << "ssh_authorized_keys" << YAML::Value << YAML::BeginSeq;
        for (const auto& key : ci.ssh_authorized_keys)
            out << YAML::DoubleQuoted << key;
        out << YAML::EndSeq;
        if (ci.user_data)
            emit_path(out, "user_data", *ci.user_data);
        if (ci.network_config)
            emit_path(out, "network_config", *ci.network_config);
        out << YAML::EndMap;
    }

    if (!def.shares.empty()) {
        out << YAML::Key << "shares" << YAML::Value << YAML::BeginSeq;
        for (const auto& share : def.shares) {
            out << YAML::BeginMap;
            emit_string(out, "tag", share.tag);
            emit_path(out, "path", share.path);
            emit_plain(out, "read_only", share.read_only);
            if (!share.mount.empty())
                emit_string(out, "mount", share.mount);
            out << YAML::EndMap;
        }
        out << YAML::EndSeq;
    }

    out << YAML::Key << "security" << YAML::Value << YAML::BeginMap;
    emit_plain(out, "sandbox", def.security.sandbox);
    if (!def.security.run_as.empty())
        emit_string(out, "run_as", def.security.run_as);
    out << YAML::EndMap;

    out << YAML::Key << "extra_args" << YAML::Value << YAML::Flow << YAML::BeginSeq;
    for (const auto& arg : def.extra_args)
        out << YAML::DoubleQuoted << arg;
    out << YAML::EndSeq;
    out << YAML::EndMap;
    return std::string("# Written by qmpkit; paths are absolute.\n") + out.c_str() + "\n";
}

} // namespace qmpkit::launcher
