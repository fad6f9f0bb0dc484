#pragma once

// Private: deleting one snapshot as a plan (plan_step.hpp). An internal snapshot's tag is deleted
// from its images (a snapshot-delete job for those qemu has open, qemu-img for the others); an
// external one is merged: its overlay committed into the frozen image (block-commit, or qemu-img
// commit for a shut-off VM), or, where another snapshot still needs that image as it is, the
// image's data streamed up into the overlay. --metadata only forgets it.

#include "../operation_journal.hpp"
#include "operation_facts.hpp"
#include "plan_step.hpp"

#include <qmpkit/launcher/vm_control.hpp>

#include <map>
#include <optional>
#include <string>
#include <vector>

namespace qmpkit::snapshot::detail {

struct delete_facts : operation_facts {
    // With qemu: its block devices by disk name, and its block nodes.
    std::map<std::string, launcher::block_device> live{};
    std::vector<launcher::block_node> nodes{};
    bool snapshot_jobs = true;
};

struct delete_plan {
    operation_plan steps;
    // What the plan leaves: the metadata and the definition, for the plan of a next deletion.
    snapshot_tree tree_after;
    launcher::vm_definition definition_after;
    bool merges = false; // an external snapshot's overlays are merged (the block graph changes)
};

// Throws snapshot::error before anything changes: no such snapshot, an external snapshot whose
// overlay is not on the branch the VM runs on, or not built on its image, or whose image is
// shared with another snapshot where nothing can be streamed, a disk the VM no longer has.
delete_plan plan_delete(const delete_facts& facts, const std::string& name, bool metadata_only);

} // namespace qmpkit::snapshot::detail
