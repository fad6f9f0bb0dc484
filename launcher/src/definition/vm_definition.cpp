#include <qmpkit/launcher/error.hpp>
#include <qmpkit/launcher/vm_definition.hpp>

#include <array>
#include <cstdio>
#include <utility>

namespace qmpkit::launcher {

namespace {

template <class Enum, std::size_t N>
using name_table = std::array<std::pair<Enum, std::string_view>, N>;

constexpr name_table<machine_type, 3> machine_names{
    {{machine_type::q35, "q35"}, {machine_type::pc, "pc"}, {machine_type::microvm, "microvm"}}};
constexpr name_table<accel_mode, 3> accel_names{
    {{accel_mode::automatic, "auto"}, {accel_mode::kvm, "kvm"}, {accel_mode::tcg, "tcg"}}};
constexpr name_table<boot_mode, 2> boot_names{
    {{boot_mode::kernel, "kernel"}, {boot_mode::disk, "disk"}}};
constexpr name_table<disk_format, 2> format_names{
    {{disk_format::qcow2, "qcow2"}, {disk_format::raw, "raw"}}};
constexpr name_table<disk_bus, 4> bus_names{{{disk_bus::virtio, "virtio"},
                                             {disk_bus::scsi, "scsi"},
                                             {disk_bus::ide, "ide"},
                                             {disk_bus::pflash, "pflash"}}};
constexpr name_table<firmware_type, 2> firmware_names{
    {{firmware_type::bios, "bios"}, {firmware_type::uefi, "uefi"}}};
constexpr name_table<cache_mode, 5> cache_names{{{cache_mode::writeback, "writeback"},
                                                 {cache_mode::none, "none"},
                                                 {cache_mode::writethrough, "writethrough"},
                                                 {cache_mode::directsync, "directsync"},
                                                 {cache_mode::unsafe, "unsafe"}}};
constexpr name_table<network_mode, 1> network_names{{{network_mode::user, "user"}}};
constexpr name_table<reset_strategy, 4> reset_names{{{reset_strategy::automatic, "auto"},
                                                     {reset_strategy::loadvm, "loadvm"},
                                                     {reset_strategy::template_ram, "template"},
                                                     {reset_strategy::standby, "standby"}}};
constexpr name_table<encryption_format, 1> encryption_names{{{encryption_format::luks, "luks"}}};
constexpr name_table<forward_protocol, 2> protocol_names{
    {{forward_protocol::tcp, "tcp"}, {forward_protocol::udp, "udp"}}};

template <class Enum, std::size_t N>
std::string_view name_of(const name_table<Enum, N>& table, Enum v) noexcept {
    for (const auto& [value, name] : table)
        if (value == v)
            return name;
    return "?";
}

template <class Enum, std::size_t N>
std::optional<Enum> value_of(const name_table<Enum, N>& table, std::string_view s) noexcept {
    for (const auto& [value, name] : table)
        if (name == s)
            return value;
    return std::nullopt;
}

} // namespace

std::string_view to_string(machine_type v) noexcept {
    return name_of(machine_names, v);
}
std::string_view to_string(accel_mode v) noexcept {
    return name_of(accel_names, v);
}
std::string_view to_string(boot_mode v) noexcept {
    return name_of(boot_names, v);
}
std::string_view to_string(disk_format v) noexcept {
    return name_of(format_names, v);
}
std::string_view to_string(disk_bus v) noexcept {
    return name_of(bus_names, v);
}
std::string_view to_string(cache_mode v) noexcept {
    return name_of(cache_names, v);
}
std::string_view to_string(network_mode v) noexcept {
    return name_of(network_names, v);
}
std::string_view to_string(forward_protocol v) noexcept {
    return name_of(protocol_names, v);
}
std::string_view to_string(reset_strategy v) noexcept {
    return name_of(reset_names, v);
}
std::string_view to_string(encryption_format v) noexcept {
    return name_of(encryption_names, v);
}
std::string_view to_string(firmware_type v) noexcept {
    return name_of(firmware_names, v);
}

std::optional<machine_type> machine_type_from_string(std::string_view s) noexcept {
    return value_of(machine_names, s);
}
std::optional<accel_mode> accel_mode_from_string(std::string_view s) noexcept {
    return value_of(accel_names, s);
}
std::optional<boot_mode> boot_mode_from_string(std::string_view s) noexcept {
    return value_of(boot_names, s);
}
std::optional<disk_format> disk_format_from_string(std::string_view s) noexcept {
    return value_of(format_names, s);
}
std::optional<disk_bus> disk_bus_from_string(std::string_view s) noexcept {
    return value_of(bus_names, s);
}
std::optional<cache_mode> cache_mode_from_string(std::string_view s) noexcept {
    return value_of(cache_names, s);
}
std::optional<network_mode> network_mode_from_string(std::string_view s) noexcept {
    return value_of(network_names, s);
}
std::optional<forward_protocol> forward_protocol_from_string(std::string_view s) noexcept {
    return value_of(protocol_names, s);
}
std::optional<reset_strategy> reset_strategy_from_string(std::string_view s) noexcept {
    return value_of(reset_names, s);
}
std::optional<encryption_format> encryption_format_from_string(std::string_view s) noexcept {
    return value_of(encryption_names, s);
}
std::optional<firmware_type> firmware_type_from_string(std::string_view s) noexcept {
    return value_of(firmware_names, s);
}

std::string default_mac_address(std::string_view vm_name) {
    // FNV-1a is spelled out rather than std::hash so the MAC is the same on every build.
    std::uint32_t h = 2166136261u;
    for (unsigned char c : vm_name) {
        h ^= c;
        h *= 16777619u;
    }
    char buf[18];
    std::snprintf(buf, sizeof buf, "52:54:00:%02x:%02x:%02x", (h >> 16) & 0xffu, (h >> 8) & 0xffu,
                  h & 0xffu);
    return buf;
}

std::optional<disk_encryption> disk_key(const vm_definition& def, std::string_view disk) {
    for (const auto& d : def.disks)
        if (d.name == disk)
            return d.encryption;
    return std::nullopt;
}

const disk_definition* nvram_disk(const vm_definition& def) noexcept {
    for (const auto& d : def.disks)
        if (d.bus == disk_bus::pflash)
            return &d;
    return nullptr;
}

std::string disk_field(std::size_t index) {
    return "disks[" + std::to_string(index) + "]";
}

void require_qcow2(const vm_definition& def) {
    std::vector<diagnostic> problems;
    for (std::size_t i = 0; i < def.disks.size(); ++i) {
        const auto& disk = def.disks[i];
        if (disk.format == disk_format::raw && !disk.read_only)
            problems.push_back(def.sources.make_diagnostic(
                disk_field(i) + ".format",
                "raw disk '" + disk.name + "' does not support internal snapshots"));
    }
    if (!problems.empty())
        throw error(std::move(problems));
}

std::string share_mount_options(const share_definition& share) {
    // msize: 9p's default of 8 KiB makes every large read and write many round trips; 512 KiB
    // is what the virtio transport of a 6.1 kernel allows.
    std::string options = "trans=virtio,version=9p2000.L,msize=524288";
    if (share.read_only)
        options += ",ro";
    return options;
}

} // namespace qmpkit::launcher
