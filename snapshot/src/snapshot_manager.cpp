#include "guest_freeze.hpp"
#include "memory_state.hpp"
#include "qmp_jobs.hpp"
#include "vm_context.hpp"

#include <qmpkit/launcher/atomic_file.hpp>
#include <qmpkit/launcher/definition_loader.hpp>
#include <qmpkit/launcher/definition_validator.hpp>
#include <qmpkit/launcher/error.hpp>
#include <qmpkit/launcher/launch.hpp>
#include <qmpkit/launcher/qemu_img.hpp>
#include <qmpkit/launcher/runtime_info.hpp>
#include <qmpkit/launcher/state_directory.hpp>
#include <qmpkit/launcher/supervisor.hpp>
#include <qmpkit/launcher/vm_control.hpp>
#include <qmpkit/launcher/vm_lock.hpp>
#include <qmpkit/snapshot/error.hpp>
#include <qmpkit/snapshot/metadata_store.hpp>
#include <qmpkit/snapshot/snapshot_manager.hpp>

#include <boost/json.hpp>
#include <spdlog/logger.h>

#include <algorithm>
#include <map>
#include <random>
#include <set>
#include <thread>

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

// virsh names a snapshot after its creation time in seconds. A name of digits alone would be
// taken for a snapshot id by qcow2's lookup (id first, then name), so it gets a prefix.
std::string default_name() {
    return "snapshot-" + std::to_string(now_seconds());
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
    std::optional<vm_definition> def;
    if (fs::exists(dir.definition_copy()))
        def = launcher::load_definition(dir.definition_copy());
    drift_options o;
    o.definition = def ? &*def : nullptr;
    const launcher::qemu_img img;
    return check_drift(
        tree(), [&](const fs::path& p) { return img.info(p); }, o);
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
    if (qmp.has_command("snapshot-save")) {
        const auto job = detail::make_job_id("save");
        detail::job_options o;
        o.progress = progress;
        detail::run_job(qmp, "snapshot-save",
                        {{"job-id", job},
                         {"tag", record.name},
                         {"vmstate", nodes.front()},
                         {"devices", json::value_from(nodes)}},
                        job, o);
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
    std::vector<fs::path> done;
    try {
        for (const auto& d : disks) {
            if (d.how != disk_snapshot::mode::internal)
                continue;
            ctx.report("snapshotting " + d.disk, static_cast<double>(done.size()) / disks.size());
            img.snapshot_create(d.image, record.name);
            done.push_back(d.image);
        }
    } catch (...) {
        // All disks or none: take it back from the disks that have it already.
        for (const auto& image : done) {
            try {
                img.snapshot_delete(image, record.name);
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
    if (request.memory_file) {
        // Migration ends with the VM paused (postmigrate): RAM and disks are taken at that one
        // point.
        detail::save_memory(qmp, *request.memory_file,
                            [&](double f) { ctx.report("saving memory of " + record.name, f); });
    }
    try {
        // --quiesce: frozen for the transaction only; thawed on leaving this block, also when the
        // transaction throws.
        std::optional<detail::guest_freeze> frozen;
        if (request.quiesce)
            frozen.emplace(ctx.dir, ctx.def, ctx.options->logger);
        qmp.execute("transaction", actions);
    } catch (const qmp::error& e) {
        // The block graph is all-or-nothing, but files made by earlier actions stay: remove them.
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
                       img.info(d.image).known_format());
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
    snapshot_record record;
    record.name = request.name.empty() ? default_name() : request.name;
    require_valid_snapshot_name(record.name);
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

    // A tag that some image already holds would be refused (snapshot-save) or silently replaced
    // (savevm): either way the metadata would lie.
    for (const auto& d : disks) {
        if (d.how != disk_snapshot::mode::internal)
            continue;
        for (const auto& s : img.info(d.image).snapshots)
            if (s.name == record.name)
                throw error(error_kind::name_taken,
                            "image " + d.image.string() + " already holds a snapshot named '" +
                                record.name +
                                "' that qmpkit does not know (see `qmpkit snapshot check`)");
    }
    for (const auto& d : disks)
        if (d.how == disk_snapshot::mode::external && fs::exists(d.overlay))
            throw error(error_kind::name_taken,
                        "overlay " + d.overlay.string() + " already exists");

    if (!external && ctx.running())
        create_internal_running(ctx, record, disks);
    else if (!external)
        create_internal_offline(ctx, record, disks, img);
    else if (ctx.running())
        create_external_running(ctx, record, disks, request);
    else
        create_external_offline(ctx, record, disks, img);

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

    if (external) {
        // The VM now writes to the overlays: restarts must use them.
        for (auto& disk : ctx.def.disks)
            for (const auto& d : disks)
                if (d.disk == disk.name && d.how == disk_snapshot::mode::external) {
                    disk.file = d.overlay;
                    disk.format = launcher::disk_format::qcow2;
                    disk.size.reset();
                    disk.backing.reset();
                }
        ctx.save_definition();
    }
    if (!request.no_metadata) {
        auto tree = ctx.tree;
        tree.add(record);
        tree.set_current(record.name);
        ctx.tree = std::move(tree);
        ctx.save_tree();
    }
    if (request.halt && ctx.running())
        ctx.stop_vm();
    return record;
}

// --- revert ------------------------------------------------------------------------------------

namespace {

// The node of the running block graph whose image is `file` (a format node, not the protocol one).
std::optional<std::string> node_of(qmp::client& qmp, const fs::path& file) {
    const auto nodes = qmp.execute("query-named-block-nodes");
    for (const auto& n : nodes.as_array()) {
        const auto& o = n.as_object();
        if (o.at("drv").as_string() != "file" &&
            same_file(std::string(o.at("file").as_string()), file))
            return std::string(o.at("node-name").as_string());
    }
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

// A new, empty overlay over the snapshot's frozen image: everything written after the snapshot
// is left behind. Reuses the snapshot's own overlay file unless another snapshot froze it.
fs::path fresh_overlay(const snapshot_tree& tree, const snapshot_record& rec,
                       const disk_snapshot& d, const launcher::qemu_img& img) {
    fs::path target = d.overlay;
    if (frozen_by_other(tree, rec.name, d.overlay))
        target = d.overlay.parent_path() / (d.overlay.stem().string() + ".r" + hex_id() + ".qcow2");
    else {
        std::error_code ignored;
        fs::remove(d.overlay, ignored);
    }
    img.create(target, launcher::disk_format::qcow2, std::nullopt, d.image,
               img.info(d.image).known_format());
    return target;
}

vm_state wanted_state(const revert_request& r, vm_state snapshot_state) {
    if (r.running)
        return vm_state::running;
    if (r.paused)
        return vm_state::paused;
    return snapshot_state;
}

void load_internal(vm_context& ctx, const snapshot_record& rec) {
    auto& qmp = *ctx.qmp;
    auto live = live_disks(qmp);
    std::vector<std::string> nodes;
    for (const auto& d : rec.disks)
        if (d.how == disk_snapshot::mode::internal)
            nodes.push_back(live.at(d.disk).node_name);
    if (qmp.has_command("snapshot-load")) {
        const auto job = detail::make_job_id("load");
        detail::job_options o;
        o.progress = [&](double f) { ctx.report("loading " + rec.name, f); };
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
    const auto rec = ctx.tree.at(name); // a copy: the tree changes below
    auto then = launcher::load_definition_from_string(rec.definition, ctx.dir.definition_copy());
    const auto difference = configuration_difference(then, ctx.def);
    if (!difference.empty() && !request.force)
        throw error(error_kind::config_mismatch,
                    "VM '" + vm_ + "' no longer matches snapshot '" + name + "': " + difference +
                        "; revert with --force to restore the snapshot's configuration");
    const auto wanted = wanted_state(request, rec.state);
    const launcher::qemu_img img;

    if (rec.location == snapshot_location::internal && rec.memory) {
        if (ctx.running() && difference.empty()) {
            load_internal(ctx, rec);
        } else {
            // A different configuration (or no qemu at all): start qemu with the snapshot's
            // configuration and let it load the snapshot before the guest runs.
            ctx.stop_vm();
            ctx.start_vm(then, {"-loadvm", name}, true);
        }
        ctx.set_run_state(wanted);
    } else if (rec.location == snapshot_location::internal) {
        // Taken offline: disks only.
        ctx.stop_vm();
        for (const auto& d : rec.disks)
            if (d.how == disk_snapshot::mode::internal)
                img.snapshot_apply(d.image, name);
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
            auto fresh = fresh_overlay(ctx.tree, rec, d, img);
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
    auto tree = ctx.tree;
    tree.set_current(name);
    ctx.tree = std::move(tree);
    ctx.save_tree();
}

// --- delete ------------------------------------------------------------------------------------

namespace {

void delete_internal(vm_context& ctx, const snapshot_record& rec) {
    if (!ctx.running()) {
        const launcher::qemu_img img;
        for (const auto& d : rec.disks)
            if (d.how == disk_snapshot::mode::internal)
                img.snapshot_delete(d.image, rec.name);
        return;
    }
    auto& qmp = *ctx.qmp;
    std::vector<std::string> nodes;
    for (const auto& d : rec.disks) {
        if (d.how != disk_snapshot::mode::internal)
            continue;
        auto node = node_of(qmp, d.image);
        if (!node)
            throw error(error_kind::unsupported,
                        "snapshot '" + rec.name + "' lives in " + d.image.string() +
                            ", which the running VM does not use; shut the VM off to delete it");
        nodes.push_back(*node);
    }
    if (qmp.has_command("snapshot-delete")) {
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
void delete_external(vm_context& ctx, snapshot_tree& tree, const snapshot_record& rec) {
    if (!ctx.running())
        throw error(error_kind::not_running,
                    "deleting an external snapshot merges its overlay through qemu: start VM '" +
                        ctx.dir.vm_name() + "' first (or delete with --metadata)");
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
        for (const auto* r : tree.all()) {
            auto updated = *r;
            bool changed = false;
            for (auto& x : updated.disks)
                if (x.disk == d.disk && same_file(x.image, d.overlay)) {
                    x.image = d.image;
                    changed = true;
                }
            if (changed)
                tree.update(updated);
        }
        std::error_code ignored;
        fs::remove(d.overlay, ignored);
    }
}

} // namespace

std::vector<std::string> snapshot_manager::remove(const std::string& name,
                                                  const delete_request& request) {
    vm_context ctx(vm_, options_, "deleting snapshots");
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
        if (!request.metadata_only) {
            if (rec.location == snapshot_location::internal)
                delete_internal(ctx, rec);
            else
                delete_external(ctx, tree, rec);
        }
        tree.remove(t);
        ctx.tree = std::move(tree);
        ctx.save_tree();
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
