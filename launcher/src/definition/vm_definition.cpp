#include "enum_names.hpp"

#include <qmpkit/launcher/error.hpp>
#include <qmpkit/launcher/vm_definition.hpp>

#include <cstdio>
#include <utility>

namespace qmpkit::launcher {

std::string_view to_string(machine_type v) noexcept {
    return schema::name_of(v);
}
std::string_view to_string(accel_mode v) noexcept {
    return schema::name_of(v);
}
std::string_view to_string(boot_mode v) noexcept {
    return schema::name_of(v);
}
std::string_view to_string(disk_format v) noexcept {
    return schema::name_of(v);
}
std::string_view to_string(disk_bus v) noexcept {
    return schema::name_of(v);
}
std::string_view to_string(cache_mode v) noexcept {
    return schema::name_of(v);
}
std::string_view to_string(network_mode v) noexcept {
    return schema::name_of(v);
}
std::string_view to_string(forward_protocol v) noexcept {
    return schema::name_of(v);
}
std::string_view to_string(reset_strategy v) noexcept {
    return schema::name_of(v);
}
std::string_view to_string(encryption_format v) noexcept {
    return schema::name_of(v);
}
std::string_view to_string(firmware_type v) noexcept {
    return schema::name_of(v);
}

std::optional<machine_type> machine_type_from_string(std::string_view s) noexcept {
    return schema::value_of<machine_type>(s);
}
std::optional<accel_mode> accel_mode_from_string(std::string_view s) noexcept {
    return schema::value_of<accel_mode>(s);
}
std::optional<boot_mode> boot_mode_from_string(std::string_view s) noexcept {
    return schema::value_of<boot_mode>(s);
}
std::optional<disk_format> disk_format_from_string(std::string_view s) noexcept {
    return schema::value_of<disk_format>(s);
}
std::optional<disk_bus> disk_bus_from_string(std::string_view s) noexcept {
    return schema::value_of<disk_bus>(s);
}
std::optional<cache_mode> cache_mode_from_string(std::string_view s) noexcept {
    return schema::value_of<cache_mode>(s);
}
std::optional<network_mode> network_mode_from_string(std::string_view s) noexcept {
    return schema::value_of<network_mode>(s);
}
std::optional<forward_protocol> forward_protocol_from_string(std::string_view s) noexcept {
    return schema::value_of<forward_protocol>(s);
}
std::optional<reset_strategy> reset_strategy_from_string(std::string_view s) noexcept {
    return schema::value_of<reset_strategy>(s);
}
std::optional<encryption_format> encryption_format_from_string(std::string_view s) noexcept {
    return schema::value_of<encryption_format>(s);
}
std::optional<firmware_type> firmware_type_from_string(std::string_view s) noexcept {
    return schema::value_of<firmware_type>(s);
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
