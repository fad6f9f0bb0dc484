#pragma once

// What a running VM's state directory records about it, and how it ended.

#include <qmpkit/launcher/state_directory.hpp>

#include <boost/json/value_from.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <sys/types.h>
#include <vector>

namespace qmpkit::launcher {

// A host port forwarded to the guest (network.forwards), with "auto" resolved.
struct forwarded_port {
    std::string protocol; // "tcp" or "udp"
    std::string host_addr;
    std::uint16_t host_port = 0;
    std::uint16_t guest_port = 0;

    friend bool operator==(const forwarded_port&, const forwarded_port&) = default;
};

// As JSON ({"protocol", "host_addr", "host_port", "guest_port"}), for boost::json::value_from:
// runtime.json and `qmpkit --json status` write the same object.
void tag_invoke(boost::json::value_from_tag, boost::json::value& out, const forwarded_port& port);

// runtime.json, written once qemu answers on QMP.
struct runtime_info {
    pid_t qemu_pid = -1;
    pid_t supervisor_pid = -1;
    std::string accel;        // "kvm" or "tcg": what `auto` resolved to
    std::string qemu_version; // from the QMP greeting
    std::int64_t started_at = 0;
    std::uint64_t serial_log_offset = 0; // where this boot's console output starts
    std::vector<std::string> command_line;
    std::vector<forwarded_port> forwards; // this qemu's, in the definition's order
};

// The host port this qemu forwards to `guest_port` (tcp), if any.
std::optional<forwarded_port> forward_to(const runtime_info& info, std::uint16_t guest_port);

// exit.json, written by the supervisor when qemu has ended.
struct exit_record {
    std::string state;   // "shutoff" or "crashed"
    std::string reason;  // SHUTDOWN's reason, or how qemu died
    std::string exit;    // "exited with code 0", "killed by signal 9 (Killed)"
    bool forced = false; // killed after the shutdown timeout
    std::int64_t ended_at = 0;
};

void write_runtime_info(const state_directory& dir, const runtime_info& info);
std::optional<runtime_info> read_runtime_info(const state_directory& dir);

void write_exit_record(const state_directory& dir, const exit_record& record);
std::optional<exit_record> read_exit_record(const state_directory& dir);

// The last `count` lines of a log file (qemu's own output, the serial console).
std::vector<std::string> tail_lines(const std::filesystem::path& file, std::size_t count);

} // namespace qmpkit::launcher
