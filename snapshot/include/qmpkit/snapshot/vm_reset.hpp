#pragma once

// Putting a VM back to a known state fast, for test harnesses. Three strategies:
//   loadvm    snapshot-load of an internal snapshot, in place (the baseline);
//   template  a reset point holds only the device state (migration with x-ignore-shared), a
//             frozen copy of the RAM file and frozen disk images; a reset starts a new qemu that
//             maps the RAM copy-on-write, gets fresh overlays over the frozen disks, loads the
//             device state and continues. RAM is not copied, so the time does not grow with RAM.
//   standby   template, with the new qemu started ahead of time (launcher/standby.hpp): a reset
//             loads the device state into it and continues, and the next standby is prepared in
//             the background.
// The VM definition chooses (reset: {strategy: ...}); auto takes template where the VM's RAM is
// file-backed and a reset point exists, else loadvm.

#include <qmpkit/launcher/vm_definition.hpp>
#include <qmpkit/snapshot/snapshot_manager.hpp>

#include <boost/json/object.hpp>

#include <chrono>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace qmpkit::snapshot {

struct reset_point {
    std::string name;
    std::int64_t created_at = 0;
    std::filesystem::path ram;          // the frozen RAM (mapped copy-on-write at reset)
    std::filesystem::path device_state; // migration stream without RAM
    struct disk {
        std::string name;
        std::filesystem::path base; // frozen image; each reset gives the VM a fresh overlay on it
    };
    std::vector<disk> disks;
    std::string definition; // YAML of the VM as it was
};

struct reset_result {
    std::string strategy; // "loadvm", "template" or "standby"
    std::string target;   // the snapshot or reset point
    std::chrono::microseconds took{0};
    // Why a VM that resets by standby was reset by template this time (empty otherwise): one of
    // the reset_fallback texts, the last followed by qemu's error. The reset is complete either
    // way; a harness timing its resets sees here why one took longer.
    std::string fallback;
};

// The reasons of reset_result::fallback.
namespace reset_fallback {
inline constexpr std::string_view none_on_its_way =
    "no standby was ready and none was being prepared";
// Resets came faster than standbys are prepared, for 10 s: a machine too busy for them.
inline constexpr std::string_view none_in_time = "no standby was ready within 10 s";
inline constexpr std::string_view preparation_made_none =
    "the standby preparation under way ended without one (see supervisor.log)";
inline constexpr std::string_view standby_failed = "the standby qemu failed: ";
} // namespace reset_fallback

struct clone_request {
    std::optional<std::string> point; // default: the newest reset point
    int count = 1;
    // Clones are named <prefix><n>, taking the first free n from 1; default "<vm>-clone-".
    std::string prefix;
    // Exactly these names instead (count and prefix are then ignored); none may exist.
    std::vector<std::string> names;
    // How the clones reset; default: as their origin does.
    std::optional<launcher::reset_strategy> strategy;
    bool paused = false;
    // A clone is a copy of its origin's RAM: the same machine-id, SSH host keys and host name.
    // With new_identity, each clone is given its own through the guest agent once it runs: a
    // new /etc/machine-id, new SSH host keys of the same types (sshd restarted), and its name as
    // host name. The MAC address stays the origin's: on qemu's user-mode network each VM is a
    // network of its own, and a new MAC would have the guest's DHCP client take a new address,
    // which the port forwards do not reach. Needs a guest agent and running clones; a clone whose
    // guest refuses is removed and the whole clone fails.
    bool new_identity = false;
};

struct clone_result {
    std::vector<std::string> names;
    std::chrono::microseconds took{0};
};

class vm_reset {
public:
    vm_reset(std::string vm, manager_options options = {});

    // A reset point of the running VM (template strategy: its RAM must be file-backed).
    reset_point create_point(const std::string& name);
    // What create_point(name) would do, without doing it (--print-plan): one JSON object per
    // step, after the same checks.
    std::vector<boost::json::object> plan_point(const std::string& name) const;
    std::vector<reset_point> points() const;
    void remove_point(const std::string& name);

    // Back to `target` (a reset point, or a snapshot for loadvm; default: the newest reset point
    // for template, the current snapshot for loadvm), running unless `paused`. A reset that fails
    // leaves the VM stopped with the error.
    reset_result reset(const std::optional<std::string>& target = std::nullopt,
                       bool paused = false);
    // What reset() would do, without doing it (--print-plan): the revert of a loadvm reset, or
    // the standby takeover, the template steps it falls back to, and what follows in the
    // background. One JSON object per step.
    std::vector<boost::json::object> plan(const std::optional<std::string>& target = std::nullopt,
                                          bool paused = false) const;

    // New VMs from a reset point, each with its own name, state directory and overlays over the
    // point's frozen disks, all mapping the point's RAM copy-on-write; running unless paused.
    // A clone resets to the point like its origin (qmpkit reset CLONE). All or nothing: if one
    // clone fails, none is left.
    clone_result clone(const clone_request& request);

private:
    std::string vm_;
    manager_options options_;
};

} // namespace qmpkit::snapshot
