#pragma once

#include <qmpkit/launcher/qemu_img.hpp>
#include <qmpkit/launcher/vm_definition.hpp>

#include <boost/json/object.hpp>

#include <array>
#include <cstdint>
#include <filesystem>
#include <map>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace qmpkit::launcher {

// Where a launched VM's runtime files go. The launcher decides these, not the definition.
struct launch_paths {
    // The VM's state directory. The command does not use it: the paths below are what count, and
    // default_launch_paths places them in it.
    std::filesystem::path state_dir;
    // A listening UNIX socket qmpkit has bound; qemu inherits it (it must not be close-on-exec)
    // and accepts the QMP connection on it, so there is no socket file to poll for.
    int qmp_listen_fd = -1;
    // Optional further monitors: a listening socket for `qmpkit events` (qemu serves one client
    // per monitor, so event streaming needs its own), and one end of a socketpair for the
    // supervisor that started qemu. -1: none.
    int events_listen_fd = -1;
    // When set, the VM's RAM is this file (memory-backend-file). shared: the VM writes to the
    // file (share=on); otherwise it maps it copy-on-write and the file stays as it was.
    std::filesystem::path memory_file;
    bool memory_shared = true;
    int supervisor_monitor_fd = -1;
    // Used unless the definition names its own serial log (see serial_log_file).
    std::filesystem::path serial_log;
    std::filesystem::path console_socket;
    std::filesystem::path shell_socket;
    std::filesystem::path agent_socket; // the guest agent's port (guest_agent: true)
    // The cloud-init seed image (cloud_init:), built beforehand (make_cloud_init_seed).
    std::filesystem::path cloud_init_seed;
    // The host ports of network.forwards, in order: "auto" ones (0) resolved, the others as
    // given (resolve_forward_ports). Empty: the definition's ports, which must not be "auto".
    std::vector<std::uint16_t> forward_ports;
};

// A disk's two block nodes, protocol ("<node>-file") then format ("<node>"), as -blockdev and
// blockdev-add take them. An encrypted disk's format node opens its image with the secret
// object disk_secret_id(), which must exist first. chain, when given, is the image's backing
// chain (qemu_img::info_chain, the image itself first): its lower layers are spelled out as the
// format node's backing, each opened with the key when it is encrypted, because qemu would open
// a backing file named in an image header without one.
std::array<boost::json::object, 2> disk_block_nodes(const disk_definition& disk,
                                                    std::span<const image_info> chain = {});
// The block nodes of a new, empty overlay for a running encrypted disk, as blockdev-add takes
// them before `blockdev-snapshot {node: <disk's top>, overlay: node}`: the overlay file (made
// beforehand with qemu_img::create, encrypted with the disk's key), opened with that key and no
// backing (blockdev-snapshot links it). qemu's own blockdev-snapshot-sync would create the
// overlay unencrypted, and everything the guest writes afterwards would be stored in clear.
std::array<boost::json::object, 2> overlay_block_nodes(const disk_definition& disk,
                                                       const std::filesystem::path& overlay,
                                                       const std::string& node);
// The id of the secret object holding an encrypted disk's passphrase: "key-<name>".
std::string disk_secret_id(const disk_definition& disk);
// The image file behind a file name qemu reports (query-block, query-named-block-nodes). qemu
// names a node that has options beyond its file, such as an encryption key, "json:{...}" with
// all of them; this unpacks that to the innermost file's filename. Other names are returned as
// they are.
std::string image_file_of(std::string_view qemu_filename);
// A disk's device, as -device and device_add take it; its id is disk_device_id().
boost::json::object disk_device(const disk_definition& disk, machine_type machine, bool boot);
std::string disk_device_id(const disk_definition& disk);

// q35 VMs get this many spare PCIe root ports (ids hotplug_port_id(0..)) for live attach.
inline constexpr int hotplug_port_count = 4;
std::string hotplug_port_id(int index);

// state_dir/serial.log, state_dir/console.sock, state_dir/shell.sock, state_dir/agent.sock,
// state_dir/cidata.iso.
launch_paths default_launch_paths(const std::filesystem::path& state_dir, int qmp_listen_fd);

// The serial log qemu writes for this definition: its own serial.log_file, else paths.serial_log.
// Empty when serial logging is off.
std::filesystem::path serial_log_file(const vm_definition& def, const launch_paths& paths);

// What the host says that a qemu command line depends on, read beforehand (read_host_facts) so
// that building the command reads nothing.
struct qemu_command_options {
    std::string qemu_binary = "qemu-system-x86_64";
    // -S: stop before the first instruction, e.g. to load a snapshot over QMP before running.
    bool start_paused = false;
    // microvm under TCG: the TSC rate the guest is told (tsc_early_khz); required there.
    std::uint64_t tsc_khz = 0;
    // Encrypted disks whose image exists: the image's backing chain (qemu_img::info_chain, the
    // image itself first), by disk name.
    std::map<std::string, std::vector<image_info>> encrypted_chains{};
};

// The host's TSC rate in kHz, which a guest's TSC runs at under TCG (a wrong value makes guest
// time run fast or slow): /proc/cpuinfo's "cpu MHz", 1 GHz when it says nothing.
std::uint64_t host_tsc_khz();

// Fills in what building `def`'s command needs from the host: the TSC rate where the machine is
// microvm and accel is tcg, and the backing chains of encrypted disks whose images exist (read
// with `img`).
void read_host_facts(const vm_definition& def, accel_mode accel, const qemu_img& img,
                     qemu_command_options& options);

// The qemu argv (binary first, never a shell string) for a definition that has passed
// validate_definition: a pure function of its inputs (no file, process or host is consulted;
// see read_host_facts). qemu runs under its seccomp sandbox and switches to security.run_as as
// the definition says; encrypted disks get a secret object that reads their key file. accel must
// be resolved (kvm or tcg; see resolve_accel). Throws error when the inputs cannot be expressed,
// e.g. a socket path longer than a UNIX socket allows, or a host fact it needs is missing.
//
// The guest's devices depend only on the definition's hardware, never on paths or on the serial
// log and socket settings, so that a snapshot taken under one launch loads under the next.
std::vector<std::string> build_qemu_command(const vm_definition& def, const launch_paths& paths,
                                            accel_mode accel,
                                            const qemu_command_options& options = {});

} // namespace qmpkit::launcher
