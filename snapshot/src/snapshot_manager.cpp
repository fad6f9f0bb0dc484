#include "free_space.hpp"
#include "guest_freeze.hpp"
#include "interrupted_operation.hpp"
#include "memory_state.hpp"
#include "operation_journal.hpp"
#include "plan/create_plan.hpp"
#include "plan/plan_executor.hpp"
#include "plan/revert_plan.hpp"
#include "qmp_jobs.hpp"
#include "share_mounts.hpp"
#include "vm_check.hpp"
#include "vm_context.hpp"

#include <qmpkit/launcher/atomic_file.hpp>
#include <qmpkit/launcher/definition_loader.hpp>
#include <qmpkit/launcher/definition_validator.hpp>
#include <qmpkit/launcher/error.hpp>
#include <qmpkit/launcher/internal/fault_point.hpp>
#include <qmpkit/launcher/launch.hpp>
#include <qmpkit/launcher/qemu_command.hpp>
#include <qmpkit/launcher/qemu_img.hpp>
#include <qmpkit/launcher/runtime_info.hpp>
#include <qmpkit/launcher/state_directory.hpp>
#include <qmpkit/launcher/supervisor.hpp>
#include <qmpkit/launcher/vm_control.hpp>
#include <qmpkit/launcher/vm_lock.hpp>
#include <qmpkit/snapshot/error.hpp>
#include <qmpkit/snapshot/metadata_store.hpp>
#include <qmpkit/snapshot/snapshot_manager.hpp>
#include <qmpkit/snapshot/vm_reset.hpp>

#include <boost/json.hpp>
#include <spdlog/logger.h>

#include <algorithm>
#include <map>
#include <random>
#include <set>
#include <sys/statvfs.h>
#include <thread>
#include <unistd.h>

namespace qmpkit::snapshot {

using detail::hex_id;
using detail::live_disks;
using detail::now_seconds;
using detail::same_file;
using detail::vm_context;

namespace {

namespace json = boost::json;
namespace fs = std::filesystem;
using namespace std::chrono_literals;
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

detail::create_facts create_facts_of(vm_context& ctx) {
    detail::create_facts f;
    f.def = ctx.def;
    f.tree = ctx.tree;
    f.qemu_runs = ctx.running();
    f.state = ctx.state;
    f.run_state = ctx.run_state;
    if (ctx.running()) {
        f.live = live_disks(*ctx.qmp);
        f.snapshot_jobs = detail::has_snapshot_jobs(*ctx.qmp);
    }
    f.metadata_digest = detail::digest_of_file(metadata_store(ctx.dir).path());
    f.now = now_seconds();
    f.pid = ::getpid();
    f.host = detail::real_host();
    return f;
}

detail::revert_facts revert_facts_of(vm_context& ctx, const std::string& name) {
    detail::revert_facts f;
    f.def = ctx.def;
    f.definition_file = ctx.dir.definition_copy();
    f.tree = ctx.tree;
    f.qemu_runs = ctx.running();
    f.state = ctx.state;
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
    f.metadata_digest = detail::digest_of_file(metadata_store(ctx.dir).path());
    f.now = now_seconds();
    f.pid = ::getpid();
    f.host = detail::real_host();
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
    return detail::describe(detail::plan_create(create_facts_of(ctx), request).steps);
}

std::vector<json::object> snapshot_manager::plan(const std::string& name,
                                                 const revert_request& request) {
    vm_context ctx(vm_, options_, "planning a revert");
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
        // Where the snapshot was to go, and where its records go: the one that is full.
        std::string hint;
        if (record.location == snapshot_location::internal && record.memory)
            hint = space_hint(ctx.def, record);
        std::vector<fs::path> places{ctx.dir.path()};
        for (const auto& d : record.disks)
            places.push_back(d.how == disk_snapshot::mode::external ? d.overlay : d.image);
        if (!record.memory_file.empty())
            places.push_back(record.memory_file);
        hint += detail::full_file_system_hint(places);
        if (hint.empty())
            throw;
        const auto* known = dynamic_cast<const error*>(&e);
        throw error(known ? known->kind() : error_kind::other, e.what() + hint);
    }
    return record;
}

void snapshot_manager::revert(const std::string& name, const revert_request& request) {
    vm_context ctx(vm_, options_, "reverting to a snapshot");
    detail::require_no_interrupted_operation(ctx.dir);
    detail::run_plan(ctx, detail::plan_revert(revert_facts_of(ctx, name), name, request).steps);
}

// --- delete: helpers ----------------------------------------------------------------------------

namespace {

// The node of the running block graph whose image is `file` (a format node, not the protocol one).
std::optional<std::string> node_of(qmp::client& qmp, const fs::path& file) {
    if (auto n = launcher::format_node_of(qmp, file))
        return n->node_name;
    return std::nullopt;
}

// After an overlay was merged into the image it was built on, the snapshots that lived in the
// overlay (of `disk`) live in that image.
void repoint_images(snapshot_tree& tree, const std::string& disk, const fs::path& from,
                    const fs::path& to) {
    for (const auto* r : tree.all()) {
        auto updated = *r;
        bool changed = false;
        for (auto& x : updated.disks)
            if (x.disk == disk && same_file(x.image, from)) {
                x.image = to;
                changed = true;
            }
        if (changed)
            tree.update(updated);
    }
}

} // namespace

// --- delete ------------------------------------------------------------------------------------

namespace {

void delete_internal(vm_context& ctx, const snapshot_record& rec) {
    if (!ctx.running()) {
        const launcher::qemu_img img;
        for (const auto& d : rec.disks)
            if (d.how == disk_snapshot::mode::internal)
                img.snapshot_delete(d.image, rec.name, launcher::disk_key(ctx.def, d.disk));
        return;
    }
    auto& qmp = *ctx.qmp;
    std::vector<std::string> nodes;
    std::vector<const disk_snapshot*> offline;
    const auto live = launcher::list_block_nodes(qmp);
    for (const auto& d : rec.disks) {
        if (d.how != disk_snapshot::mode::internal)
            continue;
        if (auto node = launcher::format_node_of(live, d.image))
            nodes.push_back(node->node_name);
        else
            offline.push_back(&d);
    }
    // Images the VM no longer runs on (a reset or a revert moved it to a fresh overlay) are
    // changed with qemu-img, whose image lock refuses if another qemu (a clone, a standby) has
    // them open. First: they are the likelier to refuse, before anything has changed.
    if (!offline.empty()) {
        const launcher::qemu_img img;
        for (const auto* d : offline)
            img.snapshot_delete(d->image, rec.name, launcher::disk_key(ctx.def, d->disk));
    }
    if (nodes.empty())
        return;
    if (detail::has_snapshot_jobs(qmp)) {
        const auto job = detail::make_job_id("delete");
        detail::run_job(qmp, "snapshot-delete",
                        {{"job-id", job}, {"tag", rec.name}, {"devices", json::value_from(nodes)}},
                        job);
    } else {
        qmp.hmp("delvm " + rec.name);
    }
}

// Merges the snapshot's overlay into its frozen image (block-commit), or, where another snapshot
// still needs that image as it is, pulls the image's data up into the overlay (block-stream).
// The same for a shut-off VM, with qemu-img: commit (or rebase, where another snapshot still
// needs the image as it is). The definition and the tree are changed in memory only, and the
// merged-away overlays are returned, not removed: the caller writes the tree first, then the
// definition, then removes them, so that a crash in between never leaves the definition on an
// image whose snapshot record could still be merged into it again.
std::vector<fs::path> delete_external_offline(vm_context& ctx, snapshot_tree& tree,
                                              const snapshot_record& rec) {
    const launcher::qemu_img img;
    std::vector<fs::path> merged;
    for (const auto& d : rec.disks) {
        if (d.how != disk_snapshot::mode::external)
            continue;
        auto disk = std::find_if(ctx.def.disks.begin(), ctx.def.disks.end(),
                                 [&](auto& x) { return x.name == d.disk; });
        if (disk == ctx.def.disks.end())
            throw error(error_kind::drift, "snapshot '" + rec.name + "' has disk '" + d.disk +
                                               "', which VM '" + ctx.dir.vm_name() +
                                               "' no longer has (delete with --metadata)");
        const auto key = launcher::disk_key(ctx.def, d.disk);
        // The layer of the VM's chain built right on the overlay, if the overlay is not the top.
        std::optional<fs::path> above;
        const bool active = same_file(disk->file, d.overlay);
        if (!active) {
            fs::path layer = disk->file;
            for (const auto& info : img.info_chain(disk->file)) {
                if (info.full_backing_file && same_file(*info.full_backing_file, d.overlay)) {
                    above = layer;
                    break;
                }
                if (!info.full_backing_file)
                    break;
                layer = *info.full_backing_file;
            }
            if (!above)
                throw error(error_kind::unsupported,
                            "snapshot '" + rec.name + "' is not on the branch VM '" +
                                ctx.dir.vm_name() +
                                "' runs on (revert to it first, or delete with --metadata)");
        }
        const auto overlay_info = img.info(d.overlay);
        if (!overlay_info.full_backing_file || !same_file(*overlay_info.full_backing_file, d.image))
            throw error(error_kind::drift, "the overlay " + d.overlay.string() + " of snapshot '" +
                                               rec.name + "' is not built on " + d.image.string() +
                                               " (run qmpkit snapshot check " + ctx.dir.vm_name() +
                                               ")");
        if (detail::frozen_by_other(tree, rec.name, d.image)) {
            if (!active)
                throw error(error_kind::unsupported,
                            "snapshot '" + rec.name +
                                "': its image is shared with another snapshot");
            // The overlay takes in what it read through the image; the image stays as it is.
            const auto below = img.info(d.image);
            img.rebase(d.overlay,
                       below.full_backing_file ? std::optional<fs::path>(*below.full_backing_file)
                                               : std::nullopt,
                       below.backing_format
                           ? launcher::disk_format_from_string(*below.backing_format)
                           : std::nullopt,
                       key);
            continue;
        }
        img.commit(d.overlay, key);
        if (above)
            img.rebase(*above, d.image, img.info(d.image).known_format(), key, true);
        else
            disk->file = d.image;
        repoint_images(tree, d.disk, d.overlay, d.image);
        merged.push_back(d.overlay);
    }
    return merged;
}

void delete_external(vm_context& ctx, snapshot_tree& tree, const snapshot_record& rec) {
    auto& qmp = *ctx.qmp;
    for (const auto& d : rec.disks) {
        if (d.how != disk_snapshot::mode::external)
            continue;
        auto live = live_disks(qmp);
        const auto& top = live.at(d.disk);
        const auto overlay_node = node_of(qmp, d.overlay);
        const auto image_node = node_of(qmp, d.image);
        if (!overlay_node || !image_node)
            throw error(error_kind::unsupported,
                        "snapshot '" + rec.name + "' is not on the branch VM '" +
                            ctx.dir.vm_name() +
                            "' runs on (revert to it first, or delete with --metadata)");
        const auto job = detail::make_job_id("merge");
        detail::job_options o;
        o.progress = [&](double f) { ctx.report("merging " + d.disk, f); };
        o.on_status = [&](const std::string& status) {
            if (status == "running" || status == "ready")
                launcher::fault_point("snapshot.commit.job-" + status, ctx.dir);
        };
        const bool active = same_file(top.file, d.overlay);
        if (detail::frozen_by_other(tree, rec.name, d.image)) {
            if (!active)
                throw error(error_kind::unsupported,
                            "snapshot '" + rec.name +
                                "': its image is shared with another snapshot");
            detail::run_job(qmp, "block-stream",
                            {{"job-id", job}, {"device", top.node_name}, {"auto-dismiss", false}},
                            job, o);
            continue;
        }
        json::object args{{"job-id", job},
                          {"device", top.node_name},
                          {"base-node", *image_node},
                          {"auto-dismiss", false}};
        if (!active)
            args["top-node"] = *overlay_node;
        o.complete_when_ready = active;
        detail::run_job(qmp, "block-commit", std::move(args), job, o);
        // Nodes that -blockdev or blockdev-add created belong to the monitor and outlive the
        // commit, still holding the base as their backing file ("busy" to every later
        // snapshot): delete them. Nodes qemu made for a snapshot go by themselves.
        for (const auto& node : {active ? top.node_name : *overlay_node,
                                 (active ? top.node_name : *overlay_node) + "-file"}) {
            try {
                qmp.execute("blockdev-del", {{"node-name", node}});
            } catch (const qmp::error&) {
            }
        }
        // The frozen image holds the overlay's data now; who pointed at the overlay points at it.
        if (active) {
            for (auto& disk : ctx.def.disks)
                if (disk.name == d.disk)
                    disk.file = d.image;
            ctx.save_definition();
        }
        repoint_images(tree, d.disk, d.overlay, d.image);
        std::error_code ignored;
        fs::remove(d.overlay, ignored);
    }
}

// What deleting (merging) external snapshot `rec` leaves when it succeeds, as delete_external
// and remove() change it.
detail::operation_journal merge_journal(const vm_context& ctx, const snapshot_record& rec) {
    detail::operation_journal journal;
    journal.operation = "delete-external";
    journal.snapshot = rec.name;
    journal.pid = ::getpid();
    journal.started_at = now_seconds();
    journal.was_running = ctx.state == vm_state::running;
    journal.before_digest = detail::digest_of_file(metadata_store(ctx.dir).path());
    auto tree = ctx.tree;
    auto def = ctx.def;
    bool def_changed = false;
    for (const auto& d : rec.disks) {
        if (d.how != disk_snapshot::mode::external)
            continue;
        journal.overlays.push_back({d.disk, d.image, d.overlay});
        for (auto& disk : def.disks)
            if (disk.name == d.disk && same_file(disk.file, d.overlay)) {
                disk.file = d.image;
                def_changed = true;
            }
        repoint_images(tree, d.disk, d.overlay, d.image);
    }
    tree.remove(rec.name);
    journal.after_metadata = metadata_store::serialize(tree);
    if (def_changed)
        journal.after_definition = launcher::dump_definition(def);
    return journal;
}

} // namespace

std::vector<std::string> snapshot_manager::remove(const std::string& name,
                                                  const delete_request& request) {
    vm_context ctx(vm_, options_, "deleting snapshots");
    detail::require_no_interrupted_operation(ctx.dir);
    ctx.tree.at(name);
    std::vector<std::string> targets;
    if (request.children || request.children_only) {
        auto below = ctx.tree.descendants(name);
        // Deepest first, so every merge happens below a snapshot that still exists.
        std::reverse(below.begin(), below.end());
        targets = below;
    }
    if (!request.children_only)
        targets.push_back(name);
    for (const auto& t : targets) {
        const auto rec = ctx.tree.at(t);
        auto tree = ctx.tree;
        const bool merge =
            !request.metadata_only && rec.location == snapshot_location::external && ctx.running();
        std::optional<detail::operation_journal> journal;
        if (merge) {
            journal = merge_journal(ctx, rec);
            detail::write_journal(ctx.dir, *journal);
        }
        std::vector<fs::path> merged_offline;
        try {
            if (!request.metadata_only) {
                if (rec.location == snapshot_location::internal)
                    delete_internal(ctx, rec);
                else if (ctx.running())
                    delete_external(ctx, tree, rec);
                else
                    merged_offline = delete_external_offline(ctx, tree, rec);
            }
            if (merge)
                launcher::fault_point("snapshot.commit.before-metadata", ctx.dir);
            tree.remove(t);
            ctx.tree = std::move(tree);
            ctx.save_tree();
            if (merge)
                launcher::fault_point("snapshot.commit.after-metadata", ctx.dir);
            if (!ctx.running() && rec.location == snapshot_location::external &&
                !request.metadata_only) {
                ctx.save_definition();
                std::error_code ignored;
                for (const auto& f : merged_offline)
                    fs::remove(f, ignored);
            }
        } catch (...) {
            if (journal)
                detail::resolve_after_failure(ctx, *journal);
            throw;
        }
        if (journal)
            detail::remove_journal(ctx.dir);
    }
    return targets;
}

void snapshot_manager::set_current(const std::string& name) {
    vm_context ctx(vm_, options_, "setting the current snapshot");
    auto tree = ctx.tree;
    tree.set_current(name);
    ctx.tree = std::move(tree);
    ctx.save_tree();
}

} // namespace qmpkit::snapshot
