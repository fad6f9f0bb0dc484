#include "free_space.hpp"
#include "interrupted_operation.hpp"
#include "operation_journal.hpp"
#include "plan/create_plan.hpp"
#include "plan/delete_plan.hpp"
#include "plan/plan_executor.hpp"
#include "plan/revert_plan.hpp"
#include "qmp_jobs.hpp"
#include "vm_check.hpp"
#include "vm_context.hpp"

#include <qmpkit/launcher/atomic_file.hpp>
#include <qmpkit/launcher/definition_loader.hpp>
#include <qmpkit/launcher/definition_validator.hpp>
#include <qmpkit/launcher/state_directory.hpp>
#include <qmpkit/launcher/vm_control.hpp>
#include <qmpkit/launcher/vm_lock.hpp>
#include <qmpkit/snapshot/error.hpp>
#include <qmpkit/snapshot/metadata_store.hpp>
#include <qmpkit/snapshot/snapshot_manager.hpp>
#include <qmpkit/snapshot/vm_reset.hpp>

#include <boost/json.hpp>

#include <algorithm>
#include <sys/statvfs.h>
#include <unistd.h>

namespace qmpkit::snapshot {

using detail::live_disks;
using detail::now_seconds;
using detail::vm_context;

namespace {

namespace json = boost::json;
namespace fs = std::filesystem;
using launcher::vm_definition;

} // namespace

snapshot_manager::snapshot_manager(std::string vm, manager_options options)
    : vm_(std::move(vm))
    , options_(std::move(options)) {
    if (!launcher::is_valid_vm_name(vm_))
        throw error(error_kind::invalid_name, "'" + vm_ + "' is not a VM name");
}

void snapshot_manager::adopt_definition(const fs::path& yaml) {
    auto def = launcher::load_definition(yaml);
    launcher::validate_definition(def);
    if (def.name != vm_)
        throw error(error_kind::other,
                    yaml.string() + " defines VM '" + def.name + "', not '" + vm_ + "'");
    launcher::state_directory dir(
        options_.state_root.empty() ? launcher::default_state_root() : options_.state_root, vm_);
    dir.create();
    auto lock = launcher::vm_lock::acquire(dir.lock_file(), "recording the definition",
                                           options_.lock_timeout);
    if (launcher::is_running(dir))
        return; // the running VM's copy is the truth
    def = launcher::with_recorded_overlays(std::move(def), dir);
    launcher::write_file_atomically(dir.definition_copy(), launcher::dump_definition(def));
}

snapshot_tree snapshot_manager::tree() const {
    launcher::state_directory dir(
        options_.state_root.empty() ? launcher::default_state_root() : options_.state_root, vm_);
    return metadata_store(dir).load();
}

std::vector<drift> snapshot_manager::check() const {
    launcher::state_directory dir(
        options_.state_root.empty() ? launcher::default_state_root() : options_.state_root, vm_);
    return detail::check_vm(dir);
}

// --- create and revert: plans (plan/) run by the one executor ---------------------------------

namespace {

// What every operation's plan starts from.
void read_common_facts(const vm_context& ctx, detail::operation_facts& f) {
    f.def = ctx.def;
    f.tree = ctx.tree;
    f.qemu_runs = ctx.running();
    f.state = ctx.state;
    f.metadata_digest = detail::digest_of_file(metadata_store(ctx.dir).path());
    f.now = now_seconds();
    f.pid = ::getpid();
    f.host = detail::real_host();
}

detail::create_facts create_facts_of(vm_context& ctx) {
    detail::create_facts f;
    read_common_facts(ctx, f);
    f.run_state = ctx.run_state;
    if (ctx.running()) {
        f.live = live_disks(*ctx.qmp);
        f.snapshot_jobs = detail::has_snapshot_jobs(*ctx.qmp);
    }
    return f;
}

detail::revert_facts revert_facts_of(vm_context& ctx, const std::string& name) {
    detail::revert_facts f;
    read_common_facts(ctx, f);
    f.definition_file = ctx.dir.definition_copy();
    if (ctx.running()) {
        f.live = live_disks(*ctx.qmp);
        for (const auto& [disk, d] : f.live)
            f.active_files[disk] = d.file;
        f.snapshot_jobs = detail::has_snapshot_jobs(*ctx.qmp);
        // Only a load into the running qemu asks which snapshots its nodes hold.
        if (const auto* rec = ctx.tree.find(name);
            rec && rec->location == snapshot_location::internal && rec->memory)
            for (const auto& n : launcher::list_block_nodes(*ctx.qmp))
                f.node_snapshots[n.node_name] = n.snapshot_names;
    } else {
        for (const auto& d : ctx.def.disks)
            f.active_files[d.name] = d.file;
    }
    f.points = vm_reset(ctx.dir.vm_name(), *ctx.options).points();
    f.overlays_dir = ctx.dir.overlays();
    return f;
}

// qemu reports a full disk during a save as "Input/output error": say what is likely behind it.
std::string space_hint(const vm_definition& def, const snapshot_record& record) {
    for (const auto& d : record.disks) {
        struct statvfs fs_info {};
        if (d.how != disk_snapshot::mode::internal ||
            ::statvfs(d.image.parent_path().c_str(), &fs_info) != 0)
            continue;
        const auto free_bytes = static_cast<std::uint64_t>(fs_info.f_bavail) * fs_info.f_frsize;
        if (free_bytes < def.memory)
            return " (the file system holding " + d.image.string() + " has only " +
                   std::to_string(free_bytes >> 20) +
                   " MiB free, and a snapshot with memory can need up to the VM's " +
                   std::to_string(def.memory >> 20) + " MiB of RAM: is it full?)";
    }
    return {};
}

} // namespace

std::vector<json::object> snapshot_manager::plan(const create_request& request) {
    vm_context ctx(vm_, options_, "planning a snapshot");
    detail::require_no_interrupted_operation(ctx.dir);
    return detail::describe(detail::plan_create(create_facts_of(ctx), request).steps);
}

std::vector<json::object> snapshot_manager::plan(const std::string& name,
                                                 const revert_request& request) {
    vm_context ctx(vm_, options_, "planning a revert");
    detail::require_no_interrupted_operation(ctx.dir);
    return detail::describe(detail::plan_revert(revert_facts_of(ctx, name), name, request).steps);
}

snapshot_record snapshot_manager::create(const create_request& request) {
    vm_context ctx(vm_, options_, "creating a snapshot");
    detail::require_no_interrupted_operation(ctx.dir);
    const auto plan = detail::plan_create(create_facts_of(ctx), request);
    const auto& record = plan.record;
    try {
        detail::run_plan(ctx, plan.steps);
    } catch (const std::exception& e) {
        // qemu reports a full disk during a save as "Input/output error": the save job's error
        // says what is likely behind it.
        const auto* known = dynamic_cast<const error*>(&e);
        std::string what = e.what();
        auto kind = known ? known->kind() : error_kind::other;
        if (known && record.location == snapshot_location::internal && record.memory)
            what += space_hint(ctx.def, record);
        // Where the snapshot was to go, and where its records go: the one that is full.
        std::vector<fs::path> places{ctx.dir.path()};
        for (const auto& d : record.disks)
            places.push_back(d.how == disk_snapshot::mode::external ? d.overlay : d.image);
        if (!record.memory_file.empty())
            places.push_back(record.memory_file);
        if (const auto hint = detail::full_file_system_hint(places); !hint.empty()) {
            what += hint;
            kind = error_kind::other;
        }
        if (what == e.what())
            throw;
        throw error(kind, what);
    }
    return record;
}

void snapshot_manager::revert(const std::string& name, const revert_request& request) {
    vm_context ctx(vm_, options_, "reverting to a snapshot");
    detail::require_no_interrupted_operation(ctx.dir);
    detail::run_plan(ctx, detail::plan_revert(revert_facts_of(ctx, name), name, request).steps);
}

// --- delete: a plan for each snapshot, run one after the other ---------------------------------

namespace {

// The snapshots a delete request names, in the order they go: descendants deepest first, so
// every merge happens below a snapshot that still exists.
std::vector<std::string> delete_targets(const snapshot_tree& tree, const std::string& name,
                                        const delete_request& request) {
    tree.at(name);
    std::vector<std::string> targets;
    if (request.children || request.children_only) {
        auto below = tree.descendants(name);
        std::reverse(below.begin(), below.end());
        targets = below;
    }
    if (!request.children_only)
        targets.push_back(name);
    return targets;
}

detail::delete_facts delete_facts_of(vm_context& ctx, const delete_request& request) {
    detail::delete_facts f;
    read_common_facts(ctx, f);
    // Forgetting needs nothing of qemu.
    if (ctx.running() && !request.metadata_only) {
        f.nodes = launcher::list_block_nodes(*ctx.qmp);
        f.live = live_disks(*ctx.qmp);
        f.snapshot_jobs = detail::has_snapshot_jobs(*ctx.qmp);
    }
    return f;
}

} // namespace

std::vector<std::string> snapshot_manager::remove(const std::string& name,
                                                  const delete_request& request) {
    vm_context ctx(vm_, options_, "deleting snapshots");
    detail::require_no_interrupted_operation(ctx.dir);
    const auto targets = delete_targets(ctx.tree, name, request);
    // Each plan is made from the facts its predecessors left (a merge changes the block graph).
    for (const auto& t : targets)
        detail::run_plan(
            ctx,
            detail::plan_delete(delete_facts_of(ctx, request), t, request.metadata_only).steps);
    return targets;
}

std::vector<json::object> snapshot_manager::plan(const std::string& name,
                                                 const delete_request& request) {
    vm_context ctx(vm_, options_, "planning a delete");
    detail::require_no_interrupted_operation(ctx.dir);
    const auto targets = delete_targets(ctx.tree, name, request);
    std::vector<json::object> steps;
    std::optional<std::string> merged;
    auto facts = delete_facts_of(ctx, request);
    for (const auto& t : targets) {
        if (merged && !request.metadata_only &&
            ctx.tree.at(t).location == snapshot_location::external)
            throw error(error_kind::unsupported,
                        "the plan of merging snapshot '" + t +
                            "' depends on the images as merging '" + *merged +
                            "' leaves them: print the plan of one snapshot at a time");
        auto plan = detail::plan_delete(facts, t, request.metadata_only);
        for (auto& s : detail::describe(plan.steps))
            steps.push_back(std::move(s));
        facts.tree = std::move(plan.tree_after);
        facts.def = std::move(plan.definition_after);
        if (plan.merges)
            merged = t;
    }
    return steps;
}

void snapshot_manager::set_current(const std::string& name) {
    vm_context ctx(vm_, options_, "setting the current snapshot");
    auto tree = ctx.tree;
    tree.set_current(name);
    ctx.tree = std::move(tree);
    ctx.save_tree();
}

} // namespace qmpkit::snapshot
