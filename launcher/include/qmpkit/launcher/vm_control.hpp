#pragma once

// What users do to a VM by name: status, shutdown, destroy, disks, live attach and detach, and
// waiting for the guest's ready marker.

#include <qmpkit/launcher/runtime_info.hpp>
#include <qmpkit/launcher/state_directory.hpp>
#include <qmpkit/launcher/vm_connection.hpp>
#include <qmpkit/launcher/vm_definition.hpp>

#include <chrono>
#include <optional>
#include <string>
#include <vector>

namespace qmpkit::launcher {

struct vm_status {
    std::string name;
    std::string state;     // running, paused, shutoff, crashed, unresponsive, or a qemu runstate
    std::string reason;    // for shutoff/crashed: how it ended; for paused: why, if not asked to
    std::string run_state; // qemu's own (query-status) while it runs: "io-error" is "paused"
    int qemu_pid = -1;
    int supervisor_pid = -1;
    std::string accel;
    std::string qemu_version;
    std::string machine;
    int cpus = 0;
    std::uint64_t memory = 0;
    std::int64_t started_at = 0;
    std::filesystem::path state_dir;
    std::vector<std::string> log_tail;    // qemu's last words when it crashed
    std::string standby;                  // what a ready standby qemu waits for; empty: none
    std::vector<forwarded_port> forwards; // while it runs
};

// Never throws for a VM that merely is not running; `state` says so.
vm_status query_status(const state_directory& dir, const connect_options& options = {});

// guest-shutdown through the guest agent when the VM has one that answers within 2 s, else the
// ACPI power button; then `quit` after the timeout, then SIGKILL. Returns how it ended.
std::string shutdown_vm(const state_directory& dir, std::chrono::milliseconds timeout,
                        const connect_options& options = {});
// Immediate stop (virsh destroy).
void destroy_vm(const state_directory& dir, const connect_options& options = {});

// Forgets a VM that is not running: its state directory goes, with everything qmpkit made
// there (records, overlays from resets, reset points). Images the definition names outside it
// stay. Refused while the VM or another VM using one of its reset points (a clone) runs.
void remove_vm(const state_directory& dir);

struct block_device {
    std::string disk;      // the definition's disk name (qdev id without "-dev")
    std::string node_name; // the active (top) block node
    std::string file;      // the file the top node reads and writes
    std::string format;
    bool read_only = false;
    std::vector<std::string> backing_chain; // files below the top, nearest first
};

std::vector<block_device> list_block_devices(qmp::client& qmp);

// One node of the running block graph (query-named-block-nodes): the one place it is read.
struct block_node {
    std::string node_name;
    std::string driver;                      // "qcow2", "raw", "file", ...
    std::string file;                        // the image file (image_file_of)
    std::vector<std::string> snapshot_names; // internal snapshots qemu sees in its image
};

std::vector<block_node> list_block_nodes(qmp::client& qmp);

// The format node (not the protocol one) whose image is `file`, if the running qemu has one.
std::optional<block_node> format_node_of(qmp::client& qmp, const std::filesystem::path& file);
// The same among nodes listed once (an operation on several disks asks qemu once).
std::optional<block_node> format_node_of(const std::vector<block_node>& nodes,
                                         const std::filesystem::path& file);

// device_add of a new disk on a running VM (virsh attach-disk --live); the definition copy in
// the state directory gains it, so snapshots and restarts know about it.
void attach_disk(vm_connection& vm, const disk_definition& disk);
// device_del, waiting for the guest to release it, then the block nodes go.
void detach_disk(vm_connection& vm, const std::string& disk_name,
                 std::chrono::milliseconds timeout = std::chrono::seconds(30));

// Waits until the serial console log has a line containing `marker` (written after this
// boot's start), or qemu ends, or the timeout passes. Returns the line.
std::string wait_for_console_line(const state_directory& dir, const std::string& marker,
                                  std::chrono::milliseconds timeout);

} // namespace qmpkit::launcher
