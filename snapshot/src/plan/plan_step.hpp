#pragma once

// Private: a snapshot operation as a list of steps. An operation first reads what it needs (its
// facts: the definition, the tree, qemu's block graph, the images' snapshots), then a pure
// function turns facts and request into a plan (create_plan.hpp, revert_plan.hpp), and one
// executor (plan_executor.hpp) runs it. `--print-plan` prints the same list the executor runs,
// so what is printed cannot differ from what is done; the plans are unit-tested without qemu.
//
// Steps that are one conversation with qemu whatever happens inside it (a job run to its end, a
// memory save polled to completion) are one step each; their conversation is written once
// (qmp_jobs.hpp, memory_state.hpp).

#include "../operation_journal.hpp"

#include <qmpkit/launcher/vm_definition.hpp>
#include <qmpkit/snapshot/snapshot_record.hpp>
#include <qmpkit/snapshot/snapshot_tree.hpp>
#include <qmpkit/snapshot/vm_reset.hpp>

#include <boost/json/object.hpp>

#include <filesystem>
#include <optional>
#include <string>
#include <variant>
#include <vector>

namespace qmpkit::snapshot::detail {

// One QMP command, sent as it is. on_failure: how a refusal is reported ("<on_failure>: <qemu's
// error>"); empty reports qemu's error as it is. ignore_failure: a refusal is no failure (a
// clean-up of what qemu may have removed by itself).
struct qmp_command {
    std::string name;
    boost::json::object arguments{};
    std::string on_failure{};
    bool ignore_failure = false;
};

// A command that creates a job, run until the job concluded and is dismissed; a job that stops
// in `ready` (an active-layer block-commit) is completed when complete_when_ready.
// fault_points: the fault point "<fault_points><status>" hangs at each status it enters.
struct qmp_job {
    std::string command;
    boost::json::object arguments; // with "job-id"
    std::string progress;          // what is reported while it runs
    std::string fault_points{};
    bool complete_when_ready = false;
};

// An HMP command line, for qemus before 6.0 (savevm, loadvm, delvm); on_failure as for
// qmp_command.
struct hmp_command {
    std::string line;
    std::string on_failure;
};

// The VM's RAM and device state saved to a new file through migration; the VM is paused at the
// end (postmigrate). Fault points "<fault_points>.<step>" hang inside.
struct memory_save {
    std::filesystem::path file;
    std::string progress;
    std::string fault_points;
};

// Loads a memory file into a qemu started with -incoming defer.
struct memory_load {
    std::filesystem::path file;
};

// qemu-img snapshot -c / -a / -d on an image no qemu holds.
struct image_snapshot_change {
    enum class kind { create, apply, remove } what;
    std::filesystem::path image;
    std::string tag;
    std::optional<launcher::disk_encryption> key{};
    std::string progress{};
};

// qemu-img commit: the overlay's data written into the image below it (the overlay stays).
struct image_commit {
    std::filesystem::path overlay;
    std::optional<launcher::disk_encryption> key{};
};

// qemu-img rebase of `image` onto `backing` (none: standalone); unsafe changes only the recorded
// backing file (the new one reads the same as the old).
struct image_rebase {
    std::filesystem::path image;
    std::optional<std::filesystem::path> backing;
    std::optional<launcher::disk_format> backing_format;
    std::optional<launcher::disk_encryption> key{};
    bool unsafe = false;
};

// qemu-img create of a new, empty qcow2 overlay on `backing`.
struct create_overlay {
    std::filesystem::path overlay;
    std::filesystem::path backing;
    std::optional<launcher::disk_format> backing_format;
    std::optional<launcher::disk_encryption> key{};
    std::string progress{};
};

// A file removed (a missing one is no error).
struct remove_file {
    std::filesystem::path file;
};

// Directories made where missing (a point's own, the overlays').
struct directories_make {
    std::vector<std::filesystem::path> dirs;
};
// A file copied to a new one with its holes kept, and synced (a reset point's RAM).
struct file_copy {
    std::filesystem::path from;
    std::filesystem::path to;
};
// A reset point's record written into its directory.
struct point_write {
    std::filesystem::path dir;
    reset_point point;
};
// The guest's file systems frozen through its agent until guest_thaw (or the end of the plan,
// whatever ends it).
struct guest_freeze_step {};
struct guest_thaw {};

// The guest unmounts its 9p shares, which block a memory save, until shares_remount (or the end
// of the plan). guest_running: a paused guest's agent cannot answer.
struct shares_unmount {
    bool guest_running = false;
    std::string operation;
};
struct shares_remount {};
// After a state was loaded: the shares the definition mounts are mounted again.
struct shares_mount_declared {};

// qemu stopped (quit, waited for); nothing when it does not run.
struct stop_qemu {};
// qemu started, supervised, on `definition`, and connected to; with a memory template, its RAM
// maps that file copy-on-write (a reset point's).
struct start_qemu {
    launcher::vm_definition definition;
    std::vector<std::string> extra_args;
    bool paused = false;
    std::filesystem::path memory_template{};
};

// A reset: a new overlay over each of a reset point's frozen disks (its overlay template
// copied), `files` in the order of point.disks; all or none.
struct instance_overlays {
    reset_point point;
    std::vector<std::filesystem::path> files;
};
// A reset: the point's device state loaded into a qemu started with -incoming defer.
struct device_state_load {
    std::filesystem::path file;
};
// A reset: the overlays the VM ran on before (`before`) and no longer uses, and any other
// overlay of qmpkit's that nothing uses, removed.
struct overlays_tidy {
    launcher::vm_definition before;
};
// A reset: the guest's clock set to the host's through its agent (best effort).
struct guest_clock_set {};
// The guest left running or paused (cont / stop as needed).
struct set_run_state {
    vm_state wanted = vm_state::running;
};

// The operation's journal written (before the first change) and removed (after the last). A
// failure between the two resolves the operation from the facts (interrupted_operation.hpp).
struct journal_write {
    operation_journal journal;
};
struct journal_remove {};
// The VM's recorded definition and the snapshot metadata, written atomically.
struct definition_write {
    launcher::vm_definition definition;
};
struct metadata_write {
    snapshot_tree tree;
};

// A test hook (launcher::fault_point); not printed.
struct fault_point_step {
    std::string name;
};

using plan_action =
    std::variant<qmp_command, qmp_job, hmp_command, memory_save, memory_load, image_snapshot_change,
                 image_commit, image_rebase, create_overlay, remove_file, directories_make,
                 file_copy, point_write, guest_freeze_step, guest_thaw, shares_unmount,
                 shares_remount, shares_mount_declared, stop_qemu, start_qemu, set_run_state,
                 instance_overlays, device_state_load, overlays_tidy, guest_clock_set,
                 journal_write, journal_remove, definition_write, metadata_write, fault_point_step>;

// A step, and what takes its effect back when a later step fails, before the journal's
// resolution decides the rest from the facts. settles: once this step has succeeded, the undos
// of the steps before it no longer apply (qemu acted on them, e.g. a transaction that put the
// overlays in place): from there on only the journal's resolution decides. overlaps_next: the
// step runs on a thread of its own while the next one runs (it must touch no qemu and no record:
// files only); both have ended before the step after.
struct plan_step {
    plan_action action;
    std::optional<plan_action> undo{};
    bool settles = false;
    bool overlaps_next = false;
};

using operation_plan = std::vector<plan_step>;

// The step as --print-plan shows it: QMP commands as they are sent ({"execute", "arguments"}),
// qemu-img calls as their arguments, the others as {"<what>": ...}. nullopt for test hooks.
std::optional<boost::json::object> describe(const plan_action& action);
// Every step that is not a test hook, in order.
std::vector<boost::json::object> describe(const operation_plan& plan);

// The definition with each disk's active layer replaced: `files` maps disk names to new qcow2
// files (overlays, or images going back to be written to).
launcher::vm_definition
with_active_files(launcher::vm_definition def,
                  const std::map<std::string, std::filesystem::path>& files);

} // namespace qmpkit::snapshot::detail
