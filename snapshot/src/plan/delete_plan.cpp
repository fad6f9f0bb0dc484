#include "../same_file.hpp"
#include "delete_plan.hpp"
#include "revert_plan.hpp"

#include <qmpkit/launcher/definition_loader.hpp>
#include <qmpkit/snapshot/error.hpp>
#include <qmpkit/snapshot/metadata_store.hpp>

#include <boost/json.hpp>

#include <algorithm>

namespace qmpkit::snapshot::detail {

namespace {

namespace json = boost::json;
namespace fs = std::filesystem;

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

std::string not_on_branch(const delete_facts& f, const snapshot_record& rec) {
    return "snapshot '" + rec.name + "' is not on the branch VM '" + f.def.name +
           "' runs on (revert to it first, or delete with --metadata)";
}

void add_internal(const delete_facts& f, const snapshot_record& rec, operation_plan& steps) {
    std::vector<const disk_snapshot*> offline;
    json::array nodes;
    for (const auto& d : rec.disks) {
        if (d.how != disk_snapshot::mode::internal)
            continue;
        const auto node = f.qemu_runs ? launcher::format_node_of(f.nodes, d.image) : std::nullopt;
        if (node)
            nodes.emplace_back(node->node_name);
        else
            offline.push_back(&d);
    }
    // Images the VM does not run on (a shut-off VM's; or a reset or a revert moved it to a fresh
    // overlay) are changed with qemu-img, whose image lock refuses if another qemu (a clone, a
    // standby) has them open. First: they are the likelier to refuse, before anything changed.
    for (const auto* d : offline)
        steps.push_back({image_snapshot_change{image_snapshot_change::kind::remove, d->image,
                                               rec.name, launcher::disk_key(f.def, d->disk)}});
    if (nodes.empty())
        return;
    if (!f.snapshot_jobs) {
        steps.push_back({hmp_command{"delvm " + rec.name, {}}});
        return;
    }
    steps.push_back({qmp_job{
        "snapshot-delete",
        {{"job-id", f.host.job_id("delete")}, {"tag", rec.name}, {"devices", std::move(nodes)}},
        "deleting " + rec.name}});
}

// What merging external snapshot `rec` leaves when it succeeds, for the failure path and
// `snapshot check --repair` to decide from.
operation_journal merge_journal(const delete_facts& f, const snapshot_record& rec) {
    operation_journal journal;
    journal.operation = "delete-external";
    journal.snapshot = rec.name;
    journal.pid = f.pid;
    journal.started_at = f.now;
    journal.was_running = f.state == vm_state::running;
    journal.before_digest = f.metadata_digest;
    auto tree = f.tree;
    auto def = f.def;
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

// A running VM: block-commit of each overlay into its frozen image (an active commit completed
// when ready), or block-stream where another snapshot still needs the image as it is.
void add_merge_running(const delete_facts& f, const snapshot_record& rec, delete_plan& plan) {
    auto& steps = plan.steps;
    auto& tree = plan.tree_after;
    auto& def = plan.definition_after;
    for (const auto& d : rec.disks) {
        if (d.how != disk_snapshot::mode::external)
            continue;
        const auto top = f.live.find(d.disk);
        const auto overlay_node = launcher::format_node_of(f.nodes, d.overlay);
        const auto image_node = launcher::format_node_of(f.nodes, d.image);
        if (top == f.live.end() || !overlay_node || !image_node)
            throw error(error_kind::unsupported, not_on_branch(f, rec));
        const auto& top_node = top->second.node_name;
        const bool active = same_file(top->second.file, d.overlay);
        qmp_job job{"", {}, "merging " + d.disk, "snapshot.commit.job-"};
        if (frozen_by_other(tree, rec.name, d.image)) {
            if (!active)
                throw error(error_kind::unsupported,
                            "snapshot '" + rec.name +
                                "': its image is shared with another snapshot");
            job.command = "block-stream";
            job.arguments = {
                {"job-id", f.host.job_id("merge")}, {"device", top_node}, {"auto-dismiss", false}};
            steps.push_back({std::move(job)});
            continue;
        }
        job.command = "block-commit";
        job.arguments = {{"job-id", f.host.job_id("merge")},
                         {"device", top_node},
                         {"base-node", image_node->node_name},
                         {"auto-dismiss", false}};
        if (!active)
            job.arguments["top-node"] = overlay_node->node_name;
        job.complete_when_ready = active;
        steps.push_back({std::move(job)});
        // Nodes that -blockdev or blockdev-add created belong to the monitor and outlive the
        // commit, still holding the base as their backing file ("busy" to every later snapshot):
        // deleted. Nodes qemu made for a snapshot go by themselves, hence no failure.
        const auto gone = active ? top_node : overlay_node->node_name;
        for (const auto& node : {gone, gone + "-file"})
            steps.push_back({qmp_command{"blockdev-del", {{"node-name", node}}, {}, true}});
        // The frozen image holds the overlay's data now; who pointed at the overlay points at it.
        if (active) {
            for (auto& disk : def.disks)
                if (disk.name == d.disk)
                    disk.file = d.image;
            steps.push_back({definition_write{def}});
        }
        repoint_images(tree, d.disk, d.overlay, d.image);
        steps.push_back({remove_file{d.overlay}});
    }
}

// A shut-off VM: the same with qemu-img (commit; or rebase, where another snapshot still needs
// the image as it is). The merged-away overlays are removed last, after the metadata and then
// the definition are written, so that a crash in between never leaves the definition on an
// image whose snapshot record could still be merged into it again.
std::vector<fs::path> add_merge_offline(const delete_facts& f, const snapshot_record& rec,
                                        delete_plan& plan) {
    auto& steps = plan.steps;
    auto& tree = plan.tree_after;
    auto& def = plan.definition_after;
    std::vector<fs::path> merged;
    for (const auto& d : rec.disks) {
        if (d.how != disk_snapshot::mode::external)
            continue;
        auto disk = std::find_if(def.disks.begin(), def.disks.end(),
                                 [&](auto& x) { return x.name == d.disk; });
        if (disk == def.disks.end())
            throw error(error_kind::drift, "snapshot '" + rec.name + "' has disk '" + d.disk +
                                               "', which VM '" + f.def.name +
                                               "' no longer has (delete with --metadata)");
        const auto key = launcher::disk_key(def, d.disk);
        // The layer of the VM's chain built right on the overlay, if the overlay is not the top.
        std::optional<fs::path> above;
        const bool active = same_file(disk->file, d.overlay);
        if (!active) {
            fs::path layer = disk->file;
            for (const auto& info : f.host.image_chain(disk->file)) {
                if (info.full_backing_file && same_file(*info.full_backing_file, d.overlay)) {
                    above = layer;
                    break;
                }
                if (!info.full_backing_file)
                    break;
                layer = *info.full_backing_file;
            }
            if (!above)
                throw error(error_kind::unsupported, not_on_branch(f, rec));
        }
        const auto overlay_info = f.host.image_info(d.overlay);
        if (!overlay_info.full_backing_file || !same_file(*overlay_info.full_backing_file, d.image))
            throw error(error_kind::drift, "the overlay " + d.overlay.string() + " of snapshot '" +
                                               rec.name + "' is not built on " + d.image.string() +
                                               " (run qmpkit snapshot check " + f.def.name + ")");
        if (frozen_by_other(tree, rec.name, d.image)) {
            if (!active)
                throw error(error_kind::unsupported,
                            "snapshot '" + rec.name +
                                "': its image is shared with another snapshot");
            // The overlay takes in what it read through the image; the image stays as it is.
            const auto below = f.host.image_info(d.image);
            steps.push_back({image_rebase{
                d.overlay,
                below.full_backing_file ? std::optional<fs::path>(*below.full_backing_file)
                                        : std::nullopt,
                below.backing_format ? launcher::disk_format_from_string(*below.backing_format)
                                     : std::nullopt,
                key}});
            continue;
        }
        steps.push_back({image_commit{d.overlay, key}});
        if (above)
            steps.push_back({image_rebase{*above, d.image,
                                          f.host.image_info(d.image).known_format(), key, true}});
        else
            disk->file = d.image;
        repoint_images(tree, d.disk, d.overlay, d.image);
        merged.push_back(d.overlay);
    }
    return merged;
}

} // namespace

delete_plan plan_delete(const delete_facts& f, const std::string& name, bool metadata_only) {
    const auto rec = f.tree.at(name);
    delete_plan plan{{}, f.tree, f.def};
    auto& steps = plan.steps;
    const bool external = rec.location == snapshot_location::external;
    plan.merges = external && !metadata_only;
    const bool journaled = plan.merges && f.qemu_runs;
    if (journaled)
        steps.push_back({journal_write{merge_journal(f, rec)}});
    std::vector<fs::path> merged_offline;
    if (!metadata_only) {
        if (!external)
            add_internal(f, rec, steps);
        else if (f.qemu_runs)
            add_merge_running(f, rec, plan);
        else
            merged_offline = add_merge_offline(f, rec, plan);
    }
    if (journaled)
        steps.push_back({fault_point_step{"snapshot.commit.before-metadata"}});
    plan.tree_after.remove(name);
    steps.push_back({metadata_write{plan.tree_after}});
    if (journaled) {
        steps.push_back({fault_point_step{"snapshot.commit.after-metadata"}});
        steps.push_back({journal_remove{}});
    }
    if (plan.merges && !f.qemu_runs) {
        steps.push_back({definition_write{plan.definition_after}});
        for (auto& file : merged_offline)
            steps.push_back({remove_file{std::move(file)}});
    }
    return plan;
}

} // namespace qmpkit::snapshot::detail
