#include "../same_file.hpp"
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
using launcher::vm_definition;

// What relies on `image` staying as it is, in words for an error message: an external snapshot
// built its overlay on it, or a reset point's frozen disk is this image. Empty when nothing does.
std::string what_freezes(const revert_facts& f, const fs::path& image) {
    const auto& vm = f.def.name;
    for (const auto* r : f.tree.all())
        for (const auto& d : r->disks)
            if (d.how == disk_snapshot::mode::external && same_file(d.image, image))
                return "external snapshot '" + r->name + "' froze it (delete '" + r->name +
                       "' first: qmpkit snapshot delete " + vm + " " + r->name +
                       " merges its overlay into the image; or revert to '" + r->name + "')";
    for (const auto& p : f.points)
        for (const auto& d : p.disks)
            if (same_file(d.base, image))
                return "reset point '" + p.name +
                       "' froze it (delete the reset point first: qmpkit reset-point delete " + vm +
                       " " + p.name + "; or reset to it: qmpkit reset " + vm + " " + p.name + ")";
    return {};
}

// An internal snapshot lives in the image that was the disk's active layer when it was taken.
// Since then a reset point, a reset or an external snapshot may have put an overlay on top:
// qemu's snapshot-load looks only at the active layer and would fail half-way (run state
// restore-vm). Such a revert restarts qemu on the image that holds the snapshot, which is safe
// only while nothing else relies on that image's present contents: refuse otherwise. Returns
// the disks whose active layer must move back, empty for none.
std::map<std::string, fs::path> internal_images_to_return_to(const revert_facts& f,
                                                             const snapshot_record& rec) {
    std::map<std::string, fs::path> moves;
    for (const auto& d : rec.disks) {
        if (d.how != disk_snapshot::mode::internal)
            continue;
        const auto now = f.active_files.find(d.disk);
        if (now != f.active_files.end() && same_file(now->second, d.image))
            continue;
        if (const auto why = what_freezes(f, d.image); !why.empty())
            throw error(error_kind::unsupported,
                        "cannot revert VM '" + f.def.name + "' to snapshot '" + rec.name +
                            "': it lives in " + d.image.string() + " (disk '" + d.disk +
                            "'), under the overlay the VM runs on now, and " + why +
                            ". Nothing was changed.");
        moves[d.disk] = d.image;
    }
    return moves;
}

vm_state wanted_state(const revert_request& r, vm_state snapshot_state) {
    if (r.running)
        return vm_state::running;
    if (r.paused)
        return vm_state::paused;
    return snapshot_state;
}

// Loads look the tag up as an id first: refuse a name that is also the id of another snapshot
// in one of the images (an id given after the name was chosen).
void require_no_shadowing(const plan_host& host, const snapshot_record& rec) {
    // Ids are digits: any other name costs no qemu-img run.
    if (!std::all_of(rec.name.begin(), rec.name.end(), [](char c) { return c >= '0' && c <= '9'; }))
        return;
    for (const auto& d : rec.disks) {
        if (d.how != disk_snapshot::mode::internal)
            continue;
        if (auto other = shadowing_snapshot(host.image_info(d.image).snapshots, rec.name))
            throw error(error_kind::drift, "cannot load snapshot '" + rec.name + "': in " +
                                               d.image.string() + ", '" + rec.name +
                                               "' is also the id of snapshot '" + other->name +
                                               "', which qemu would load instead");
    }
}

// Into the running qemu: a snapshot-load job (loadvm before qemu 6.0) over the internal disks'
// active nodes, each checked to hold the snapshot so that a missing one is refused rather than
// half-loaded.
void add_load_into_running(const revert_facts& f, const snapshot_record& rec,
                           operation_plan& steps) {
    json::array nodes;
    for (const auto& d : rec.disks) {
        if (d.how != disk_snapshot::mode::internal)
            continue;
        const auto live = f.live.find(d.disk);
        if (live == f.live.end())
            throw error(error_kind::drift, "cannot revert to snapshot '" + rec.name + "': disk '" +
                                               d.disk + "' is not attached to the running VM");
        const auto& node = live->second.node_name;
        const auto seen = f.node_snapshots.find(node);
        if (seen == f.node_snapshots.end() ||
            std::find(seen->second.begin(), seen->second.end(), rec.name) == seen->second.end())
            throw error(error_kind::drift, "cannot revert to snapshot '" + rec.name +
                                               "': qemu does not find it in the image of node " +
                                               node + " (run qmpkit snapshot check " + f.def.name +
                                               "). Nothing was changed.");
        nodes.emplace_back(node);
    }
    if (!f.snapshot_jobs) {
        steps.push_back(
            {hmp_command{"loadvm " + rec.name, "loadvm failed (the VM is left stopped)"}});
        return;
    }
    steps.push_back({qmp_job{"snapshot-load",
                             {{"job-id", f.host.job_id("load")},
                              {"tag", rec.name},
                              {"vmstate", nodes.front()},
                              {"devices", nodes}},
                             "loading " + rec.name,
                             "snapshot.load.job-"}});
}

// After a revert moved the VM off the files it wrote to, those that qmpkit made (overlays in the
// state directory) and that nothing names any more — no snapshot, reset point or definition —
// are removed: nothing can be built on a file nothing names.
std::vector<fs::path> abandoned_overlays(const revert_facts& f, const snapshot_tree& tree,
                                         const vm_definition& after) {
    std::vector<fs::path> named;
    for (const auto* r : tree.all())
        for (const auto& d : r->disks)
            for (const auto& file : {d.image, d.overlay})
                if (!file.empty())
                    named.push_back(file);
    for (const auto& p : f.points)
        for (const auto& d : p.disks)
            named.push_back(d.base);
    for (const auto& d : after.disks)
        named.push_back(d.file);
    const auto ours = fs::weakly_canonical(f.overlays_dir).string() + "/";
    std::vector<fs::path> abandoned;
    for (const auto& d : f.def.disks) {
        if (fs::weakly_canonical(d.file).string().rfind(ours, 0) != 0)
            continue;
        if (std::none_of(named.begin(), named.end(),
                         [&](const fs::path& n) { return same_file(n, d.file); }))
            abandoned.push_back(d.file);
    }
    return abandoned;
}

} // namespace

bool frozen_by_other(const snapshot_tree& tree, const std::string& except, const fs::path& file) {
    for (const auto* r : tree.all()) {
        if (r->name == except)
            continue;
        for (const auto& d : r->disks)
            if (d.how == disk_snapshot::mode::external && same_file(d.image, file))
                return true;
    }
    return false;
}

std::string configuration_difference(const vm_definition& then, const vm_definition& now) {
    if (then.disks.size() != now.disks.size())
        return "the snapshot has " + std::to_string(then.disks.size()) +
               " disk(s), the VM now has " + std::to_string(now.disks.size());
    for (const auto& d : then.disks)
        if (std::none_of(now.disks.begin(), now.disks.end(),
                         [&](auto& n) { return n.name == d.name; }))
            return "disk '" + d.name + "' of the snapshot is no longer attached";
    if (then.memory != now.memory)
        return "memory differs";
    if (then.cpus != now.cpus)
        return "CPU count differs";
    if (then.machine != now.machine)
        return "machine type differs";
    // These add or remove devices: qemu cannot load a state saved with another device set.
    if (then.guest_agent != now.guest_agent)
        return std::string("the guest agent was ") + (now.guest_agent ? "added" : "removed") +
               " since";
    if (then.command_channel != now.command_channel)
        return std::string("the command channel was ") +
               (now.command_channel ? "added" : "removed") + " since";
    if (then.reset.file_backed_memory() != now.reset.file_backed_memory())
        return "the RAM backend changed (reset.strategy)";
    return {};
}

revert_plan plan_revert(const revert_facts& f, const std::string& name,
                        const revert_request& request) {
    const auto& vm = f.def.name;
    const auto rec = f.tree.at(name);
    auto then = launcher::load_definition_from_string(rec.definition, f.definition_file);
    const auto difference = configuration_difference(then, f.def);
    if (!difference.empty() && !request.force)
        throw error(error_kind::config_mismatch,
                    "VM '" + vm + "' no longer matches snapshot '" + name + "': " + difference +
                        "; revert with --force to restore the snapshot's configuration");
    const auto wanted = wanted_state(request, rec.state);
    const bool internal = rec.location == snapshot_location::internal;
    const auto moves =
        internal ? internal_images_to_return_to(f, rec) : std::map<std::string, fs::path>{};
    then = with_active_files(std::move(then), moves);
    if (internal && rec.memory)
        require_no_shadowing(f.host, rec);

    auto after_tree = f.tree;
    after_tree.set_current(name);
    revert_plan plan;
    auto& journal = plan.journal;
    journal.operation = "revert";
    journal.snapshot = name;
    journal.pid = f.pid;
    journal.started_at = f.now;
    journal.was_running = f.state == vm_state::running && f.qemu_runs;
    journal.before_digest = f.metadata_digest;
    journal.after_metadata = metadata_store::serialize(after_tree);

    auto& steps = plan.steps;
    steps.push_back({journal_write{journal}});
    auto after_def = then; // what the VM runs on (or is recorded with) afterwards
    auto final_state = wanted;
    if (internal && rec.memory) {
        if (f.qemu_runs && difference.empty() && moves.empty()) {
            // The snapshot-load job resumes a guest that ran when it started: one that is to stay
            // paused is stopped first, so it never runs past the snapshot.
            if (wanted != vm_state::running && f.state == vm_state::running)
                steps.push_back({set_run_state{vm_state::paused}});
            add_load_into_running(f, rec, steps);
            after_def = f.def;
        } else {
            // A different configuration, disks to bring back to the images that hold the
            // snapshot, or no qemu at all: qemu starts on the snapshot's configuration and loads
            // the snapshot before the guest runs.
            if (f.qemu_runs)
                steps.push_back({stop_qemu{}});
            steps.push_back({start_qemu{then, {"-loadvm", name}, true}});
        }
        steps.push_back({set_run_state{wanted}});
    } else if (internal) {
        // Taken offline: disks only.
        if (f.qemu_runs)
            steps.push_back({stop_qemu{}});
        for (const auto& d : rec.disks)
            if (d.how == disk_snapshot::mode::internal)
                steps.push_back({image_snapshot_change{image_snapshot_change::kind::apply, d.image,
                                                       name, launcher::disk_key(then, d.disk)}});
        if (wanted != vm_state::shutoff)
            steps.push_back({start_qemu{then, {}, wanted == vm_state::paused}});
        else
            steps.push_back({definition_write{then}});
    } else {
        // External: a new, empty overlay over each frozen image, so that everything written
        // after the snapshot is left behind. The snapshot's own overlay file is reused unless
        // another snapshot froze it; then the new one goes to the state directory's overlays/.
        if (f.qemu_runs)
            steps.push_back({stop_qemu{}});
        std::map<std::string, fs::path> fresh;
        for (const auto& d : rec.disks) {
            if (d.how != disk_snapshot::mode::external)
                continue;
            auto target = d.overlay;
            if (frozen_by_other(f.tree, name, d.overlay))
                target = f.overlays_dir / (d.disk + ".r" + f.host.new_id() + ".qcow2");
            else
                steps.push_back({remove_file{d.overlay}});
            steps.push_back(
                {create_overlay{target, d.image, f.host.image_info(d.image).known_format(),
                                launcher::disk_key(then, d.disk)}});
            fresh[d.disk] = target;
        }
        then = with_active_files(std::move(then), fresh);
        after_def = then;
        if (rec.memory) {
            final_state = wanted == vm_state::shutoff ? vm_state::running : wanted;
            steps.push_back({start_qemu{then, {"-incoming", "defer"}, true}});
            steps.push_back({memory_load{rec.memory_file}});
            steps.push_back({set_run_state{final_state}});
        } else if (request.running || request.paused) {
            steps.push_back({start_qemu{then, {}, wanted == vm_state::paused}});
        } else {
            steps.push_back({definition_write{then}});
        }
    }
    steps.push_back({fault_point_step{"snapshot.revert.before-metadata"}});
    steps.push_back({metadata_write{after_tree}});
    steps.push_back({fault_point_step{"snapshot.revert.after-metadata"}});
    steps.push_back({journal_remove{}});
    for (auto& file : abandoned_overlays(f, after_tree, after_def))
        steps.push_back({remove_file{std::move(file)}});
    // The state was saved with the shares unmounted (share_mounts.hpp).
    if (rec.memory && final_state == vm_state::running && !after_def.shares.empty())
        steps.push_back({shares_mount_declared{}});
    return plan;
}

} // namespace qmpkit::snapshot::detail
