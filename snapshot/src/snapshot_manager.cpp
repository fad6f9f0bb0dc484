#include "free_space.hpp"
#include "guest_freeze.hpp"
#include "interrupted_operation.hpp"
#include "memory_state.hpp"
#include "operation_journal.hpp"
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

// virsh names a snapshot after its creation time in seconds. create() falls back to
// "snapshot-<seconds>" when that name is taken (two in one second) or is an id in an image.
std::string default_name() {
    return std::to_string(now_seconds());
}

// What differs between the configuration a snapshot was taken with and the current one, in the
// words virsh uses ("disk count 2 does not match 1"); empty when they match.
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

std::string fix_for_raw(const launcher::vm_definition& def) {
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

// --- create ------------------------------------------------------------------------------------

namespace {

struct disk_plan {
    std::string disk;
    disk_snapshot::mode how;
    fs::path image;   // the file that holds the snapshot (internal) or is frozen (external)
    fs::path overlay; // external: the new overlay
    std::string node; // the top node now (internal) / the overlay's node (external)
    std::string top_node;
    std::optional<launcher::disk_encryption> key; // an encrypted disk's, for all its layers
};

std::vector<disk_plan>
plan_disks(const vm_definition& def, const create_request& request, bool external,
           const std::optional<std::map<std::string, launcher::block_device>>& live,
           const std::string& name) {
    for (const auto& c : request.disks)
        if (std::none_of(def.disks.begin(), def.disks.end(),
                         [&](auto& d) { return d.name == c.disk; }))
            throw error(error_kind::not_found,
                        "--diskspec names disk '" + c.disk + "', which the VM does not have");
    std::vector<disk_plan> plans;
    for (const auto& d : def.disks) {
        auto choice = std::find_if(request.disks.begin(), request.disks.end(),
                                   [&](auto& c) { return c.disk == d.name; });
        disk_plan p;
        p.disk = d.name;
        p.how = external ? disk_snapshot::mode::external : disk_snapshot::mode::internal;
        if (choice != request.disks.end())
            p.how = choice->how;
        if (d.read_only)
            p.how = disk_snapshot::mode::excluded; // nothing changes on it
        p.image = d.file;
        p.top_node = d.node_name;
        p.key = d.encryption;
        if (live) {
            auto it = live->find(d.name);
            if (it == live->end())
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
            p.node = "ov" + hex_id();
        }
        plans.push_back(std::move(p));
    }
    return plans;
}

json::object transaction_for(const std::vector<disk_plan>& disks) {
    json::array actions;
    for (const auto& d : disks) {
        if (d.how != disk_snapshot::mode::external)
            continue;
        if (d.key) { // its encrypted overlay is in place already (add_encrypted_overlays)
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

json::object command(const std::string& name, json::object arguments = {}) {
    json::object c{{"execute", name}};
    if (!arguments.empty())
        c["arguments"] = std::move(arguments);
    return c;
}

// qemu reports a full disk during a save as "Input/output error": say what is likely behind it.
std::string space_hint(const vm_definition& def, const std::vector<disk_plan>& disks) {
    for (const auto& d : disks) {
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

// Why an internal snapshot named `name` cannot go into the images of `disks`: an image holds a
// snapshot of that name already (snapshot-save would refuse it, savevm replace it: either way
// the metadata would lie), or `name` is the id of another snapshot there, which loads would
// pick instead (see shadowing_snapshot).
std::optional<std::string> tag_problem(const launcher::qemu_img& img,
                                       const std::vector<disk_plan>& disks,
                                       const std::string& name) {
    for (const auto& d : disks) {
        if (d.how != disk_snapshot::mode::internal)
            continue;
        const auto snapshots = img.info(d.image).snapshots;
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

void create_internal_running(vm_context& ctx, snapshot_record& record,
                             const std::vector<disk_plan>& disks) {
    auto& qmp = *ctx.qmp;
    std::vector<std::string> nodes;
    for (const auto& d : disks)
        if (d.how == disk_snapshot::mode::internal)
            nodes.push_back(d.node);
    if (nodes.empty())
        throw error(error_kind::unsupported, "no writable disk to hold the snapshot");
    auto progress = [&](double f) { ctx.report("saving " + record.name, f); };
    if (detail::has_snapshot_jobs(qmp)) {
        const auto job = detail::make_job_id("save");
        detail::job_options o;
        o.progress = progress;
        o.on_status = [&](const std::string& status) {
            if (status == "running")
                launcher::fault_point("snapshot.save.job-running", ctx.dir);
        };
        try {
            detail::run_job(qmp, "snapshot-save",
                            {{"job-id", job},
                             {"tag", record.name},
                             {"vmstate", nodes.front()},
                             {"devices", json::value_from(nodes)}},
                            job, o);
        } catch (const error& e) {
            throw error(e.kind(), e.what() + space_hint(ctx.def, disks));
        }
    } else {
        // qemu before 6.0: HMP, which answers errors as text (client::hmp turns them into errors).
        try {
            qmp.hmp("savevm " + record.name);
        } catch (const qmp::error& e) {
            throw error(error_kind::other, std::string("savevm failed: ") + e.what());
        }
    }
}

void create_internal_offline(vm_context& ctx, snapshot_record& record,
                             const std::vector<disk_plan>& disks, const launcher::qemu_img& img) {
    std::vector<const disk_plan*> done;
    try {
        for (const auto& d : disks) {
            if (d.how != disk_snapshot::mode::internal)
                continue;
            ctx.report("snapshotting " + d.disk, static_cast<double>(done.size()) / disks.size());
            img.snapshot_create(d.image, record.name, d.key);
            done.push_back(&d);
        }
    } catch (...) {
        // All disks or none: take it back from the disks that have it already.
        for (const auto* p : done) {
            try {
                img.snapshot_delete(p->image, record.name, p->key);
            } catch (const std::exception&) {
            }
        }
        throw;
    }
}

void remove_new_files(const std::vector<disk_plan>& disks, const std::set<fs::path>& existed) {
    for (const auto& d : disks) {
        if (d.how == disk_snapshot::mode::external && !existed.count(d.overlay)) {
            std::error_code ignored;
            fs::remove(d.overlay, ignored);
        }
    }
}

// Encrypted disks' overlays are made by qemu-img, encrypted with the disk's key, and added with
// blockdev-add for the transaction's blockdev-snapshot: blockdev-snapshot-sync would create them
// unencrypted. On failure nothing of them is left.
void remove_encrypted_overlays(qmp::client& qmp, const std::vector<disk_plan>& disks) {
    for (const auto& d : disks) {
        if (d.how != disk_snapshot::mode::external || !d.key)
            continue;
        for (const auto& node : {d.node, d.node + "-file"}) {
            try {
                qmp.execute("blockdev-del", {{"node-name", node}});
            } catch (const qmp::error&) {
            }
        }
    }
}

void add_encrypted_overlays(vm_context& ctx, const std::vector<disk_plan>& disks,
                            const std::set<fs::path>& existed) {
    const launcher::qemu_img img;
    try {
        for (const auto& d : disks) {
            if (d.how != disk_snapshot::mode::external || !d.key)
                continue;
            const auto disk = std::find_if(ctx.def.disks.begin(), ctx.def.disks.end(),
                                           [&](auto& x) { return x.name == d.disk; });
            img.create(d.overlay, launcher::disk_format::qcow2, std::nullopt, d.image,
                       img.info(d.image).known_format(), d.key);
            for (const auto& node : launcher::overlay_block_nodes(*disk, d.overlay, d.node))
                ctx.qmp->execute("blockdev-add", node);
        }
    } catch (...) {
        remove_encrypted_overlays(*ctx.qmp, disks);
        remove_new_files(disks, existed);
        throw;
    }
}

void create_external_running(vm_context& ctx, snapshot_record& record,
                             const std::vector<disk_plan>& disks, const create_request& request) {
    auto& qmp = *ctx.qmp;
    auto actions = transaction_for(disks);
    if (actions.at("actions").as_array().empty())
        throw error(error_kind::unsupported, "no disk is chosen for an external snapshot");
    const bool was_running = ctx.state == vm_state::running;
    std::set<fs::path> existed;
    for (const auto& d : disks)
        if (fs::exists(d.overlay))
            existed.insert(d.overlay);
    add_encrypted_overlays(ctx, disks, existed);
    if (request.memory_file) {
        // Migration ends with the VM paused (postmigrate): RAM and disks are taken at that one
        // point.
        detail::save_memory(
            qmp, *request.memory_file,
            [&](double f) { ctx.report("saving memory of " + record.name, f); },
            [&](std::string_view step) {
                launcher::fault_point("snapshot.memory." + std::string(step), ctx.dir);
            },
            ctx.dir.path());
        launcher::fault_point("snapshot.memory.after-migration", ctx.dir);
    }
    try {
        // --quiesce: frozen for the transaction only; thawed on leaving this block, also when the
        // transaction throws.
        std::optional<detail::guest_freeze> frozen;
        if (request.quiesce)
            frozen.emplace(ctx.dir, ctx.def, ctx.options->logger);
        launcher::fault_point("snapshot.external.before-transaction", ctx.dir);
        qmp.execute("transaction", actions);
    } catch (const qmp::error& e) {
        // The block graph is all-or-nothing, but files made by earlier actions stay: remove them.
        remove_encrypted_overlays(qmp, disks);
        remove_new_files(disks, existed);
        if (request.memory_file) {
            std::error_code ignored;
            fs::remove(*request.memory_file, ignored);
        }
        if (was_running)
            qmp.execute("cont");
        throw error(error_kind::other,
                    std::string("the disk snapshot transaction failed, nothing was changed: ") +
                        e.what());
    }
    launcher::fault_point("snapshot.external.after-transaction", ctx.dir);
    if (request.memory_file && was_running)
        qmp.execute("cont");
}

void create_external_offline(vm_context& ctx, snapshot_record& record,
                             const std::vector<disk_plan>& disks, const launcher::qemu_img& img) {
    (void)record;
    std::vector<fs::path> made;
    try {
        for (const auto& d : disks) {
            if (d.how != disk_snapshot::mode::external)
                continue;
            ctx.report("creating overlay for " + d.disk, 0);
            img.create(d.overlay, launcher::disk_format::qcow2, std::nullopt, d.image,
                       img.info(d.image).known_format(), d.key);
            made.push_back(d.overlay);
        }
    } catch (...) {
        for (const auto& f : made) {
            std::error_code ignored;
            fs::remove(f, ignored);
        }
        throw;
    }
}

} // namespace

std::vector<json::object> snapshot_manager::plan(const create_request& request) {
    vm_context ctx(vm_, options_, "planning a snapshot");
    const auto name = request.name.empty() ? default_name() : request.name;
    const bool external = request.disk_only || request.memory_file;
    std::optional<std::map<std::string, launcher::block_device>> live;
    if (ctx.running())
        live = live_disks(*ctx.qmp);
    auto disks = plan_disks(ctx.def, request, external, live, name);
    std::vector<json::object> plan;
    if (!ctx.running()) {
        for (const auto& d : disks)
            if (d.how != disk_snapshot::mode::excluded)
                plan.push_back(
                    {{"qemu-img", external
                                      ? json::array{"create", "-f", "qcow2", "-b", d.image.string(),
                                                    "-F", "qcow2", d.overlay.string()}
                                      : json::array{"snapshot", "-c", name, d.image.string()}}});
        return plan;
    }
    if (!external) {
        json::array devices;
        for (const auto& d : disks)
            if (d.how == disk_snapshot::mode::internal)
                devices.push_back(json::value(d.node));
        plan.push_back(command("snapshot-save",
                               {{"job-id", "qmpkit-save"},
                                {"tag", name},
                                {"vmstate", devices.empty() ? json::value() : devices.front()},
                                {"devices", devices}}));
        return plan;
    }
    if (request.memory_file) {
        plan.push_back(command("getfd", {{"fdname", "qmpkit-memory"}}));
        plan.push_back(
            command("migrate-set-parameters", {{"max-bandwidth", std::int64_t{1} << 40}}));
        plan.push_back(command("migrate", {{"uri", "fd:qmpkit-memory"}}));
    }
    plan.push_back(command("transaction", transaction_for(disks)));
    if (request.memory_file && ctx.state == vm_state::running)
        plan.push_back(command("cont"));
    return plan;
}

snapshot_record snapshot_manager::create(const create_request& request) {
    vm_context ctx(vm_, options_, "creating a snapshot");
    detail::require_no_interrupted_operation(ctx.dir);
    snapshot_record record;
    const bool default_named = request.name.empty();
    record.name = default_named ? default_name() : request.name;
    require_valid_snapshot_name(record.name);
    if (default_named && ctx.tree.contains(record.name))
        record.name = "snapshot-" + record.name;
    if (ctx.tree.contains(record.name))
        throw error(error_kind::name_taken,
                    "VM '" + vm_ + "' already has a snapshot named '" + record.name + "'");
    const bool external = request.disk_only || request.memory_file.has_value();
    if (request.quiesce && (!request.disk_only || request.memory_file || !ctx.running()))
        throw error(error_kind::unsupported,
                    "--quiesce needs a disk-only snapshot (--disk-only) of a running VM");
    if (request.memory_file && !ctx.running())
        throw error(error_kind::not_running,
                    "a snapshot with memory needs VM '" + vm_ + "' running");
    ctx.require_whole_guest("take a snapshot");
    if (!external) {
        try {
            launcher::require_qcow2(ctx.def);
        } catch (const launcher::error& e) {
            throw error(error_kind::unsupported,
                        std::string("internal snapshots need qcow2 disks:\n") + e.what() +
                            fix_for_raw(ctx.def));
        }
    }
    record.description = request.description;
    record.created_at = now_seconds();
    record.state = ctx.state;
    record.location = external ? snapshot_location::external : snapshot_location::internal;
    record.memory = ctx.running() && (!external || request.memory_file);
    record.parent = ctx.tree.current();
    record.quiesced = request.quiesce;
    record.definition = launcher::dump_definition(ctx.def);

    std::optional<std::map<std::string, launcher::block_device>> live;
    if (ctx.running())
        live = live_disks(*ctx.qmp);
    auto disks = plan_disks(ctx.def, request, external, live, record.name);
    const launcher::qemu_img img;

    auto problem = tag_problem(img, disks, record.name);
    if (problem && default_named && !record.name.starts_with("snapshot-") &&
        !ctx.tree.contains("snapshot-" + record.name)) {
        record.name = "snapshot-" + record.name;
        disks = plan_disks(ctx.def, request, external, live, record.name);
        problem = tag_problem(img, disks, record.name);
    }
    if (problem)
        throw error(error_kind::name_taken, *problem);
    for (const auto& d : disks)
        if (d.how == disk_snapshot::mode::external && fs::exists(d.overlay))
            throw error(error_kind::name_taken,
                        "overlay " + d.overlay.string() + " already exists");

    for (const auto& d : disks) {
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
    // path below), never guessed at.
    auto after_def = ctx.def;
    if (external) {
        // The VM now writes to the overlays: restarts must use them.
        for (auto& disk : after_def.disks)
            for (const auto& d : disks)
                if (d.disk == disk.name && d.how == disk_snapshot::mode::external) {
                    disk.file = d.overlay;
                    disk.format = launcher::disk_format::qcow2;
                    disk.size.reset();
                    disk.backing.reset();
                }
    }
    auto after_tree = ctx.tree;
    if (!request.no_metadata) {
        after_tree.add(record);
        after_tree.set_current(record.name);
    }
    detail::operation_journal journal;
    journal.operation = external ? "create-external" : "create-internal";
    journal.snapshot = record.name;
    journal.pid = ::getpid();
    journal.started_at = now_seconds();
    journal.was_running = ctx.state == vm_state::running && ctx.running();
    journal.before_digest = detail::digest_of_file(metadata_store(ctx.dir).path());
    journal.after_metadata = metadata_store::serialize(after_tree);
    if (external)
        journal.after_definition = launcher::dump_definition(after_def);
    for (const auto& d : disks) {
        if (d.how == disk_snapshot::mode::internal)
            journal.tags.push_back({d.image, record.name});
        else if (d.how == disk_snapshot::mode::external)
            journal.overlays.push_back({d.disk, d.image, d.overlay});
    }
    if (request.memory_file)
        journal.creates.push_back(record.memory_file);
    // Before anything changes: a mounted 9p share would make qemu refuse to save the memory.
    std::optional<detail::shares_unmounted> shares;
    if (record.memory)
        shares.emplace(ctx.dir, ctx.def, *ctx.qmp, ctx.state == vm_state::running,
                       "take a snapshot with memory", ctx.options->logger);
    detail::write_journal(ctx.dir, journal);
    const std::string step = external ? "snapshot.external" : "snapshot.save";

    try {
        if (!external && ctx.running())
            create_internal_running(ctx, record, disks);
        else if (!external)
            create_internal_offline(ctx, record, disks, img);
        else if (ctx.running())
            create_external_running(ctx, record, disks, request);
        else
            create_external_offline(ctx, record, disks, img);

        if (external) {
            ctx.def = after_def;
            ctx.save_definition();
        }
        launcher::fault_point(step + ".before-metadata", ctx.dir);
        if (!request.no_metadata) {
            ctx.tree = std::move(after_tree);
            ctx.save_tree();
        }
        launcher::fault_point(step + ".after-metadata", ctx.dir);
    } catch (const std::exception& e) {
        detail::resolve_after_failure(ctx, journal);
        // Where the snapshot was to go, and where its records go: the one that is full.
        std::vector<fs::path> places{ctx.dir.path()};
        for (const auto& d : disks)
            places.push_back(d.how == disk_snapshot::mode::external ? d.overlay : d.image);
        if (request.memory_file)
            places.push_back(record.memory_file);
        if (const auto hint = detail::full_file_system_hint(places); !hint.empty())
            throw error(error_kind::other, e.what() + hint);
        throw;
    }
    detail::remove_journal(ctx.dir);
    if (shares)
        shares->remount();
    if (request.halt && ctx.running())
        ctx.stop_vm();
    return record;
}

// --- revert ------------------------------------------------------------------------------------

namespace {

// The node of the running block graph whose image is `file` (a format node, not the protocol one).
std::optional<std::string> node_of(qmp::client& qmp, const fs::path& file) {
    if (auto n = launcher::format_node_of(qmp, file))
        return n->node_name;
    return std::nullopt;
}

// Whether another external snapshot than `except` relies on `file` staying as it is. Internal
// snapshots do not freeze their image: qcow2 keeps them intact under later writes.
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

// A new, empty overlay over the snapshot's frozen image: everything written after the snapshot
// is left behind. Reuses the snapshot's own overlay file unless another snapshot froze it; then
// the new one goes to the state directory's overlays/, where qmpkit tidies up what it made.
fs::path fresh_overlay(const vm_context& ctx, const snapshot_record& rec, const disk_snapshot& d,
                       const launcher::qemu_img& img,
                       const std::optional<launcher::disk_encryption>& key) {
    fs::path target = d.overlay;
    if (frozen_by_other(ctx.tree, rec.name, d.overlay)) {
        fs::create_directories(ctx.dir.overlays());
        target = ctx.dir.overlays() / (d.disk + ".r" + hex_id() + ".qcow2");
    } else {
        std::error_code ignored;
        fs::remove(d.overlay, ignored);
    }
    img.create(target, launcher::disk_format::qcow2, std::nullopt, d.image,
               img.info(d.image).known_format(), key);
    return target;
}

// The file each disk of the VM writes to now: qemu's active layer while it runs, else the
// definition's (which names the overlay a reset point or a reset left it on).
std::map<std::string, fs::path> active_files(vm_context& ctx) {
    std::map<std::string, fs::path> files;
    if (ctx.running())
        for (const auto& [name, d] : live_disks(*ctx.qmp))
            files[name] = d.file;
    else
        for (const auto& d : ctx.def.disks)
            files[d.name] = d.file;
    return files;
}

// What relies on `image` staying as it is, in words for an error message: an external snapshot
// built its overlay on it, or a reset point's frozen disk is this image. Empty when nothing does.
std::string what_freezes(const vm_context& ctx, const fs::path& image) {
    for (const auto* r : ctx.tree.all())
        for (const auto& d : r->disks)
            if (d.how == disk_snapshot::mode::external && same_file(d.image, image))
                return "external snapshot '" + r->name + "' froze it (delete '" + r->name +
                       "' first: qmpkit snapshot delete " + ctx.dir.vm_name() + " " + r->name +
                       " merges its overlay into the image; or revert to '" + r->name + "')";
    for (const auto& p : vm_reset(ctx.dir.vm_name(), *ctx.options).points())
        for (const auto& d : p.disks)
            if (same_file(d.base, image))
                return "reset point '" + p.name +
                       "' froze it (delete the reset point first: " + "qmpkit reset-point delete " +
                       ctx.dir.vm_name() + " " + p.name + "; or reset to it: qmpkit reset " +
                       ctx.dir.vm_name() + " " + p.name + ")";
    return {};
}

// An internal snapshot lives in the image that was the disk's active layer when it was taken.
// Since then a reset point, a reset or an external snapshot may have put an overlay on top:
// qemu's snapshot-load looks only at the active layer and would fail half-way (run state
// restore-vm). Such a revert restarts qemu on the image that holds the snapshot, which is safe
// only while nothing else relies on that image's present contents: refuse otherwise, before
// anything changes. Returns the disks whose active layer must move back, empty for none.
std::map<std::string, fs::path> internal_images_to_return_to(vm_context& ctx,
                                                             const snapshot_record& rec) {
    const auto active = active_files(ctx);
    std::map<std::string, fs::path> moves;
    for (const auto& d : rec.disks) {
        if (d.how != disk_snapshot::mode::internal)
            continue;
        const auto now = active.find(d.disk);
        if (now != active.end() && same_file(now->second, d.image))
            continue;
        if (const auto why = what_freezes(ctx, d.image); !why.empty())
            throw error(error_kind::unsupported,
                        "cannot revert VM '" + ctx.dir.vm_name() + "' to snapshot '" + rec.name +
                            "': it lives in " + d.image.string() + " (disk '" + d.disk +
                            "'), under the overlay the VM runs on now, and " + why +
                            ". Nothing was changed.");
        moves[d.disk] = d.image;
    }
    return moves;
}

// Whether qemu sees internal snapshot `tag` in the image of `node`: checked before a load so
// that a missing snapshot is an error and not a half-loaded guest.
bool node_has_snapshot(qmp::client& qmp, const std::string& node, const std::string& tag) {
    for (const auto& n : launcher::list_block_nodes(qmp))
        if (n.node_name == node)
            return std::find(n.snapshot_names.begin(), n.snapshot_names.end(), tag) !=
                   n.snapshot_names.end();
    return false;
}

// After a revert moved the VM off the files it wrote to, those that qmpkit made (overlays in the
// state directory) and that nothing names any more — no snapshot, reset point or definition —
// are removed: nothing can be built on a file nothing names.
void remove_abandoned_overlays(vm_context& ctx, const vm_definition& before) {
    std::vector<fs::path> named;
    for (const auto* r : ctx.tree.all())
        for (const auto& d : r->disks)
            for (const auto& f : {d.image, d.overlay})
                if (!f.empty())
                    named.push_back(f);
    for (const auto& p : vm_reset(ctx.dir.vm_name(), *ctx.options).points())
        for (const auto& d : p.disks)
            named.push_back(d.base);
    for (const auto& d : ctx.def.disks)
        named.push_back(d.file);
    const auto ours = fs::weakly_canonical(ctx.dir.overlays()).string() + "/";
    for (const auto& d : before.disks) {
        if (fs::weakly_canonical(d.file).string().rfind(ours, 0) != 0)
            continue;
        if (std::any_of(named.begin(), named.end(),
                        [&](const fs::path& f) { return same_file(f, d.file); }))
            continue;
        std::error_code ignored;
        fs::remove(d.file, ignored);
        if (ctx.options->logger)
            ctx.options->logger->debug("revert: removed the abandoned overlay {}", d.file.string());
    }
}

vm_state wanted_state(const revert_request& r, vm_state snapshot_state) {
    if (r.running)
        return vm_state::running;
    if (r.paused)
        return vm_state::paused;
    return snapshot_state;
}

// Loads look the tag up as an id first: refuse, before anything changes, a name that is also
// the id of another snapshot in one of the images (an id given after the name was chosen).
void require_no_shadowing(const launcher::qemu_img& img, const snapshot_record& rec) {
    // Ids are digits: any other name costs no qemu-img run.
    if (!std::all_of(rec.name.begin(), rec.name.end(), [](char c) { return c >= '0' && c <= '9'; }))
        return;
    for (const auto& d : rec.disks) {
        if (d.how != disk_snapshot::mode::internal)
            continue;
        if (auto other = shadowing_snapshot(img.info(d.image).snapshots, rec.name))
            throw error(error_kind::drift, "cannot load snapshot '" + rec.name + "': in " +
                                               d.image.string() + ", '" + rec.name +
                                               "' is also the id of snapshot '" + other->name +
                                               "', which qemu would load instead");
    }
}

void load_internal(vm_context& ctx, const snapshot_record& rec) {
    auto& qmp = *ctx.qmp;
    auto live = live_disks(qmp);
    std::vector<std::string> nodes;
    for (const auto& d : rec.disks)
        if (d.how == disk_snapshot::mode::internal)
            nodes.push_back(live.at(d.disk).node_name);
    for (std::size_t i = 0; i < nodes.size(); ++i)
        if (!node_has_snapshot(qmp, nodes[i], rec.name))
            throw error(error_kind::drift, "cannot revert to snapshot '" + rec.name +
                                               "': qemu does not find it in the image of node " +
                                               nodes[i] + " (run qmpkit snapshot check " +
                                               ctx.dir.vm_name() + "). Nothing was changed.");
    if (detail::has_snapshot_jobs(qmp)) {
        const auto job = detail::make_job_id("load");
        detail::job_options o;
        o.progress = [&](double f) { ctx.report("loading " + rec.name, f); };
        o.on_status = [&](const std::string& status) {
            if (status == "running")
                launcher::fault_point("snapshot.load.job-running", ctx.dir);
        };
        detail::run_job(qmp, "snapshot-load",
                        {{"job-id", job},
                         {"tag", rec.name},
                         {"vmstate", nodes.front()},
                         {"devices", json::value_from(nodes)}},
                        job, o);
    } else {
        try {
            qmp.hmp("loadvm " + rec.name);
        } catch (const qmp::error& e) {
            throw error(error_kind::other,
                        std::string("loadvm failed (the VM is left stopped): ") + e.what());
        }
    }
}

} // namespace

void snapshot_manager::revert(const std::string& name, const revert_request& request) {
    vm_context ctx(vm_, options_, "reverting to a snapshot");
    detail::require_no_interrupted_operation(ctx.dir);
    const auto rec = ctx.tree.at(name); // a copy: the tree changes below
    auto then = launcher::load_definition_from_string(rec.definition, ctx.dir.definition_copy());
    const auto difference = configuration_difference(then, ctx.def);
    if (!difference.empty() && !request.force)
        throw error(error_kind::config_mismatch,
                    "VM '" + vm_ + "' no longer matches snapshot '" + name + "': " + difference +
                        "; revert with --force to restore the snapshot's configuration");
    const auto wanted = wanted_state(request, rec.state);
    const launcher::qemu_img img;
    // Every check that can refuse comes before the first change.
    const auto moves = rec.location == snapshot_location::internal
                           ? internal_images_to_return_to(ctx, rec)
                           : std::map<std::string, fs::path>{};
    for (auto& disk : then.disks)
        if (auto m = moves.find(disk.name); m != moves.end()) {
            disk.file = m->second;
            disk.format = launcher::disk_format::qcow2;
            disk.size.reset();
            disk.backing.reset();
        }
    const auto before = ctx.def;
    if (rec.location == snapshot_location::internal && rec.memory)
        require_no_shadowing(img, rec);

    auto after_tree = ctx.tree;
    after_tree.set_current(name);
    detail::operation_journal journal;
    journal.operation = "revert";
    journal.snapshot = name;
    journal.pid = ::getpid();
    journal.started_at = now_seconds();
    journal.was_running = ctx.state == vm_state::running && ctx.running();
    journal.before_digest = detail::digest_of_file(metadata_store(ctx.dir).path());
    journal.after_metadata = metadata_store::serialize(after_tree);
    detail::write_journal(ctx.dir, journal);
    try {
        if (rec.location == snapshot_location::internal && rec.memory) {
            if (ctx.running() && difference.empty() && moves.empty()) {
                // The snapshot-load job resumes a guest that ran when it started: one that is
                // to stay paused is stopped first, so it never runs past the snapshot.
                if (wanted != vm_state::running && ctx.state == vm_state::running)
                    ctx.set_run_state(vm_state::paused);
                load_internal(ctx, rec);
            } else {
                // A different configuration, disks to bring back to the images that hold the
                // snapshot, or no qemu at all: start qemu on the snapshot's configuration and
                // let it load the snapshot before the guest runs.
                ctx.stop_vm();
                ctx.start_vm(then, {"-loadvm", name}, true);
            }
            ctx.set_run_state(wanted);
        } else if (rec.location == snapshot_location::internal) {
            // Taken offline: disks only.
            ctx.stop_vm();
            for (const auto& d : rec.disks)
                if (d.how == disk_snapshot::mode::internal)
                    img.snapshot_apply(d.image, name, launcher::disk_key(then, d.disk));
            if (wanted != vm_state::shutoff) {
                ctx.start_vm(then, {}, wanted == vm_state::paused);
            } else {
                ctx.def = then;
                ctx.save_definition();
            }
        } else {
            ctx.stop_vm();
            for (const auto& d : rec.disks) {
                if (d.how != disk_snapshot::mode::external)
                    continue;
                auto fresh = fresh_overlay(ctx, rec, d, img, launcher::disk_key(then, d.disk));
                for (auto& disk : then.disks)
                    if (disk.name == d.disk) {
                        disk.file = fresh;
                        disk.format = launcher::disk_format::qcow2;
                        disk.size.reset();
                        disk.backing.reset();
                    }
            }
            if (rec.memory) {
                ctx.start_vm(then, {"-incoming", "defer"}, true);
                detail::load_memory(*ctx.qmp, rec.memory_file);
                ctx.set_run_state(wanted == vm_state::shutoff ? vm_state::running : wanted);
            } else if (request.running || request.paused) {
                ctx.start_vm(then, {}, wanted == vm_state::paused);
            } else {
                ctx.def = then;
                ctx.save_definition();
            }
        }
        launcher::fault_point("snapshot.revert.before-metadata", ctx.dir);
        ctx.tree = std::move(after_tree);
        ctx.save_tree();
        launcher::fault_point("snapshot.revert.after-metadata", ctx.dir);
    } catch (...) {
        detail::resolve_after_failure(ctx, journal);
        throw;
    }
    detail::remove_journal(ctx.dir);
    remove_abandoned_overlays(ctx, before);
    // The state was saved with the shares unmounted (share_mounts.hpp).
    if (rec.memory && ctx.running() && ctx.state == vm_state::running)
        detail::mount_declared_shares(ctx.dir, ctx.def, ctx.options->logger);
}

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
        if (frozen_by_other(tree, rec.name, d.image)) {
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
        if (frozen_by_other(tree, rec.name, d.image)) {
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
