#pragma once

// Private: finishing or taking back a snapshot operation that was interrupted (qmpkit or qemu
// killed, a disk full, a lost connection), from its journal (operation_journal.hpp) and what
// the images and qemu show now.

#include "operation_journal.hpp"
#include "vm_context.hpp"

#include <string>
#include <vector>

namespace qmpkit::snapshot::detail {

// Decides from the facts, never from how far the journal says it got:
//   create-internal  every image holds the tag: recorded (roll forward); some do: the tag is
//                    deleted from them (qmpkit made it, the journal says so); none: nothing
//   create-external  qemu runs on all the new overlays, or (qemu gone) they all exist over the
//                    frozen images: recorded, definition too; else the new overlays and the
//                    memory file are removed and a VM the migration paused is resumed
//   delete-external  every overlay was merged (gone from the disk's chain): recorded and the
//                    overlays removed; some merge may have started but not finished: the
//                    snapshot's frozen image can hold later data, so the snapshot is forgotten
//                    (its children move up) and the overlays, still in use, stay
//   revert           the load job concluded without error: the snapshot becomes current
//   create-reset-point  qemu runs on the new overlays (or, qemu gone, they exist over the
//                    frozen images): the definition names them; else they are removed. A point
//                    without its point.json is removed; x-ignore-shared is switched off and a
//                    VM the save paused is resumed
// A job qemu still runs for the operation is waited for (a ready commit is completed) and
// dismissed. Metadata is rolled forward only when it is still what the operation found.
// Removes the journal and returns what was done, one line each. ctx.tree and ctx.def follow.
std::vector<std::string> resolve_interrupted(vm_context& ctx, const operation_journal& journal);

// The same on an operation's failure path: best effort, never throws; the journal stays when
// the outcome could not be decided (the next `snapshot check --repair` tries again).
void resolve_after_failure(vm_context& ctx, const operation_journal& journal) noexcept;

// For operations that put the VM in a state of their own (a reset, a new reset point): an
// operation interrupted earlier is resolved first, as `snapshot check --repair` would, rather
// than refused. Returns what was done (nothing when no journal was left).
std::vector<std::string> resolve_left_operation(vm_context& ctx);

// Throws error(drift) when an earlier operation left its journal: operations refuse to start
// on top of an interrupted one.
void require_no_interrupted_operation(const launcher::state_directory& dir);

} // namespace qmpkit::snapshot::detail
