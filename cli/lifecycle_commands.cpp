// start, run, wait-ready, shutdown, destroy, remove, status, list

#include "command_arguments.hpp"
#include "context.hpp"
#include "exit_codes.hpp"
#include "output.hpp"
#include "vm_lookup.hpp"

#include <qmpkit/launcher/definition_loader.hpp>
#include <qmpkit/launcher/definition_validator.hpp>
#include <qmpkit/launcher/error.hpp>
#include <qmpkit/launcher/launch.hpp>
#include <qmpkit/launcher/leftovers.hpp>
#include <qmpkit/launcher/runtime_info.hpp>
#include <qmpkit/launcher/size.hpp>
#include <qmpkit/launcher/supervisor.hpp>
#include <qmpkit/launcher/vm_control.hpp>

#include <boost/json.hpp>

#include <chrono>
#include <ctime>
#include <fcntl.h>
#include <fstream>
#include <iostream>
#include <unistd.h>

namespace qmpkit::cli {
namespace {

namespace json = boost::json;
using namespace std::chrono_literals;

constexpr const char* ready_marker = "QMPKIT-GUEST-READY";

struct start_options {
    std::string definition;
    bool wait_ready = false;
    double ready_timeout = 120;
    bool paused = false;
    double shutdown_timeout = 60;
    std::string qemu = "qemu-system-x86_64";
};

launcher::vm_definition load_valid(const context& ctx, const std::string& file) {
    auto def = launcher::load_definition(file);
    launcher::validate_definition(def);
    launcher::state_directory dir(state_root(ctx), def.name);
    // launch() refuses this too, but `start` hears it from the background supervisor, which has
    // already appended it to the running VM's supervisor.log: refuse before touching anything.
    if (launcher::is_running(dir)) {
        const auto runtime = launcher::read_runtime_info(dir);
        throw launcher::error("VM '" + def.name + "' is already running" +
                              (runtime ? " (pid " + std::to_string(runtime->qemu_pid) + ")" : "") +
                              "; stop it first with `qmpkit shutdown " + def.name + "`");
    }
    return launcher::with_recorded_overlays(std::move(def), dir);
}

launcher::launch_options launch_options_for(const context& ctx, const start_options& o) {
    launcher::launch_options options;
    options.state_root = state_root(ctx);
    options.qemu_binary = o.qemu;
    options.paused = o.paused;
    options.logger = ctx.logger;
    options.lock_timeout = ctx.lock_wait();
    return options;
}

int exit_code_for(const launcher::exit_record& record) {
    if (record.state == "crashed")
        return exit_code::crashed;
    return record.forced ? exit_code::forced : exit_code::ok;
}

void print_started(const context& ctx, const launcher::state_directory& dir,
                   const std::string& ready_line) {
    auto st = launcher::query_status(dir, connect_options_for(ctx));
    if (ctx.json) {
        json::object o{{"name", st.name},
                       {"state", st.state},
                       {"qemu_pid", st.qemu_pid},
                       {"accel", st.accel},
                       {"state_dir", dir.path().string()},
                       {"qmp_socket", dir.qmp_socket().string()}};
        if (!ready_line.empty())
            o["ready"] = ready_line;
        print_json(o);
        return;
    }
    std::cout << "VM " << st.name << " started: qemu pid " << st.qemu_pid << ", " << st.accel
              << ", state " << dir.path().string() << "\n";
    if (!ready_line.empty())
        std::cout << "guest ready: " << ready_line << "\n";
}

int run_start(const context& ctx, const start_options& o) {
    auto def = load_valid(ctx, o.definition);
    auto options = launch_options_for(ctx, o);
    launcher::supervise_options supervision;
    supervision.shutdown_timeout = milliseconds_of(o.shutdown_timeout);
    launcher::start_in_background(def, options, supervision);
    launcher::state_directory dir(options.state_root, def.name);
    std::string ready;
    if (o.wait_ready)
        ready =
            launcher::wait_for_console_line(dir, ready_marker, milliseconds_of(o.ready_timeout));
    print_started(ctx, dir, ready);
    return exit_code::ok;
}

// Foreground: this process is the supervisor.
int run_foreground(const context& ctx, const start_options& o) {
    auto def = load_valid(ctx, o.definition);
    launcher::block_termination_signals();
    auto vm = launcher::launch(def, launch_options_for(ctx, o));
    std::cerr << "qmpkit: VM " << def.name << " running (qemu pid " << vm.process().pid() << ", "
              << vm.runtime().accel << "); SIGTERM or Ctrl-C shuts it down\n";
    launcher::supervise_options supervise;
    supervise.shutdown_timeout = milliseconds_of(o.shutdown_timeout);
    supervise.report = [](const std::string& text) {
        std::cerr << "qmpkit: " << text << std::endl;
    };
    auto record = launcher::supervise(vm, supervise);
    // A reset may have replaced this qemu: the VM goes on under another, and so does `run`.
    record = launcher::follow_vm(vm.state(), supervise);
    if (ctx.json)
        print_json(json::object{{"name", def.name},
                                {"state", record.state},
                                {"reason", record.reason},
                                {"exit", record.exit},
                                {"forced", record.forced}});
    return exit_code_for(record);
}

json::object status_json(const launcher::vm_status& st) {
    json::object o{{"name", st.name},
                   {"state", st.state},
                   {"reason", st.reason},
                   {"run_state", st.run_state},
                   {"qemu_pid", st.qemu_pid},
                   {"supervisor_pid", st.supervisor_pid},
                   {"accel", st.accel},
                   {"qemu_version", st.qemu_version},
                   {"machine", st.machine},
                   {"cpus", st.cpus},
                   {"memory", st.memory},
                   {"started_at", st.started_at},
                   {"state_dir", st.state_dir.string()}};
    if (!st.log_tail.empty())
        o["qemu_log_tail"] = json::value_from(st.log_tail);
    if (!st.standby.empty())
        o["standby"] = st.standby;
    o["forwards"] = json::value_from(st.forwards);
    return o;
}

int run_status(const context& ctx, const std::string& vm) {
    auto dir = find_vm(ctx, vm);
    auto st = launcher::query_status(dir, connect_options_for(ctx));
    if (st.state == "undefined")
        throw launcher::error("no VM named '" + st.name + "' in " +
                              dir.path().parent_path().string());
    if (ctx.json) {
        print_json(status_json(st));
        return exit_code::ok;
    }
    std::vector<std::pair<std::string, std::string>> rows{{"Name", st.name}, {"State", st.state}};
    if (!st.reason.empty())
        rows.emplace_back("Reason", st.reason);
    if (st.qemu_pid > 0)
        rows.emplace_back("qemu pid", std::to_string(st.qemu_pid));
    if (!st.accel.empty())
        rows.emplace_back("Accelerator", st.accel);
    if (!st.qemu_version.empty())
        rows.emplace_back("qemu", st.qemu_version);
    if (!st.machine.empty()) {
        rows.emplace_back("Machine", st.machine);
        rows.emplace_back("CPUs", std::to_string(st.cpus));
        rows.emplace_back("Memory", launcher::format_size(st.memory));
    }
    if (!st.standby.empty())
        rows.emplace_back("Standby", "ready for reset point " + st.standby);
    for (const auto& f : st.forwards)
        rows.emplace_back("Forward", f.protocol + " " + f.host_addr + ":" +
                                         std::to_string(f.host_port) + " -> guest port " +
                                         std::to_string(f.guest_port));
    rows.emplace_back("State dir", st.state_dir.string());
    std::cout << key_values(rows);
    if (!st.log_tail.empty()) {
        std::cout << "qemu's last words:\n";
        for (const auto& l : st.log_tail)
            std::cout << "  " << l << "\n";
    }
    return exit_code::ok;
}

int run_list(const context& ctx) {
    const auto root = state_root(ctx);
    json::array all;
    table t({"NAME", "STATE", "PID", "ACCEL", "MEMORY", "CPUS"});
    for (const auto& name : launcher::state_directory::list(root)) {
        auto options = connect_options_for(ctx);
        options.lock_timeout = 2s; // a busy VM is reported as such, not waited for
        auto st = launcher::query_status(launcher::state_directory(root, name), options);
        all.push_back(status_json(st));
        t.add({st.name, st.state, st.qemu_pid > 0 ? std::to_string(st.qemu_pid) : "-",
               st.accel.empty() ? "-" : st.accel,
               st.memory ? launcher::format_size(st.memory) : "-",
               st.cpus ? std::to_string(st.cpus) : "-"});
    }
    if (ctx.json)
        print_json(all);
    else
        std::cout << t.str();
    return exit_code::ok;
}

// 1 when gc could not remove something it found (permissions, a busy file) or could not look at
// a VM (its lock stayed held): it says which.
int left_in_place(const launcher::leftovers& found, bool dry_run) {
    int code = exit_code::ok;
    for (const auto& l : found.items)
        if (!dry_run && !l.removed) {
            std::cerr << "qmpkit: could not remove " << l.what << " " << l.path.string() << "\n";
            code = exit_code::failed;
        }
    for (const auto& busy : found.busy) {
        std::cerr << "qmpkit: not looked at: " << busy << "\n";
        code = exit_code::failed;
    }
    return code;
}

int run_gc(const context& ctx, bool dry_run) {
    const auto found = launcher::collect_leftovers(state_root(ctx), dry_run, ctx.lock_wait());
    if (ctx.json) {
        json::array all;
        for (const auto& l : found.items)
            all.push_back(json::object{{"what", l.what},
                                       {"path", l.path.string()},
                                       {"vm", l.vm},
                                       {"bytes", l.bytes},
                                       {"removed", l.removed}});
        print_json(all);
        return left_in_place(found, dry_run);
    }
    if (found.items.empty()) {
        std::cout << "nothing left behind\n";
        return left_in_place(found, dry_run);
    }
    table t({dry_run ? "WOULD REMOVE" : "REMOVED", "VM", "SIZE", "PATH"});
    for (const auto& l : found.items)
        t.add({dry_run || l.removed ? l.what : l.what + " (NOT removed)", l.vm.empty() ? "-" : l.vm,
               l.bytes ? launcher::format_size(l.bytes) : "-", l.path.string()});
    std::cout << t.str();
    return left_in_place(found, dry_run);
}

} // namespace

struct validate_options {
    std::vector<std::string> files;
    bool no_file_checks = false;
    bool print = false;
};

// Each definition read and checked as `start` reads and checks it, then the valid ones against
// each other (a lab's definitions share one host); nothing is started, made or changed. Exit 2
// when any has a problem.
int run_validate(const context& ctx, const validate_options& o) {
    struct checked {
        std::optional<launcher::vm_definition> def;
        std::vector<launcher::diagnostic> problems;
    };
    std::vector<checked> files;
    std::vector<launcher::vm_definition> valid;
    for (const auto& file : o.files) {
        auto& c = files.emplace_back();
        try {
            c.def = launcher::load_definition(file);
            c.problems = launcher::check_definition(*c.def, {.check_files = !o.no_file_checks});
        } catch (const launcher::error& e) {
            if (e.diagnostics().empty())
                throw;
            c.problems = e.diagnostics();
        }
        if (c.problems.empty())
            valid.push_back(*c.def);
    }
    const auto together = launcher::check_definitions_together(valid);
    for (auto& c : files)
        if (c.problems.empty())
            for (const auto& p : together)
                if (p.file == c.def->sources.file())
                    c.problems.push_back(p);

    int code = exit_code::ok;
    json::array report;
    bool printed = false;
    for (std::size_t i = 0; i < files.size(); ++i) {
        const auto& [def, problems] = files[i];
        if (!problems.empty())
            code = exit_code::usage;
        if (ctx.json) {
            json::array found;
            for (const auto& p : problems)
                found.push_back({{"file", p.file},
                                 {"line", p.line},
                                 {"column", p.column},
                                 {"field", p.field},
                                 {"message", p.message}});
            json::object entry{
                {"file", o.files[i]}, {"valid", problems.empty()}, {"problems", std::move(found)}};
            if (o.print && problems.empty())
                entry["definition"] = launcher::dump_definition(*def);
            report.push_back(std::move(entry));
            continue;
        }
        for (const auto& p : problems)
            std::cerr << launcher::to_string(p) << "\n";
        if (!problems.empty())
            continue;
        if (o.print) {
            std::cout << (printed ? "---\n" : "") << launcher::dump_definition(*def);
            printed = true;
        } else {
            std::cout << o.files[i] << ": valid\n";
        }
    }
    if (ctx.json)
        print_json(report);
    return code;
}

void register_lifecycle_commands(CLI::App& app, context& ctx) {
    auto add_start_options = [](CLI::App* cmd, start_options& o) {
        cmd->add_option("definition", o.definition, "the VM's YAML definition")
            ->required()
            ->check(existing_file());
        cmd->add_flag("--paused", o.paused, "start with the CPUs stopped");
        cmd->add_option("--shutdown-timeout", o.shutdown_timeout,
                        "seconds the guest gets to power off before qemu is stopped")
            ->capture_default_str()
            ->check(non_negative_number());
        cmd->add_option("--qemu", o.qemu, "the qemu binary")->capture_default_str();
    };

    auto s = std::make_shared<start_options>();
    auto* start =
        app.add_subcommand("start", "Start a VM in the background and return once QMP answers");
    add_start_options(start, *s);
    start->add_flag("--wait-ready", s->wait_ready,
                    "also wait for the guest's ready line on the console");
    start->add_option("--ready-timeout", s->ready_timeout, "seconds to wait for the ready line")
        ->capture_default_str()
        ->check(non_negative_number());
    start->callback([&ctx, s] { ctx.action = [&ctx, s] { return run_start(ctx, *s); }; });

    auto r = std::make_shared<start_options>();
    auto* run =
        app.add_subcommand("run", "Run a VM in the foreground, as a service manager expects "
                                  "(SIGTERM/SIGINT: graceful shutdown; exit code: how it ended)");
    add_start_options(run, *r);
    run->callback([&ctx, r] { ctx.action = [&ctx, r] { return run_foreground(ctx, *r); }; });

    auto v = std::make_shared<validate_options>();
    auto* validate = app.add_subcommand(
        "validate", "Check VM definitions without starting anything, each alone and against "
                    "each other (one VM name twice, an image two of them write, a host port "
                    "both forward): each problem as FILE:LINE:COLUMN: FIELD: message, exit code "
                    "2 if there is one");
    validate->add_option("definitions", v->files, "VM definitions (YAML)")->required();
    validate->add_flag("--no-file-checks", v->no_file_checks,
                       "leave out the checks of the files a definition names (kernel, images, "
                       "key files, shared directories): for a definition meant for another host");
    validate->add_flag("--print", v->print,
                       "print each valid definition as qmpkit reads it: every field, defaults "
                       "filled in, paths absolute (YAML documents; --json: in 'definition')");
    validate->callback([&ctx, v] { ctx.action = [&ctx, v] { return run_validate(ctx, *v); }; });

    auto wait = std::make_shared<std::pair<std::string, double>>("", 120);
    auto* wr = app.add_subcommand("wait-ready", "Wait for the guest's ready line on the console");
    wr->add_option("vm", wait->first, "VM name")->required();
    wr->add_option("--timeout", wait->second, "seconds")
        ->capture_default_str()
        ->check(non_negative_number());
    wr->callback([&ctx, wait] {
        ctx.action = [&ctx, wait] {
            auto line = launcher::wait_for_console_line(find_vm(ctx, wait->first), ready_marker,
                                                        milliseconds_of(wait->second));
            std::cout << line << "\n";
            return exit_code::ok;
        };
    });

    auto sd = std::make_shared<std::pair<std::string, double>>("", 60);
    auto* shutdown =
        app.add_subcommand("shutdown", "Power the guest off (guest agent, else ACPI), stopping "
                                       "qemu after a timeout");
    shutdown->add_option("vm", sd->first, "VM name")->required();
    shutdown->add_option("--timeout", sd->second, "seconds before qemu is stopped anyway")
        ->capture_default_str()
        ->check(non_negative_number());
    shutdown->callback([&ctx, sd] {
        ctx.action = [&ctx, sd] {
            auto how = launcher::shutdown_vm(find_vm(ctx, sd->first), milliseconds_of(sd->second),
                                             connect_options_for(ctx));
            std::cout << "VM " << sd->first << ": " << how << "\n";
            return exit_code::ok;
        };
    });

    auto d = std::make_shared<std::string>();
    auto* destroy =
        app.add_subcommand("destroy", "Stop a VM at once (the guest gets no chance to shut down)");
    destroy->add_option("vm", *d, "VM name")->required();
    destroy->callback([&ctx, d] {
        ctx.action = [&ctx, d] {
            launcher::destroy_vm(find_vm(ctx, *d), connect_options_for(ctx));
            std::cout << "VM " << *d << " destroyed\n";
            return exit_code::ok;
        };
    });

    auto rm = std::make_shared<std::string>();
    auto* remove = app.add_subcommand(
        "remove", "Forget a stopped VM: its state directory, overlays and reset points go; "
                  "images outside the state directory stay");
    remove->alias("undefine");
    remove->add_option("vm", *rm, "VM name")->required();
    remove->callback([&ctx, rm] {
        ctx.action = [&ctx, rm] {
            launcher::remove_vm(find_vm(ctx, *rm));
            std::cout << "VM " << *rm << " removed\n";
            return exit_code::ok;
        };
    });

    auto st = std::make_shared<std::string>();
    auto* status = app.add_subcommand("status", "Show a VM's state");
    status->add_option("vm", *st, "VM name or definition file")->required();
    status->callback([&ctx, st] { ctx.action = [&ctx, st] { return run_status(ctx, *st); }; });

    auto* list = app.add_subcommand("list", "List the VMs with their state");
    list->callback([&ctx] { ctx.action = [&ctx] { return run_list(ctx); }; });

    auto gc_dry_run = std::make_shared<bool>(false);
    auto* gc = app.add_subcommand(
        "gc", "Remove what killed VMs left behind: RAM files in /dev/shm no qemu uses, standbys "
              "of VMs that no longer run, directories of starts that died");
    gc->add_flag("--dry-run,-n", *gc_dry_run, "only list what would be removed");
    gc->callback([&ctx, gc_dry_run] {
        ctx.action = [&ctx, gc_dry_run] { return run_gc(ctx, *gc_dry_run); };
    });
}

} // namespace qmpkit::cli
