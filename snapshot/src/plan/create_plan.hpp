#pragma once

// Private: `snapshot create` as a plan (plan_step.hpp). What it needs to know is read first
// (create_facts), then plan_create decides everything — the name, the checks that refuse, the
// record, the journal, the steps — without touching anything.

#include "../operation_journal.hpp"
#include "operation_facts.hpp"
#include "plan_step.hpp"

#include <qmpkit/launcher/vm_control.hpp>
#include <qmpkit/snapshot/snapshot_manager.hpp>

#include <map>
#include <optional>
#include <string>

namespace qmpkit::snapshot::detail {

struct create_facts : operation_facts {
    std::string run_state; // qemu's (query-status), empty without qemu
    // With qemu: its block devices by disk name (the active layers may be overlays the
    // definition does not name yet).
    std::map<std::string, launcher::block_device> live{};
    bool snapshot_jobs = true; // qemu has snapshot-save (6.0+)
};

struct create_plan {
    snapshot_record record;
    operation_journal journal;
    operation_plan steps;
};

// Throws snapshot::error, before anything changes, for a request it refuses: a name taken (in
// the metadata, or as a tag or an id in an image), an overlay that exists, raw disks for an
// internal snapshot, --quiesce or --memspec without what they need, a guest left in restore-vm.
create_plan plan_create(const create_facts& facts, const create_request& request);

} // namespace qmpkit::snapshot::detail
