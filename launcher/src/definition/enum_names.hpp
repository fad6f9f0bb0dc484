#pragma once

// Each enum of a definition with its YAML spellings and the word a message calls it by: one
// table that to_string, the *_from_string functions, the reader, the writer and the reference
// share.

#include <qmpkit/launcher/vm_definition.hpp>

#include <array>
#include <optional>
#include <string_view>

namespace qmpkit::launcher::schema {

template <class Enum>
struct enum_name {
    Enum value;
    std::string_view name;
    // Spelled in YAML. Not so for disk_bus::pflash, which only nvram: makes.
    bool written = true;
};

template <class Enum, std::size_t N>
struct enum_names {
    std::string_view noun; // "unknown <noun> 'x'"
    std::array<enum_name<Enum>, N> names;
};

// Overloaded on the enum: names_of(machine_type{}).
constexpr enum_names<machine_type, 3> names_of(machine_type) {
    return {"machine type",
            {{{machine_type::q35, "q35"},
              {machine_type::pc, "pc"},
              {machine_type::microvm, "microvm"}}}};
}
constexpr enum_names<accel_mode, 3> names_of(accel_mode) {
    return {
        "accelerator",
        {{{accel_mode::automatic, "auto"}, {accel_mode::kvm, "kvm"}, {accel_mode::tcg, "tcg"}}}};
}
constexpr enum_names<boot_mode, 2> names_of(boot_mode) {
    return {"boot mode", {{{boot_mode::kernel, "kernel"}, {boot_mode::disk, "disk"}}}};
}
constexpr enum_names<disk_format, 2> names_of(disk_format) {
    return {"disk format", {{{disk_format::qcow2, "qcow2"}, {disk_format::raw, "raw"}}}};
}
constexpr enum_names<disk_bus, 4> names_of(disk_bus) {
    return {"disk bus",
            {{{disk_bus::virtio, "virtio"},
              {disk_bus::scsi, "scsi"},
              {disk_bus::ide, "ide"},
              {disk_bus::pflash, "pflash", false}}}};
}
constexpr enum_names<firmware_type, 2> names_of(firmware_type) {
    return {"firmware", {{{firmware_type::bios, "bios"}, {firmware_type::uefi, "uefi"}}}};
}
constexpr enum_names<cache_mode, 5> names_of(cache_mode) {
    return {"cache mode",
            {{{cache_mode::writeback, "writeback"},
              {cache_mode::none, "none"},
              {cache_mode::writethrough, "writethrough"},
              {cache_mode::directsync, "directsync"},
              {cache_mode::unsafe, "unsafe"}}}};
}
constexpr enum_names<network_mode, 1> names_of(network_mode) {
    return {"network mode", {{{network_mode::user, "user"}}}};
}
constexpr enum_names<forward_protocol, 2> names_of(forward_protocol) {
    return {"protocol", {{{forward_protocol::tcp, "tcp"}, {forward_protocol::udp, "udp"}}}};
}
constexpr enum_names<reset_strategy, 4> names_of(reset_strategy) {
    return {"reset strategy",
            {{{reset_strategy::automatic, "auto"},
              {reset_strategy::loadvm, "loadvm"},
              {reset_strategy::template_ram, "template"},
              {reset_strategy::standby, "standby"}}}};
}
constexpr enum_names<encryption_format, 1> names_of(encryption_format) {
    return {"encryption format", {{{encryption_format::luks, "luks"}}}};
}

template <class Enum>
concept definition_enum = requires(Enum e) {
    names_of(e);
};

template <definition_enum Enum>
constexpr std::string_view name_of(Enum v) noexcept {
    for (const auto& n : names_of(Enum{}).names)
        if (n.value == v)
            return n.name;
    return "?";
}

template <definition_enum Enum>
constexpr std::optional<Enum> value_of(std::string_view s) noexcept {
    for (const auto& n : names_of(Enum{}).names)
        if (n.name == s)
            return n.value;
    return std::nullopt;
}

} // namespace qmpkit::launcher::schema
