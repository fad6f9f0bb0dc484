#pragma once

// Private: what every snapshot operation's plan is made from — the VM's definition and snapshot
// tree, whether its qemu runs, the metadata's digest for the journal, the time, and the host.
// Each operation's facts add what only it needs (create_plan.hpp, revert_plan.hpp, ...).

#include "plan_host.hpp"

#include <qmpkit/launcher/vm_definition.hpp>
#include <qmpkit/snapshot/snapshot_record.hpp>
#include <qmpkit/snapshot/snapshot_tree.hpp>

#include <cstdint>
#include <string>

namespace qmpkit::snapshot::detail {

struct operation_facts {
    launcher::vm_definition def;
    snapshot_tree tree;
    bool qemu_runs = false;
    vm_state state = vm_state::shutoff; // the guest's; shutoff without qemu
    std::string metadata_digest;        // of snapshots.json (the journal's before_digest)
    std::int64_t now = 0;               // seconds since the epoch
    std::int64_t pid = 0;
    plan_host host;
};

} // namespace qmpkit::snapshot::detail
