// virsh commands qmpkit has under other names or had not: domblklist, suspend, resume.

#include "context.hpp"
#include "exit_codes.hpp"
#include "output.hpp"
#include "virsh_form.hpp"
#include "vm_lookup.hpp"

#include <qmpkit/launcher/error.hpp>
#include <qmpkit/launcher/vm_control.hpp>

#include <boost/json.hpp>

#include <iostream>

namespace qmpkit::cli {
namespace {

namespace json = boost::json;

int run_domblklist(const context& ctx, const std::string& vm_name, bool details) {
    auto vm = launcher::vm_connection::open(find_running_vm(ctx, vm_name), "listing disks",
                                            connect_options_for(ctx));
    auto devices = launcher::list_block_devices(vm.qmp());
    if (ctx.json) {
        json::array all;
        for (const auto& d : devices) {
            json::object o{{"target", d.disk}, {"source", d.file}};
            if (details) {
                o["type"] = "file";
                o["device"] = "disk";
            }
            all.push_back(std::move(o));
        }
        print_json(all);
        return exit_code::ok;
    }
    table t(details ? std::vector<std::string>{"Type", "Device", "Target", "Source"}
                    : std::vector<std::string>{"Target", "Source"});
    for (const auto& d : devices)
        t.add(details ? std::vector<std::string>{"file", "disk", d.disk, d.file}
                      : std::vector<std::string>{d.disk, d.file});
    std::cout << t.str();
    return exit_code::ok;
}

std::string run_state(qmp::client& qmp) {
    const auto status = qmp.execute("query-status");
    return std::string(status.at("status").as_string());
}

void report(const context& ctx, const std::string& vm, const std::string& before,
            const std::string& after, const std::string& done) {
    if (ctx.json)
        print_json(json::object{{"name", vm}, {"state", after}, {"previous_state", before}});
    else
        std::cout << "VM " << vm << " " << done << "\n";
}

// QMP stop. A VM paused already (by a command, an I/O error, a debugger) stays as it is.
int run_suspend(const context& ctx, const std::string& vm_name) {
    auto vm = launcher::vm_connection::open(find_running_vm(ctx, vm_name), "suspending the VM",
                                            connect_options_for(ctx));
    const auto before = run_state(vm.qmp());
    if (before != "running") {
        report(ctx, vm_name, before, before, "was not running (" + before + "): left as it is");
        return exit_code::ok;
    }
    vm.qmp().execute("stop");
    report(ctx, vm_name, before, run_state(vm.qmp()), "suspended");
    return exit_code::ok;
}

// QMP cont, which also retries the requests that paused a VM on an I/O error (run state
// io-error). A guest that a failed load left half-loaded (restore-vm) must not run.
int run_resume(const context& ctx, const std::string& vm_name) {
    auto vm = launcher::vm_connection::open(find_running_vm(ctx, vm_name), "resuming the VM",
                                            connect_options_for(ctx));
    const auto before = run_state(vm.qmp());
    if (before == "running") {
        report(ctx, vm_name, before, before, "is running already");
        return exit_code::ok;
    }
    if (before == "restore-vm")
        throw launcher::error("VM '" + vm_name +
                              "' is in run state restore-vm: a failed snapshot load left its guest "
                              "half-loaded; revert to a snapshot or restart it");
    vm.qmp().execute("cont");
    report(ctx, vm_name, before, run_state(vm.qmp()), "resumed");
    return exit_code::ok;
}

} // namespace

void register_virsh_commands(CLI::App& app, context& ctx) {
    struct blk {
        std::string vm;
        bool details = false;
    };
    auto b = std::make_shared<blk>();
    auto* domblklist = app.add_subcommand(
        "domblklist", "List a running VM's disks, as Target and Source (qmpkit disks shows more)");
    domblklist->group("virsh spellings");
    auto blk_form = std::make_shared<virsh_form>(domblklist);
    blk_form->add_argument("vm", {"--domain"}, "VM name");
    domblklist->add_flag("--details", b->details, "also the Type and Device columns");
    blk_form->add_note_flag(
        "--inactive", "has no meaning here: qmpkit lists the disks of the running VM",
        "accepted for virsh compatibility: qmpkit lists the disks of the running VM");
    domblklist->callback([&ctx, b, blk_form] {
        blk_form->finish();
        b->vm = blk_form->value(0);
        ctx.action = [&ctx, b] { return run_domblklist(ctx, b->vm, b->details); };
    });

    auto add_state_change = [&](const std::string& name, const std::string& help,
                                int (*run)(const context&, const std::string&)) {
        auto* cmd = app.add_subcommand(name, help);
        auto form = std::make_shared<virsh_form>(cmd);
        form->add_argument("vm", {"--domain"}, "VM name");
        cmd->callback([&ctx, form, run] {
            form->finish();
            auto vm = form->value(0);
            ctx.action = [&ctx, vm, run] { return run(ctx, vm); };
        });
    };
    add_state_change("suspend", "Pause a running VM's guest (QMP stop; virsh suspend)",
                     run_suspend);
    add_state_change("resume",
                     "Let a paused VM's guest run again, also one paused on an I/O error "
                     "(QMP cont; virsh resume)",
                     run_resume);
}

void register_help_command(CLI::App& app, context& ctx) {
    auto words = std::make_shared<std::vector<std::string>>();
    auto* help = app.add_subcommand("help", "Print the help of a command (qmpkit help COMMAND)");
    help->add_option("command", *words, "a command, e.g. snapshot-revert or snapshot revert");
    help->callback([&ctx, &app, words] {
        const CLI::App* at = &app;
        std::string path = app.get_name();
        for (const auto& word : *words) {
            const CLI::App* next = nullptr;
            for (const auto* sub : at->get_subcommands([](const CLI::App*) { return true; }))
                if (sub->check_name(word))
                    next = sub;
            if (!next || next->get_name() == "help")
                throw CLI::ValidationError("help: unknown command '" + word + "'");
            path += " " + next->get_name();
            at = next;
        }
        // The formatter itself: App::help() would describe the command chosen, this one.
        ctx.action = [at, path] {
            std::cout << at->get_formatter()->make_help(at, path, CLI::AppFormatMode::Normal);
            return exit_code::ok;
        };
    });
}

} // namespace qmpkit::cli
