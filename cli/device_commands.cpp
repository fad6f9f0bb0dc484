// disks, attach-disk, detach-disk (virsh domblklist / attach-disk --live / detach-disk --live)

#include "command_arguments.hpp"
#include "context.hpp"
#include "exit_codes.hpp"
#include "output.hpp"
#include "virsh_form.hpp"
#include "vm_lookup.hpp"

#include <qmpkit/launcher/definition_validator.hpp>
#include <qmpkit/launcher/error.hpp>
#include <qmpkit/launcher/vm_control.hpp>

#include <boost/json.hpp>

#include <iostream>

namespace qmpkit::cli {
namespace {

namespace json = boost::json;

struct attach_options {
    std::string vm;
    std::string name;
    std::string file;
    std::string format = "qcow2";
    std::string size;
    std::string bus = "virtio";
    std::string cache = "writeback";
    std::string mode;
    bool read_only = false;
};

// virsh's flags for choosing between the running domain and its inactive configuration. qmpkit has
// one configuration per VM: the definition in its state directory, which attach-disk and
// detach-disk change together with the running VM (never the YAML file it was started from).
constexpr const char* live_note =
    "is what qmpkit always does: the running VM changes, and with it the definition in its state "
    "directory";
constexpr const char* config_note =
    "has no meaning here: qmpkit keeps no inactive domain configuration; the running VM and the "
    "definition in its state directory change together (the YAML file never does)";
constexpr const char* current_note = "is the default: the running VM changes";

void add_scope_notes(virsh_form& form, bool current) {
    const std::string help = "accepted for virsh compatibility: ";
    form.add_note_flag("--live", live_note, help + live_note);
    form.add_note_flag("--config", config_note, help + config_note);
    form.add_note_flag("--persistent", config_note, help + config_note);
    if (current)
        form.add_note_flag("--current", current_note, help + current_note);
}

int run_disks(const context& ctx, const std::string& vm_name) {
    auto vm = launcher::vm_connection::open(find_vm(ctx, vm_name), "listing disks",
                                            connect_options_for(ctx));
    auto devices = launcher::list_block_devices(vm.qmp());
    if (ctx.json) {
        json::array all;
        for (const auto& d : devices)
            all.push_back({{"disk", d.disk},
                           {"node", d.node_name},
                           {"file", d.file},
                           {"format", d.format},
                           {"read_only", d.read_only},
                           {"backing_chain", json::value_from(d.backing_chain)}});
        print_json(all);
        return exit_code::ok;
    }
    table t({"DISK", "NODE", "FORMAT", "MODE", "FILE"});
    for (const auto& d : devices)
        t.add({d.disk, d.node_name, d.format, d.read_only ? "ro" : "rw", d.file});
    std::cout << t.str();
    return exit_code::ok;
}

launcher::disk_definition disk_from(const attach_options& o) {
    launcher::disk_definition disk;
    disk.name = o.name;
    disk.node_name = o.name;
    disk.file = std::filesystem::absolute(o.file);
    auto format = launcher::disk_format_from_string(o.format);
    auto bus = launcher::disk_bus_from_string(o.bus);
    auto cache = launcher::cache_mode_from_string(o.cache);
    if (!format)
        throw std::invalid_argument("--format must be qcow2 or raw, not '" + o.format + "'");
    if (!bus || *bus == launcher::disk_bus::pflash)
        throw std::invalid_argument("--bus must be virtio, scsi or ide, not '" + o.bus + "'");
    if (!cache)
        throw std::invalid_argument("--cache '" + o.cache + "' is not a cache mode");
    if (!launcher::is_valid_disk_name(o.name))
        throw std::invalid_argument(
            "disk name '" + o.name +
            "' must start with a letter and hold only letters, digits, '-' and '_'");
    disk.format = *format;
    disk.bus = *bus;
    disk.cache = *cache;
    disk.read_only = o.read_only;
    if (!o.mode.empty() && o.mode != "readonly")
        throw std::invalid_argument("--mode " + o.mode +
                                    ": only readonly is supported (shareable disks are not)");
    if (o.mode == "readonly")
        disk.read_only = true;
    if (!o.size.empty())
        disk.size = parse_size_argument("--size", o.size);
    return disk;
}

} // namespace

void register_device_commands(CLI::App& app, context& ctx) {
    auto vm = std::make_shared<std::string>();
    auto* disks = app.add_subcommand("disks", "List a running VM's disks (virsh domblklist)");
    disks->add_option("vm", *vm, "VM name")->required();
    disks->callback([&ctx, vm] { ctx.action = [&ctx, vm] { return run_disks(ctx, *vm); }; });

    auto a = std::make_shared<attach_options>();
    auto* attach = app.add_subcommand(
        "attach-disk", "Attach a disk to a running VM (virsh attach-disk DOMAIN SOURCE TARGET)");
    auto attach_form = std::make_shared<virsh_form>(attach);
    attach_form->add_argument("vm", {"--domain"}, "VM name");
    attach_form->add_argument("file", {"--source"}, "image file");
    attach_form->add_argument("name", {"--name", "--target"},
                              "disk name: the guest sees it as the disk's serial number "
                              "(/dev/disk/by-id/virtio-NAME), not as a device name such as vdb");
    attach->add_option("--format,--subdriver", a->format, "qcow2 or raw")->capture_default_str();
    attach->add_option("--size", a->size, "create the image with this size if it does not exist");
    attach->add_option("--bus,--targetbus", a->bus, "virtio, scsi or ide")->capture_default_str();
    attach->add_option("--cache", a->cache, "cache mode")->capture_default_str();
    attach->add_flag("--read-only", a->read_only, "attach read-only");
    attach->add_option("--mode", a->mode, "readonly: the same as --read-only (virsh's spelling)");
    attach_form->add_note_option(
        "--driver", "has no meaning here: qemu's own block drivers are the only ones",
        "accepted for virsh compatibility: qemu's own block drivers are the only ones");
    add_scope_notes(*attach_form, true);
    attach->callback([&ctx, a, attach_form] {
        attach_form->finish();
        a->vm = attach_form->value(0);
        a->file = attach_form->value(1);
        a->name = attach_form->value(2);
        ctx.action = [&ctx, a] {
            auto disk = disk_from(*a);
            auto conn = launcher::vm_connection::open(find_vm(ctx, a->vm), "attaching a disk",
                                                      connect_options_for(ctx));
            launcher::attach_disk(conn, disk);
            std::cout << "disk " << disk.name << " attached to " << a->vm << "\n";
            return exit_code::ok;
        };
    });

    auto d = std::make_shared<std::tuple<std::string, std::string, double>>("", "", 30);
    auto* detach = app.add_subcommand(
        "detach-disk", "Detach a disk from a running VM (virsh detach-disk DOMAIN TARGET)");
    auto detach_form = std::make_shared<virsh_form>(detach);
    detach_form->add_argument("vm", {"--domain"}, "VM name");
    detach_form->add_argument("disk", {"--target"}, "disk name");
    detach->add_option("--timeout", std::get<2>(*d), "seconds the guest gets to release it")
        ->capture_default_str()
        ->check(non_negative_number());
    add_scope_notes(*detach_form, true);
    detach->callback([&ctx, d, detach_form] {
        detach_form->finish();
        std::get<0>(*d) = detach_form->value(0);
        std::get<1>(*d) = detach_form->value(1);
        ctx.action = [&ctx, d] {
            auto conn = launcher::vm_connection::open(find_vm(ctx, std::get<0>(*d)),
                                                      "detaching a disk", connect_options_for(ctx));
            launcher::detach_disk(conn, std::get<1>(*d), milliseconds_of(std::get<2>(*d)));
            std::cout << "disk " << std::get<1>(*d) << " detached from " << std::get<0>(*d) << "\n";
            return exit_code::ok;
        };
    });
}

} // namespace qmpkit::cli
