#include "../memory_state.hpp"
#include "point_plan.hpp"

#include <qmpkit/launcher/definition_loader.hpp>
#include <qmpkit/snapshot/error.hpp>

#include <algorithm>

namespace qmpkit::snapshot::detail {

namespace fs = std::filesystem;
namespace json = boost::json;

namespace {

void refuse_what_a_point_cannot_hold(const point_facts& f) {
    if (!f.qemu_runs)
        throw error(error_kind::not_running, "a reset point needs VM '" + f.vm + "' running");
    if (!f.def.reset.file_backed_memory())
        throw error(error_kind::unsupported,
                    "VM '" + f.vm +
                        "' resets by loadvm (reset.strategy: loadvm): its RAM is not "
                        "file-backed; take a snapshot instead, or set reset.strategy: template");
    for (const auto& disk : f.def.disks)
        if (disk.encryption && !disk.read_only)
            throw error(error_kind::unsupported,
                        "disk '" + disk.name + "' of VM '" + f.vm +
                            "' is encrypted: a reset point's overlays would hold its data in "
                            "clear; take a snapshot instead (loadvm resets)");
    if (!f.runs_on_own_ram)
        throw error(error_kind::unsupported,
                    "VM '" + f.vm +
                        "' runs on a reset point's RAM (copy-on-write): restart it (qmpkit "
                        "shutdown, qmpkit start) before taking a new reset point");
}

plan_step ignore_shared_ram_step(bool on) {
    return {qmp_command{"migrate-set-capabilities", ignore_shared_ram_arguments(on)}};
}

} // namespace

point_plan plan_point_create(const point_facts& f) {
    refuse_what_a_point_cannot_hold(f);
    point_plan plan;
    plan.dir = f.points_dir / f.name;
    if (f.host.exists(plan.dir))
        throw error(error_kind::name_taken,
                    "VM '" + f.vm + "' already has a reset point named '" + f.name + "'");

    auto& point = plan.point;
    point.name = f.name;
    point.created_at = f.now;
    point.ram = plan.dir / "ram";
    point.device_state = plan.dir / "device.state";
    point.definition = launcher::dump_definition(f.def);
    const bool was_running = f.state == vm_state::running;

    // The disks switch to overlays at the point; the images below them freeze.
    json::array actions;
    auto after = f.def;
    operation_journal journal;
    journal.operation = "create-reset-point";
    journal.snapshot = f.name;
    journal.pid = f.pid;
    journal.started_at = f.now;
    journal.was_running = was_running;
    for (auto& disk : after.disks) {
        if (disk.read_only)
            continue;
        const auto& top = f.live.at(disk.name);
        const auto overlay = f.overlays_dir / (disk.name + ".run." + f.host.new_id() + ".qcow2");
        actions.push_back({{"type", "blockdev-snapshot-sync"},
                           {"data",
                            {{"node-name", top.node_name},
                             {"snapshot-file", overlay.string()},
                             {"snapshot-node-name", "rp" + f.host.new_id()},
                             {"format", "qcow2"}}}});
        point.disks.push_back({disk.name, top.file});
        journal.overlays.push_back({disk.name, top.file, overlay});
        disk.file = overlay;
        disk.format = launcher::disk_format::qcow2;
        disk.size.reset();
        disk.backing.reset();
    }
    journal.after_definition = launcher::dump_definition(after);
    journal.creates = {plan.dir};

    auto& s = plan.steps;
    // A failure before the journal takes the empty directory back; after it, the journal's
    // resolution removes what the operation made (it names the directory).
    s.push_back({directories_make{{plan.dir, f.overlays_dir}}, remove_file{plan.dir}});
    // Before anything changes: a mounted 9p share would make qemu refuse to save the state.
    s.push_back({shares_unmount{was_running, "create a reset point"}});
    // A killed qmpkit leaves the journal: the next reset (or `snapshot check --repair`) then
    // resumes the guest, switches the capability off, and keeps or takes back the overlays
    // from what qemu runs on (interrupted_operation.hpp).
    s.push_back({journal_write{journal}});
    // Only the device state goes to the file: the RAM lives in a shared file, copied below.
    // The save ends with the VM paused, so RAM, device state and disks are one moment.
    s.push_back(ignore_shared_ram_step(true));
    s.push_back({memory_save{point.device_state, "", "reset-point.create"}});
    s.push_back({fault_point_step{"reset-point.create.after-migration"}});
    s.push_back(ignore_shared_ram_step(false));
    s.push_back({file_copy{f.ram_file, point.ram}});
    if (!actions.empty())
        s.push_back({qmp_command{"transaction", {{"actions", std::move(actions)}}}});
    s.push_back({fault_point_step{"reset-point.create.after-transaction"}});
    s.push_back({definition_write{after}});
    s.push_back({point_write{plan.dir, point}});
    s.push_back({fault_point_step{"reset-point.create.after-point"}});
    if (was_running)
        s.push_back({set_run_state{vm_state::running}});
    s.push_back({journal_remove{}});
    s.push_back({shares_remount{}});
    return plan;
}

} // namespace qmpkit::snapshot::detail
