// snapshot create | list | current | info | dump | parent | revert | delete | check, and the
// virsh spellings (snapshot-create-as, snapshot-list, ...) so habits carry over.

#include "context.hpp"
#include "exit_codes.hpp"
#include "output.hpp"
#include "virsh_form.hpp"
#include "vm_lookup.hpp"

#include <qmpkit/snapshot/error.hpp>
#include <qmpkit/snapshot/snapshot_manager.hpp>
#include <qmpkit/snapshot/tree_view.hpp>

#include <boost/json.hpp>

#include <iostream>
#include <unistd.h>

namespace qmpkit::cli {
namespace {

namespace json = boost::json;
using namespace qmpkit::snapshot;

// A progress bar on a terminal; nothing under --json or when stderr is not a TTY.
std::function<void(const std::string&, double)> progress_for(const context& ctx) {
    if (ctx.json || !::isatty(STDERR_FILENO))
        return {};
    return [](const std::string& what, double fraction) {
        const int width = 30;
        const int filled = static_cast<int>(fraction * width);
        std::cerr << "\r" << what << " [" << std::string(static_cast<std::size_t>(filled), '#')
                  << std::string(static_cast<std::size_t>(width - filled), ' ') << "] "
                  << static_cast<int>(fraction * 100) << "%" << (fraction >= 1.0 ? "\n" : "")
                  << std::flush;
    };
}

// The VM argument may be a definition file: a VM never started gets its definition recorded,
// so offline snapshots work on it.
snapshot_manager manager_for(const context& ctx, const std::string& vm) {
    auto o = manager_options_for(ctx);
    o.progress = progress_for(ctx);
    auto dir = find_vm(ctx, vm);
    snapshot_manager manager(dir.vm_name(), o);
    if ((vm.ends_with(".yaml") || vm.ends_with(".yml")) &&
        !std::filesystem::exists(dir.definition_copy()))
        manager.adopt_definition(vm);
    return manager;
}

disk_choice parse_diskspec(const std::string& spec) {
    // disk[,snapshot=internal|external|no][,file=PATH]
    disk_choice c;
    std::size_t start = 0;
    bool first = true;
    while (start <= spec.size()) {
        auto comma = spec.find(',', start);
        auto part =
            spec.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
        if (first) {
            c.disk = part;
            first = false;
        } else if (part.rfind("snapshot=", 0) == 0) {
            auto how = part.substr(9);
            if (how == "no")
                c.how = disk_snapshot::mode::excluded;
            else if (auto m = disk_snapshot_mode_from_string(how))
                c.how = *m;
            else
                throw std::invalid_argument("--diskspec " + spec +
                                            ": snapshot= must be internal, external or no");
        } else if (part.rfind("file=", 0) == 0) {
            c.overlay = part.substr(5);
        } else {
            throw std::invalid_argument("--diskspec " + spec + ": unknown part '" + part + "'");
        }
        if (comma == std::string::npos)
            break;
        start = comma + 1;
    }
    if (c.disk.empty())
        throw std::invalid_argument("--diskspec " + spec + ": no disk name");
    return c;
}

// What virsh's snapshot-create-as flags mean here, in the note printed when one is given.
constexpr const char* atomic_note =
    "is the default: the disks of an external snapshot are always taken in one transaction";
constexpr const char* live_note =
    "is the default where qemu can do it: with --memspec the guest runs while its memory is "
    "saved and pauses only for the last pages and the overlays; an internal snapshot pauses the "
    "guest while qemu saves it, with or without --live";
constexpr const char* reuse_note =
    "is not supported: qmpkit always creates the overlay files and refuses existing ones";
constexpr const char* validate_note = "has no meaning here: qmpkit takes no snapshot XML";

struct create_options {
    std::string vm, name, description, memspec;
    std::vector<std::string> diskspecs;
    bool disk_only = false, halt = false, no_metadata = false, print_plan = false, quiesce = false,
         name_given = false;
};

int run_create(const context& ctx, const create_options& o) {
    create_request r;
    r.name = o.name;
    // An empty name typed out is a mistake, not a request for the default name.
    if (o.name_given)
        require_valid_snapshot_name(o.name);
    r.description = o.description;
    r.disk_only = o.disk_only;
    r.halt = o.halt;
    r.no_metadata = o.no_metadata;
    r.quiesce = o.quiesce;
    if (!o.memspec.empty()) {
        // virsh's --memspec is "file=PATH[,snapshot=external]"; a bare path works too.
        auto spec = o.memspec;
        if (spec.rfind("file=", 0) == 0)
            spec = spec.substr(5, spec.find(',') == std::string::npos ? std::string::npos
                                                                      : spec.find(',') - 5);
        r.memory_file = std::filesystem::absolute(spec);
    }
    for (const auto& s : o.diskspecs)
        r.disks.push_back(parse_diskspec(s));
    auto manager = manager_for(ctx, o.vm);
    if (o.print_plan) {
        print_plan(manager.plan(r));
        return exit_code::ok;
    }
    auto record = manager.create(r);
    if (ctx.json)
        print_json(to_json(record));
    else
        std::cout << "Snapshot " << record.name << " created (" << to_string(record.location)
                  << (record.memory ? ", with memory" : ", disks only")
                  << (record.quiesced ? ", quiesced" : "") << ")\n";
    return exit_code::ok;
}

// with_name: snapshot-create-as and `snapshot create` take a name; virsh's snapshot-create takes
// an XML description instead, which qmpkit has no use for, and names the snapshot by the time.
void add_create(CLI::App* cmd, context& ctx, bool with_name = true) {
    auto o = std::make_shared<create_options>();
    auto form = std::make_shared<virsh_form>(cmd);
    form->add_argument("vm", {"--domain"}, "VM name or definition file");
    if (with_name)
        form->add_argument("name", {"--name"},
                           "snapshot name (default: the time in seconds, as virsh names it)",
                           false);
    auto xml = std::make_shared<std::string>();
    if (!with_name)
        cmd->add_option("xmlfile", *xml, "virsh's snapshot XML: not taken (see below)");
    cmd->add_option("--description", o->description, "free text");
    cmd->add_flag("--disk-only", o->disk_only, "external overlays for the disks, no memory");
    cmd->add_option("--memspec", o->memspec, "external snapshot with memory saved to this file");
    cmd->add_option("--diskspec", o->diskspecs,
                    "disk[,snapshot=internal|external|no][,file=OVERLAY]");
    cmd->add_flag("--halt", o->halt, "stop the VM after the snapshot");
    cmd->add_flag("--quiesce", o->quiesce,
                  "with --disk-only: freeze the guest's file systems through its guest agent "
                  "while the overlays are taken");
    cmd->add_flag("--no-metadata", o->no_metadata, "take it, but keep no record");
    cmd->add_flag("--print-plan", o->print_plan, print_plan_help);
    form->add_note_flag("--atomic", atomic_note,
                        "accepted for virsh compatibility: " + std::string(atomic_note));
    form->add_note_flag("--live", live_note,
                        "accepted for virsh compatibility: " + std::string(live_note));
    form->add_note_flag("--reuse-external", reuse_note,
                        "accepted for virsh compatibility: " + std::string(reuse_note));
    form->add_note_flag("--validate", validate_note,
                        "accepted for virsh compatibility: " + std::string(validate_note));
    // The callback owns what the options write to: CLI11 keeps only references.
    cmd->callback([&ctx, o, form, cmd, with_name, xml] {
        if (!with_name && cmd->count("xmlfile") > 0)
            throw CLI::ValidationError(
                "snapshot-create takes no XML file: qmpkit has no snapshot XML; name the "
                "snapshot with snapshot-create-as VM NAME, and give the rest as options");
        form->finish();
        o->vm = form->value(0);
        if (with_name) {
            o->name = form->value(1);
            o->name_given = form->given(1);
        }
        ctx.action = [&ctx, o] { return run_create(ctx, *o); };
    });
}

struct list_options_cli {
    std::string vm;
    bool tree = false, roots = false, leaves = false, parent = false, internal = false,
         external = false, names = false;
};

void warn_about_drift(const context& ctx, snapshot_manager& m) {
    if (ctx.json)
        return;
    for (const auto& d : m.check())
        std::cerr << "qmpkit: warning: " << d.description << "\n";
}

void add_list(CLI::App* cmd, context& ctx) {
    auto o = std::make_shared<list_options_cli>();
    auto form = std::make_shared<virsh_form>(cmd);
    form->add_argument("vm", {"--domain"}, "VM name");
    cmd->add_flag("--tree", o->tree, "draw the snapshots as a tree");
    cmd->add_flag("--roots", o->roots, "only snapshots without a parent");
    cmd->add_flag("--leaves", o->leaves, "only snapshots without children");
    cmd->add_flag("--parent", o->parent, "show each snapshot's parent");
    cmd->add_flag("--internal", o->internal, "only internal snapshots");
    cmd->add_flag("--external", o->external, "only external snapshots");
    cmd->add_flag("--name", o->names, "the names alone, one a line (for scripts, as virsh's)");
    cmd->callback([&ctx, o, form] {
        form->finish();
        o->vm = form->value(0);
        ctx.action = [&ctx, o] {
            auto m = manager_for(ctx, o->vm);
            auto tree = m.tree();
            if (ctx.json) {
                print_json(to_json(tree));
                return exit_code::ok;
            }
            if (o->tree) {
                std::cout << render_tree(tree);
            } else {
                list_options l;
                l.roots = o->roots;
                l.leaves = o->leaves;
                l.parent_column = o->parent;
                l.names_only = o->names;
                if (o->internal)
                    l.location = snapshot_location::internal;
                if (o->external)
                    l.location = snapshot_location::external;
                std::cout << render_list(tree, l);
            }
            warn_about_drift(ctx, m);
            return exit_code::ok;
        };
    });
}

using named_action = std::function<int(const context&, snapshot_manager&, const std::string& vm,
                                       const std::string& name)>;

// A command on one snapshot of one VM. name_required: the snapshot must be named, by name or,
// with `current`, by --current (virsh's "the current snapshot").
std::shared_ptr<virsh_form> add_named(CLI::App* cmd, context& ctx, named_action run,
                                      bool name_required = true, bool current = false) {
    auto form = std::make_shared<virsh_form>(cmd);
    form->add_argument("vm", {"--domain"}, "VM name");
    form->add_argument("name", {"--snapshotname"}, "snapshot name", false);
    auto use_current = std::make_shared<bool>(false);
    if (current)
        cmd->add_flag("--current", *use_current, "the VM's current snapshot, instead of a name");
    cmd->callback([&ctx, form, run, name_required, use_current] {
        form->finish();
        if (*use_current && form->given(1))
            throw CLI::ValidationError("give a snapshot name or --current, not both");
        if (name_required && !*use_current && !form->given(1))
            throw CLI::RequiredError("name");
        auto vm = form->value(0);
        auto name = form->value(1);
        const bool check_name = form->given(1);
        ctx.action = [&ctx, vm, name, run, check_name, use_current] {
            // No snapshot can bear an invalid name: say what is wrong with it (a usage error)
            // rather than that it was not found.
            if (check_name)
                require_valid_snapshot_name(name);
            auto m = manager_for(ctx, vm);
            if (!*use_current)
                return run(ctx, m, vm, name);
            auto now = m.tree().current();
            if (!now)
                throw snapshot::error(error_kind::not_found,
                                      "VM '" + vm + "' has no current snapshot");
            return run(ctx, m, vm, *now);
        };
    });
    return form;
}

void register_all(CLI::App& app, CLI::App* group, context& ctx) {
    auto add = [&](const std::string& sub, const std::string& virsh, const std::string& help) {
        auto* nested = group->add_subcommand(sub, help);
        auto* alias = app.add_subcommand(virsh, help + " (virsh spelling)");
        alias->group("virsh spellings");
        return std::pair{nested, alias};
    };

    auto [create, create_as] = add("create", "snapshot-create-as", "Take a snapshot");
    add_create(create, ctx);
    add_create(create_as, ctx);
    auto* create_plain = app.add_subcommand(
        "snapshot-create", "Take a snapshot named by the time in seconds (virsh spelling)");
    create_plain->group("virsh spellings");
    add_create(create_plain, ctx, false);

    auto [list, list_v] = add("list", "snapshot-list", "List snapshots (--tree draws them)");
    add_list(list, ctx);
    add_list(list_v, ctx);

    auto current = [](const context& c, snapshot_manager& m, const std::string&,
                      const std::string& name) {
        if (!name.empty()) {
            m.set_current(name);
            std::cout << "current snapshot is now " << name << "\n";
            return exit_code::ok;
        }
        auto t = m.tree();
        if (!t.current())
            throw snapshot::error(error_kind::not_found, "the VM has no current snapshot");
        if (c.json)
            print_json(to_json(t.at(*t.current())));
        else
            std::cout << *t.current() << "\n";
        return exit_code::ok;
    };
    auto [cur, cur_v] = add("current", "snapshot-current",
                            "Show the current snapshot, or make NAME current (no revert)");
    add_named(cur, ctx, current, false);
    add_named(cur_v, ctx, current, false);

    auto info = [](const context& c, snapshot_manager& m, const std::string& vm,
                   const std::string& name) {
        auto t = m.tree();
        if (c.json)
            print_json(to_json(t.at(name)));
        else
            std::cout << render_info(t, name, vm);
        return exit_code::ok;
    };
    auto [inf, inf_v] = add("info", "snapshot-info", "Show a snapshot (virsh snapshot-info)");
    add_named(inf, ctx, info, true, true);
    add_named(inf_v, ctx, info, true, true);

    auto dump = [](const context& c, snapshot_manager& m, const std::string&,
                   const std::string& name) {
        auto t = m.tree();
        if (c.json)
            print_json(to_json(t.at(name)));
        else
            std::cout << to_yaml(t.at(name));
        return exit_code::ok;
    };
    auto [dmp, dmp_v] =
        add("dump", "snapshot-dumpxml", "Print a snapshot's metadata (YAML, or JSON with --json)");
    for (auto* cmd : {dmp, dmp_v})
        add_named(cmd, ctx, dump)
            ->add_note_flag("--security-info", "has no meaning here: the metadata holds no secrets",
                            "accepted for virsh compatibility: the metadata holds no secrets");

    auto parent = [](const context&, snapshot_manager& m, const std::string&,
                     const std::string& name) {
        auto p = m.tree().parent(name);
        if (!p)
            throw snapshot::error(error_kind::not_found, "snapshot '" + name + "' has no parent");
        std::cout << *p << "\n";
        return exit_code::ok;
    };
    auto [par, par_v] = add("parent", "snapshot-parent", "Print a snapshot's parent");
    add_named(par, ctx, parent, true, true);
    add_named(par_v, ctx, parent, true, true);

    auto revert_flags = std::make_shared<revert_request>();
    auto revert_print_plan = std::make_shared<bool>(false);
    auto [rev, rev_v] = add("revert", "snapshot-revert", "Bring the VM back to a snapshot");
    for (auto* cmd : {rev, rev_v}) {
        cmd->add_flag("--running", revert_flags->running, "leave the VM running");
        cmd->add_flag("--paused", revert_flags->paused, "leave the VM paused");
        cmd->add_flag("--force", revert_flags->force,
                      "revert even though the VM's configuration changed since");
        cmd->add_flag("--print-plan", *revert_print_plan, print_plan_help);
        add_named(
            cmd, ctx,
            [revert_flags, revert_print_plan](const context&, snapshot_manager& m,
                                              const std::string& vm, const std::string& name) {
                if (*revert_print_plan) {
                    print_plan(m.plan(name, *revert_flags));
                    return exit_code::ok;
                }
                m.revert(name, *revert_flags);
                std::cout << "VM " << vm << " reverted to " << name << "\n";
                return exit_code::ok;
            },
            true, true);
    }

    auto delete_flags = std::make_shared<delete_request>();
    auto delete_print_plan = std::make_shared<bool>(false);
    auto [del, del_v] =
        add("delete", "snapshot-delete", "Delete a snapshot (its children move to its parent)");
    for (auto* cmd : {del, del_v}) {
        cmd->add_flag("--children", delete_flags->children, "also every descendant");
        cmd->add_flag("--children-only", delete_flags->children_only, "only the descendants");
        cmd->add_flag("--metadata", delete_flags->metadata_only,
                      "forget it, keep the data in the images");
        cmd->add_flag("--print-plan", *delete_print_plan, print_plan_help);
        add_named(
            cmd, ctx,
            [delete_flags, delete_print_plan](const context& c, snapshot_manager& m,
                                              const std::string&, const std::string& name) {
                if (*delete_print_plan) {
                    print_plan(m.plan(name, *delete_flags));
                    return exit_code::ok;
                }
                auto gone = m.remove(name, *delete_flags);
                if (c.json)
                    print_json(json::value_from(gone));
                else
                    for (const auto& g : gone)
                        std::cout << "Snapshot " << g << " deleted\n";
                return exit_code::ok;
            },
            true, true);
    }

    auto* check =
        group->add_subcommand("check", "Compare the snapshot metadata with what the images hold");
    auto repair = std::make_shared<bool>(false);
    check->add_flag("--repair", *repair,
                    "finish or undo an interrupted operation, forget snapshots whose data is "
                    "gone, adopt snapshots every disk holds, remove qmpkit's leftover temporary "
                    "files; never deletes data qmpkit did not make");
    add_named(
        check, ctx,
        [repair](const context& c, snapshot_manager& m, const std::string& vm, const std::string&) {
            std::vector<std::string> done;
            std::vector<drift> found;
            if (*repair) {
                auto r = m.repair();
                done = std::move(r.done);
                found = std::move(r.remaining);
            } else {
                found = m.check();
            }
            if (c.json) {
                json::array problems;
                for (const auto& d : found)
                    problems.push_back({{"kind", to_string(d.what)},
                                        {"snapshot", d.snapshot},
                                        {"disk", d.disk},
                                        {"file", d.file.string()},
                                        {"description", d.description}});
                json::object out{{"problems", std::move(problems)}};
                if (*repair)
                    out["repaired"] = json::value_from(done);
                print_json(out);
            } else {
                for (const auto& line : done)
                    std::cout << "repaired: " << line << "\n";
                if (found.empty())
                    std::cout << "snapshots of " << vm << ": metadata and images agree\n";
                for (const auto& d : found)
                    std::cout << d.description << "\n";
            }
            // Non-zero while a problem remains (after --repair: one it leaves to a person).
            return found.empty() ? exit_code::ok : exit_code::failed;
        },
        false);
}

} // namespace

void register_snapshot_commands(CLI::App& app, context& ctx) {
    auto* group = app.add_subcommand("snapshot", "Snapshots: create, list, revert, delete, ...");
    group->require_subcommand(1);
    register_all(app, group, ctx);
}

} // namespace qmpkit::cli
