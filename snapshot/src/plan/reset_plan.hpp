#pragma once

// Private: `qmpkit reset` to a reset point as a plan (plan_step.hpp). The standby strategy's
// takeover (a prepared qemu promoted in the VM's place) is one conversation that vm_reset runs
// itself, on the caller's fastest path; the template strategy, and a standby reset that finds
// no standby, run the steps planned here: qemu stopped, fresh overlays over the point's frozen
// disks, a new qemu mapping the point's RAM, its device state loaded, cont. What follows in the
// background (the next standbys, the guest's clock) is part of the plan too, so that
// --print-plan shows it. A reset to a snapshot (strategy loadvm) is a revert (revert_plan.hpp).

#include "plan_host.hpp"
#include "plan_step.hpp"

#include <qmpkit/snapshot/vm_reset.hpp>

#include <boost/json/object.hpp>

#include <optional>
#include <string>
#include <vector>

namespace qmpkit::snapshot::detail {

struct reset_facts {
    launcher::vm_definition def; // the VM's, now
    bool qemu_runs = true;
    std::filesystem::path definition_file; // where def is recorded (for messages)
    std::filesystem::path overlays_dir;    // the state directory's overlays/
    std::vector<reset_point> points;       // oldest first
    std::optional<std::string> target;     // a point's name; the newest without
    bool paused = false;
    plan_host host;
};

// What follows a reset in background processes, once the VM is let go: after a standby reset
// (or its fallback) the next standbys are prepared (their preparer also removes the overlays
// the replaced qemu ran on); a running guest with an agent gets the host's clock.
struct reset_afterwards {
    bool prepare_standbys = false;
    bool set_clock_in_background = false;
};
reset_afterwards afterwards_of(bool standby, bool paused, const launcher::vm_definition& now);

struct reset_plan {
    bool standby = false; // a ready standby takes over first; the steps are its fallback
    bool paused = false;  // the guest is left paused
    reset_point point;
    launcher::vm_definition instance; // what the steps start qemu on
    operation_plan steps;
    reset_afterwards afterwards;
};

// The strategy a definition's reset.strategy means: auto is the fastest the VM allows (a reset
// point means RAM in a file, so standby; else loadvm).
launcher::reset_strategy effective_strategy(const launcher::vm_definition& def, bool has_points);

// The point `target` names (the newest without one), checked whole. Throws snapshot::error
// (not_found) for no reset point or no such point, (drift) for a point whose files are missing.
const reset_point& choose_point(const std::string& vm, const std::vector<reset_point>& points,
                                const std::optional<std::string>& target,
                                const std::function<bool(const std::filesystem::path&)>& exists);

// standby: whether the standby strategy is tried first. Throws snapshot::error (not_found) for
// no reset point or no such point, (drift) for a point whose files are missing.
reset_plan plan_reset(const reset_facts& facts, bool standby);

// The plan as --print-plan shows it.
std::vector<boost::json::object> describe(const reset_plan& plan);

} // namespace qmpkit::snapshot::detail
