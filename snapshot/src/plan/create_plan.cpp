#include "create_plan.hpp"

#include <qmpkit/launcher/definition_loader.hpp>
#include <qmpkit/launcher/error.hpp>
#include <qmpkit/launcher/qemu_command.hpp>
#include <qmpkit/snapshot/error.hpp>
#include <qmpkit/snapshot/metadata_store.hpp>

#include <boost/json.hpp>

#include <algorithm>

namespace qmpkit::snapshot::detail {

namespace {

namespace json = boost::json;
namespace fs = std::filesystem;
using launcher::vm_definition;

// One disk's part in the snapshot.
struct disk_part {
    std::string disk;
    disk_snapshot::mode how;
    fs::path image;   // the file that holds the snapshot (internal) or is frozen (external)
    fs::path overlay; // external: the new overlay
    std::string node; // the top node now (internal) / the overlay's node (external)
    std::string top_node;
    std::optional<launcher::disk_encryption> key; // an encrypted disk's, for all its layers
};

std::vector<disk_part> disk_parts(const create_facts& f, const create_request& request,
                                  bool external, const std::string& name) {
    const auto& def = f.def;
    for (const auto& c : request.disks)
        if (std::none_of(def.disks.begin(), def.disks.end(),
                         [&](auto& d) { return d.name == c.disk; }))
            throw error(error_kind::not_found,
                        "--diskspec names disk '" + c.disk + "', which the VM does not have");
    std::vector<disk_part> parts;
    for (const auto& d : def.disks) {
        auto choice = std::find_if(request.disks.begin(), request.disks.end(),
                                   [&](auto& c) { return c.disk == d.name; });
        disk_part p;
        p.disk = d.name;
        p.how = external ? disk_snapshot::mode::external : disk_snapshot::mode::internal;
        if (choice != request.disks.end())
            p.how = choice->how;
        if (d.read_only)
            p.how = disk_snapshot::mode::excluded; // nothing changes on it
        p.image = d.file;
        p.top_node = d.node_name;
        p.key = d.encryption;
        if (f.qemu_runs) {
            auto it = f.live.find(d.name);
            if (it == f.live.end())
                throw error(error_kind::drift,
                            "disk '" + d.name +
                                "' is in the definition but not attached to the running VM");
            p.image = it->second.file;
            p.top_node = it->second.node_name;
        }
        p.node = p.top_node;
        if (p.how == disk_snapshot::mode::external) {
            if (choice != request.disks.end() && !choice->overlay.empty())
                p.overlay = fs::absolute(choice->overlay);
            else
                p.overlay =
                    p.image.parent_path() / (def.name + "-" + d.name + "." + name + ".qcow2");
            p.node = "ov" + f.host.new_id();
        }
        parts.push_back(std::move(p));
    }
    return parts;
}

// Why an internal snapshot named `name` cannot go into the images of `parts`: an image holds a
// snapshot of that name already (snapshot-save would refuse it, savevm replace it: either way
// the metadata would lie), or `name` is the id of another snapshot there, which loads would
// pick instead (see shadowing_snapshot).
std::optional<std::string> tag_problem(const plan_host& host, const std::vector<disk_part>& parts,
                                       const std::string& name) {
    for (const auto& d : parts) {
        if (d.how != disk_snapshot::mode::internal)
            continue;
        const auto snapshots = host.image_info(d.image).snapshots;
        for (const auto& s : snapshots)
            if (s.name == name)
                return "image " + d.image.string() + " already holds a snapshot named '" + name +
                       "' that qmpkit does not know (see `qmpkit snapshot check`)";
        if (auto other = shadowing_snapshot(snapshots, name))
            return "'" + name + "' is the id of an existing snapshot in " + d.image.string() +
                   " (named '" + other->name +
                   "'): qemu looks ids up before names, so loading it would load that snapshot; "
                   "choose another name";
    }
    return std::nullopt;
}

std::string fix_for_raw(const vm_definition& def) {
    std::string text;
    for (const auto& d : def.disks) {
        if (d.format != launcher::disk_format::raw || d.read_only)
            continue;
        auto target = d.file;
        target.replace_extension(".qcow2");
        text += "\n  disk '" + d.name + "' (" + d.file.string() +
                ") is raw: convert it with\n    qmpkit disk convert " + d.file.string() + " " +
                target.string() + "\n  and point the definition's disk at the new file";
    }
    return text;
}

void require_whole_guest(const create_facts& f) {
    // A failed loadvm leaves qemu in restore-vm with the guest half-loaded: saving that state
    // would keep garbage, and a migration from it makes qemu abort.
    if (f.run_state == "restore-vm")
        throw error(error_kind::unsupported,
                    "cannot take a snapshot: VM '" + f.def.name +
                        "' is in qemu run state 'restore-vm' (a revert failed half-way, so its "
                        "guest state is not whole); revert to a snapshot again, or restart it "
                        "(qmpkit destroy, qmpkit start)");
}

json::object transaction_for(const std::vector<disk_part>& parts) {
    json::array actions;
    for (const auto& d : parts) {
        if (d.how != disk_snapshot::mode::external)
            continue;
        if (d.key) { // its encrypted overlay is added beforehand (blockdev-add)
            actions.push_back({{"type", "blockdev-snapshot"},
                               {"data", {{"node", d.top_node}, {"overlay", d.node}}}});
            continue;
        }
        actions.push_back({{"type", "blockdev-snapshot-sync"},
                           {"data",
                            {{"node-name", d.top_node},
                             {"snapshot-file", d.overlay.string()},
                             {"snapshot-node-name", d.node},
                             {"format", "qcow2"}}}});
    }
    return {{"actions", std::move(actions)}};
}

std::optional<launcher::disk_format> format_of(const plan_host& host, const fs::path& image) {
    return host.image_info(image).known_format();
}

// A running VM, internal: one snapshot-save job (savevm before qemu 6.0) over every internal
// disk, the VM state in the first.
void add_internal_running(const create_facts& f, const snapshot_record& record,
                          const std::vector<disk_part>& parts, operation_plan& steps) {
    json::array nodes;
    for (const auto& d : parts)
        if (d.how == disk_snapshot::mode::internal)
            nodes.emplace_back(d.node);
    if (nodes.empty())
        throw error(error_kind::unsupported, "no writable disk to hold the snapshot");
    if (!f.snapshot_jobs) {
        steps.push_back({hmp_command{"savevm " + record.name, "savevm failed"}});
        return;
    }
    const auto job = f.host.job_id("save");
    steps.push_back({qmp_job{
        "snapshot-save",
        {{"job-id", job}, {"tag", record.name}, {"vmstate", nodes.front()}, {"devices", nodes}},
        "saving " + record.name,
        "snapshot.save.job-"}});
}

// A shut-off VM, internal: qemu-img snapshot -c on each disk, all or none.
void add_internal_offline(const snapshot_record& record, const std::vector<disk_part>& parts,
                          operation_plan& steps) {
    const auto first = steps.size();
    for (const auto& d : parts)
        if (d.how == disk_snapshot::mode::internal)
            steps.push_back({image_snapshot_change{image_snapshot_change::kind::create, d.image,
                                                   record.name, d.key, "snapshotting " + d.disk},
                             image_snapshot_change{image_snapshot_change::kind::remove, d.image,
                                                   record.name, d.key}});
    if (steps.size() > first)
        steps.back().settles = true; // every disk holds it now
}

// A running VM, external: the overlays in one transaction, after the memory where asked.
void add_external_running(const create_facts& f, const snapshot_record& record,
                          const std::vector<disk_part>& parts, const create_request& request,
                          operation_plan& steps) {
    auto actions = transaction_for(parts);
    if (actions.at("actions").as_array().empty())
        throw error(error_kind::unsupported, "no disk is chosen for an external snapshot");
    // Encrypted disks' overlays are made by qemu-img, encrypted with the disk's key, and added
    // for the transaction's blockdev-snapshot: blockdev-snapshot-sync would make them in clear.
    for (const auto& d : parts) {
        if (d.how != disk_snapshot::mode::external || !d.key)
            continue;
        const auto disk = std::find_if(f.def.disks.begin(), f.def.disks.end(),
                                       [&](auto& x) { return x.name == d.disk; });
        steps.push_back({create_overlay{d.overlay, d.image, format_of(f.host, d.image), d.key},
                         remove_file{d.overlay}});
        for (const auto& node : launcher::overlay_block_nodes(*disk, d.overlay, d.node))
            steps.push_back({qmp_command{"blockdev-add", node},
                             qmp_command{"blockdev-del", {{"node-name", node.at("node-name")}}}});
    }
    const bool was_running = f.state == vm_state::running;
    if (request.memory_file) {
        // Migration ends with the VM paused (postmigrate): RAM and disks are taken at that one
        // point.
        steps.push_back(
            {memory_save{record.memory_file, "saving memory of " + record.name, "snapshot.memory"},
             remove_file{record.memory_file}});
        steps.push_back({fault_point_step{"snapshot.memory.after-migration"}});
    }
    // --quiesce: frozen for the transaction only (the executor thaws a guest it froze also when
    // the transaction fails).
    if (request.quiesce)
        steps.push_back({guest_freeze_step{}});
    steps.push_back({fault_point_step{"snapshot.external.before-transaction"}});
    // The block graph changes all or nothing; the files a failed transaction made are removed
    // by the journal's resolution.
    plan_step transaction{qmp_command{"transaction", std::move(actions),
                                      "the disk snapshot transaction failed, nothing was changed"}};
    transaction.settles = true;
    steps.push_back(std::move(transaction));
    if (request.quiesce)
        steps.push_back({guest_thaw{}});
    steps.push_back({fault_point_step{"snapshot.external.after-transaction"}});
    if (request.memory_file && was_running)
        steps.push_back({qmp_command{"cont"}});
}

// A shut-off VM, external: qemu-img create of each overlay.
void add_external_offline(const create_facts& f, const std::vector<disk_part>& parts,
                          operation_plan& steps) {
    const auto first = steps.size();
    for (const auto& d : parts)
        if (d.how == disk_snapshot::mode::external)
            steps.push_back({create_overlay{d.overlay, d.image, format_of(f.host, d.image), d.key,
                                            "creating overlay for " + d.disk},
                             remove_file{d.overlay}});
    if (steps.size() > first)
        steps.back().settles = true;
}

} // namespace

create_plan plan_create(const create_facts& f, const create_request& request) {
    const auto& vm = f.def.name;
    create_plan plan;
    auto& record = plan.record;
    const bool default_named = request.name.empty();
    // virsh names a snapshot after its creation time in seconds; "snapshot-<seconds>" when that
    // is taken (two in one second) or is an id in an image.
    record.name = default_named ? std::to_string(f.now) : request.name;
    require_valid_snapshot_name(record.name);
    if (default_named && f.tree.contains(record.name))
        record.name = "snapshot-" + record.name;
    if (f.tree.contains(record.name))
        throw error(error_kind::name_taken,
                    "VM '" + vm + "' already has a snapshot named '" + record.name + "'");
    const bool external = request.disk_only || request.memory_file.has_value();
    if (request.quiesce && (!request.disk_only || request.memory_file || !f.qemu_runs))
        throw error(error_kind::unsupported,
                    "--quiesce needs a disk-only snapshot (--disk-only) of a running VM");
    if (request.memory_file && !f.qemu_runs)
        throw error(error_kind::not_running,
                    "a snapshot with memory needs VM '" + vm + "' running");
    require_whole_guest(f);
    if (!external) {
        try {
            launcher::require_qcow2(f.def);
        } catch (const launcher::error& e) {
            throw error(error_kind::unsupported,
                        std::string("internal snapshots need qcow2 disks:\n") + e.what() +
                            fix_for_raw(f.def));
        }
    }
    record.description = request.description;
    record.created_at = f.now;
    record.state = f.state;
    record.location = external ? snapshot_location::external : snapshot_location::internal;
    record.memory = f.qemu_runs && (!external || request.memory_file);
    record.parent = f.tree.current();
    record.quiesced = request.quiesce;
    record.definition = launcher::dump_definition(f.def);

    auto parts = disk_parts(f, request, external, record.name);
    auto problem = tag_problem(f.host, parts, record.name);
    if (problem && default_named && !record.name.starts_with("snapshot-") &&
        !f.tree.contains("snapshot-" + record.name)) {
        record.name = "snapshot-" + record.name;
        parts = disk_parts(f, request, external, record.name);
        problem = tag_problem(f.host, parts, record.name);
    }
    if (problem)
        throw error(error_kind::name_taken, *problem);
    for (const auto& d : parts)
        if (d.how == disk_snapshot::mode::external && f.host.exists(d.overlay))
            throw error(error_kind::name_taken,
                        "overlay " + d.overlay.string() + " already exists");
    for (const auto& d : parts) {
        disk_snapshot ds;
        ds.disk = d.disk;
        ds.how = d.how;
        ds.image = d.image;
        ds.overlay = d.overlay;
        ds.node_name = d.node;
        record.disks.push_back(ds);
    }
    if (request.memory_file)
        record.memory_file = fs::absolute(*request.memory_file);

    // What the operation will leave behind, written down before anything changes: a crash in
    // between is then finished or taken back by `snapshot check --repair` (and by the failure
    // path), never guessed at.
    std::map<std::string, fs::path> overlays; // the VM writes to them next: restarts use them
    for (const auto& d : parts)
        if (d.how == disk_snapshot::mode::external)
            overlays[d.disk] = d.overlay;
    const auto after_def = with_active_files(f.def, overlays);
    auto after_tree = f.tree;
    if (!request.no_metadata) {
        after_tree.add(record);
        after_tree.set_current(record.name);
    }
    auto& journal = plan.journal;
    journal.operation = external ? "create-external" : "create-internal";
    journal.snapshot = record.name;
    journal.pid = f.pid;
    journal.started_at = f.now;
    journal.was_running = f.state == vm_state::running && f.qemu_runs;
    journal.before_digest = f.metadata_digest;
    journal.after_metadata = metadata_store::serialize(after_tree);
    if (external)
        journal.after_definition = launcher::dump_definition(after_def);
    for (const auto& d : parts) {
        if (d.how == disk_snapshot::mode::internal)
            journal.tags.push_back({d.image, record.name});
        else if (d.how == disk_snapshot::mode::external)
            journal.overlays.push_back({d.disk, d.image, d.overlay});
    }
    if (request.memory_file)
        journal.creates.push_back(record.memory_file);

    auto& steps = plan.steps;
    // Before anything changes: a mounted 9p share would make qemu refuse to save the memory.
    const bool unmount_shares = record.memory && !f.def.shares.empty();
    if (unmount_shares)
        steps.push_back(
            {shares_unmount{f.state == vm_state::running, "take a snapshot with memory"}});
    steps.push_back({journal_write{journal}});
    if (!external && f.qemu_runs)
        add_internal_running(f, record, parts, steps);
    else if (!external)
        add_internal_offline(record, parts, steps);
    else if (f.qemu_runs)
        add_external_running(f, record, parts, request, steps);
    else
        add_external_offline(f, parts, steps);
    if (external)
        steps.push_back({definition_write{after_def}});
    const std::string fault = external ? "snapshot.external" : "snapshot.save";
    steps.push_back({fault_point_step{fault + ".before-metadata"}});
    if (!request.no_metadata)
        steps.push_back({metadata_write{std::move(after_tree)}});
    steps.push_back({fault_point_step{fault + ".after-metadata"}});
    steps.push_back({journal_remove{}});
    if (unmount_shares)
        steps.push_back({shares_remount{}});
    if (request.halt && f.qemu_runs)
        steps.push_back({stop_qemu{}});
    return plan;
}

} // namespace qmpkit::snapshot::detail
