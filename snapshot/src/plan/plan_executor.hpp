#pragma once

// Private: the one executor of snapshot operation plans (plan_step.hpp).

#include "../vm_context.hpp"
#include "plan_step.hpp"

namespace qmpkit::snapshot::detail {

// Runs `plan` against the VM of `ctx`, step by step; ctx.def, ctx.tree and its QMP session follow
// what the steps do. On a failure: the guest is thawed if a step froze it, the undos of the steps
// done since the last settling step run (last first, best effort), an operation whose journal
// was written and not yet removed is resolved from the facts (resolve_after_failure), shares a
// step unmounted are mounted again, and the failure is rethrown.
void run_plan(vm_context& ctx, const operation_plan& plan);

} // namespace qmpkit::snapshot::detail
