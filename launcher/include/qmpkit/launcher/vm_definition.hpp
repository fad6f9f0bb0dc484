#pragma once

#include <qmpkit/launcher/size.hpp>
#include <qmpkit/launcher/source_map.hpp>

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace qmpkit::launcher {

// What a VM is, as written in its YAML file: plain data, no behaviour. load_definition fills it
// in (paths absolute, defaults applied), validate_definition checks it, build_qemu_command turns
// it into a command line. The field documentation is configs/README.md.

enum class machine_type { q35, pc, microvm };
enum class accel_mode { automatic, kvm, tcg }; // "auto" in YAML
enum class boot_mode { kernel, disk };
enum class disk_format { qcow2, raw };
// pflash: the UEFI variable store (firmware: uefi). The loader adds it as the last disk so that
// every snapshot, reset point and clone carries it like any disk; it has no device of its own
// (the machine's second flash chip), and it is never written under disks:.
enum class disk_bus { virtio, scsi, ide, pflash };
enum class firmware_type { bios, uefi };
enum class cache_mode { writeback, none, writethrough, directsync, unsafe };
enum class network_mode { user };
enum class forward_protocol { tcp, udp };
// How `qmpkit reset` brings the VM back (see reset_definition).
enum class reset_strategy { automatic, loadvm, template_ram, standby }; // "auto", ..., "template"
enum class encryption_format { luks };

// The spelling used in YAML and on the qemu command line.
std::string_view to_string(machine_type v) noexcept;
std::string_view to_string(accel_mode v) noexcept;
std::string_view to_string(boot_mode v) noexcept;
std::string_view to_string(disk_format v) noexcept;
std::string_view to_string(disk_bus v) noexcept;
std::string_view to_string(cache_mode v) noexcept;
std::string_view to_string(network_mode v) noexcept;
std::string_view to_string(forward_protocol v) noexcept;
std::string_view to_string(reset_strategy v) noexcept;
std::string_view to_string(encryption_format v) noexcept;
std::string_view to_string(firmware_type v) noexcept;

// The inverse of to_string; nullopt for anything else (matching is exact, case included).
std::optional<machine_type> machine_type_from_string(std::string_view s) noexcept;
std::optional<accel_mode> accel_mode_from_string(std::string_view s) noexcept;
std::optional<boot_mode> boot_mode_from_string(std::string_view s) noexcept;
std::optional<disk_format> disk_format_from_string(std::string_view s) noexcept;
std::optional<disk_bus> disk_bus_from_string(std::string_view s) noexcept;
std::optional<cache_mode> cache_mode_from_string(std::string_view s) noexcept;
std::optional<network_mode> network_mode_from_string(std::string_view s) noexcept;
std::optional<forward_protocol> forward_protocol_from_string(std::string_view s) noexcept;
std::optional<reset_strategy> reset_strategy_from_string(std::string_view s) noexcept;
std::optional<encryption_format> encryption_format_from_string(std::string_view s) noexcept;
std::optional<firmware_type> firmware_type_from_string(std::string_view s) noexcept;

// disks[].encryption: a qcow2 image whose contents are encrypted (qcow2's built-in LUKS). The
// passphrase is the whole content of key_file, byte for byte (a trailing newline included), as
// qemu and qemu-img read it; it never appears on a command line or in a log, only the path does.
struct disk_encryption {
    encryption_format format = encryption_format::luks;
    std::filesystem::path key_file{};

    friend bool operator==(const disk_encryption&, const disk_encryption&) = default;
};

struct disk_definition {
    std::string name{};
    std::filesystem::path file{};
    disk_format format = disk_format::qcow2;
    std::optional<std::uint64_t> size{};            // bytes; only for creating a missing image
    std::optional<std::filesystem::path> backing{}; // only for creating a missing qcow2 image
    disk_bus bus = disk_bus::virtio;
    bool read_only = false;
    cache_mode cache = cache_mode::writeback;
    std::string node_name{}; // the loader sets it to name when the YAML leaves it out
    std::optional<disk_encryption> encryption{};

    friend bool operator==(const disk_definition&, const disk_definition&) = default;
};

struct serial_definition {
    bool log = true;
    std::filesystem::path log_file{}; // empty: the launcher's default, <state>/serial.log
    bool socket = true;

    friend bool operator==(const serial_definition&, const serial_definition&) = default;
};

struct port_forward {
    forward_protocol protocol = forward_protocol::tcp;
    std::string host_addr = "127.0.0.1";
    // 0: "auto", a free port picked each time qemu starts (runtime_info::forwards says which).
    std::uint16_t host_port = 0;
    std::uint16_t guest_port = 0;

    friend bool operator==(const port_forward&, const port_forward&) = default;
};

struct network_definition {
    network_mode mode = network_mode::user;
    std::vector<port_forward> forwards{};
    std::string mac{}; // the loader sets default_mac_address(name) when the YAML leaves it out

    friend bool operator==(const network_definition&, const network_definition&) = default;
};

// cloud_init: the guest is seeded through cloud-init's NoCloud data source, a read-only disk
// labelled "cidata" that qmpkit builds when the VM starts (and again only when its inputs
// change). The VM's own SSH key (made on first start, see ssh_identity) is always authorized for
// `user`, so `qmpkit ssh` works without setup.
struct cloud_init_definition {
    std::string user = "qmpkit"; // made with passwordless sudo; the user `qmpkit ssh` logs in as
    std::string hostname{};      // the loader sets the VM's name when the YAML leaves it out
    std::vector<std::string> ssh_authorized_keys{}; // authorized besides the VM's own key
    // Passed to the guest as they are: user_data replaces the user-data qmpkit would write (the
    // VM's key still reaches the default user through meta-data's public-keys), network_config
    // is cloud-init's network configuration (version 1 or 2).
    std::optional<std::filesystem::path> user_data{};
    std::optional<std::filesystem::path> network_config{};

    friend bool operator==(const cloud_init_definition&, const cloud_init_definition&) = default;
};

// shares[]: a host directory exported to the guest over virtio-9p (qemu's "local" file system
// driver, security_model=none: files keep the host's owners and modes, and what the guest creates
// belongs to the user qemu runs as). The guest mounts it by its tag:
//   mount -t 9p -o trans=virtio,version=9p2000.L TAG DIR
// or qmpkit has cloud-init add that mount to the guest's fstab (`mount`). qemu refuses savevm and
// migration while the guest has a share mounted; see snapshot::share_mounts for how memory
// snapshots, reset points and clones deal with that.
struct share_definition {
    std::string tag{};
    std::filesystem::path path{};
    bool read_only = false;
    // Where cloud-init mounts it in the guest (from the first boot with this content on; needs
    // cloud_init: without its own user_data). Empty: the guest mounts it itself.
    std::string mount{};

    friend bool operator==(const share_definition&, const share_definition&) = default;
};

// reset: {strategy: auto|loadvm|template|standby}. template and standby keep the VM's RAM in a
// named file so that a reset point can save only the device state and map the RAM back
// copy-on-write; loadvm works with plain RAM.
struct reset_definition {
    reset_strategy strategy = reset_strategy::automatic;

    // Whether the VM's RAM lives in a named file (memory-backend-file).
    bool file_backed_memory() const noexcept { return strategy != reset_strategy::loadvm; }

    friend bool operator==(const reset_definition&, const reset_definition&) = default;
};

// security: how far qemu is confined. Neither setting changes the guest's machine.
struct security_definition {
    // qemu's seccomp filter (-sandbox on with obsolete, elevateprivileges, spawn and
    // resourcecontrol denied; elevateprivileges stays allowed when run_as is set).
    bool sandbox = true;
    // -runas: the user qemu switches to once it has opened its files. Empty: qemu keeps the
    // user qmpkit runs as.
    std::string run_as{};

    friend bool operator==(const security_definition&, const security_definition&) = default;
};

struct vm_definition {
    std::string name{};
    machine_type machine = machine_type::q35;
    accel_mode accel = accel_mode::automatic;
    int cpus = 1;
    std::uint64_t memory = 256 * mib;
    std::optional<std::filesystem::path> kernel{};
    std::optional<std::filesystem::path> initrd{};
    std::optional<std::string> append{};
    boot_mode boot = boot_mode::disk; // the loader picks kernel when a kernel is set
    // uefi: Debian's OVMF (uefi_code_file) read-only as the first flash chip, and the VM's own
    // variable store (nvram_disk) as the second.
    firmware_type firmware = firmware_type::bios;
    bool command_channel = false;
    bool guest_agent = false; // qemu-ga's virtio-serial port (org.qemu.guest_agent.0)
    // A VM generation ID device (ACPI): every qemu gets a new id (guid=auto), and loading a
    // state writes the loading qemu's id into the guest, so a clone, or a guest reset to a point
    // by a new qemu, learns it was copied.
    bool vmgenid = false;
    reset_definition reset{};
    std::vector<disk_definition> disks{};
    serial_definition serial{};
    std::optional<network_definition> network{};
    std::optional<cloud_init_definition> cloud_init{};
    std::vector<share_definition> shares{};
    std::vector<std::string> extra_args{};
    security_definition security{};

    // Not part of the value (see source_map's operator==).
    source_map sources{};

    friend bool operator==(const vm_definition&, const vm_definition&) = default;
};

// A locally administered unicast MAC in QEMU's 52:54:00 range whose last three bytes are a hash
// of the VM name, so a VM keeps its MAC (and its guest's DHCP lease) across launches.
std::string default_mac_address(std::string_view vm_name);

// The encryption of the disk named `disk`, nullopt when it is not encrypted or not there.
std::optional<disk_encryption> disk_key(const vm_definition& def, std::string_view disk);

// The options a guest mounts a share with (also those of the fstab line cloud-init writes).
std::string share_mount_options(const share_definition& share);

// Field path of disks[index], for diagnostics: "disks[2]".
std::string disk_field(std::size_t index);

// UEFI firmware from Debian's ovmf package: the code (read-only, shared by every VM) and the
// empty variable store a VM's own store is made from (as qcow2, so that savevm can include it:
// with a raw store every internal snapshot fails, "Device 'pflash1' is writable but does not
// support snapshots").
inline constexpr std::string_view uefi_code_file = "/usr/share/OVMF/OVMF_CODE_4M.fd";
inline constexpr std::string_view uefi_vars_template = "/usr/share/OVMF/OVMF_VARS_4M.fd";
// The name and node name of the variable store's disk, and the node name of the code.
inline constexpr std::string_view nvram_disk_name = "nvram";
inline constexpr std::string_view uefi_code_node = "firmware-code";
// The cloud-init seed's disk: its node name, and the serial the guest sees.
inline constexpr std::string_view cloud_init_seed_node = "cidata";

// The UEFI variable store among def.disks (bus pflash); nullptr with BIOS firmware.
const disk_definition* nvram_disk(const vm_definition& def) noexcept;

// Internal snapshots (savevm) need every writable disk to be qcow2. Throws error with one
// diagnostic per writable raw disk, located at that disk's format line; read-only disks are
// skipped because savevm leaves them alone.
void require_qcow2(const vm_definition& def);

} // namespace qmpkit::launcher
