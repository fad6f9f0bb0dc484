#pragma once

// Private: `snapshot revert` as a plan (plan_step.hpp): the facts read first (revert_facts),
// then plan_revert decides — which way the snapshot comes back (a snapshot-load job into the
// running qemu, a new qemu started on it, qemu-img on a shut-off VM's images, fresh overlays
// over an external snapshot's frozen images), every check that can refuse, the journal, and the
// overlays the revert leaves behind — without touching anything.

#include "../operation_journal.hpp"
#include "operation_facts.hpp"
#include "plan_step.hpp"

#include <qmpkit/launcher/vm_control.hpp>
#include <qmpkit/snapshot/snapshot_manager.hpp>
#include <qmpkit/snapshot/vm_reset.hpp>

#include <map>
#include <string>
#include <vector>

namespace qmpkit::snapshot::detail {

struct revert_facts : operation_facts {
    std::filesystem::path definition_file; // where def is recorded (for messages)
    // The file each disk writes to now: qemu's active layer while it runs, else the definition's.
    std::map<std::string, std::filesystem::path> active_files;
    // With qemu: its block devices by disk name, and the internal snapshots qemu sees in each
    // block node's image (query-named-block-nodes), by node name.
    std::map<std::string, launcher::block_device> live{};
    std::map<std::string, std::vector<std::string>> node_snapshots{};
    bool snapshot_jobs = true;
    std::vector<reset_point> points;    // they freeze their base images
    std::filesystem::path overlays_dir; // the state directory's overlays/, qmpkit's own files
};

struct revert_plan {
    operation_journal journal;
    operation_plan steps;
};

// Throws snapshot::error, before anything changes, for a revert it refuses: no such snapshot, a
// configuration that differs (without force), an internal snapshot in an image that something
// else froze, a name that is also another snapshot's id, a snapshot qemu does not see.
revert_plan plan_revert(const revert_facts& facts, const std::string& name,
                        const revert_request& request);

// What differs between the configuration a snapshot was taken with and the current one, in the
// words virsh uses; empty when they match.
std::string configuration_difference(const launcher::vm_definition& then,
                                     const launcher::vm_definition& now);

// Whether another external snapshot than `except` relies on `file` staying as it is. Internal
// snapshots do not freeze their image: qcow2 keeps them intact under later writes.
bool frozen_by_other(const snapshot_tree& tree, const std::string& except,
                     const std::filesystem::path& file);

} // namespace qmpkit::snapshot::detail
