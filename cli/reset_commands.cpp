// reset VM [TARGET] — back to a reset point or snapshot, fast; reset-point create|list|delete;
// clone VM --count N — new VMs from a reset point

#include "context.hpp"
#include "exit_codes.hpp"
#include "output.hpp"
#include "vm_lookup.hpp"

#include <qmpkit/snapshot/tree_view.hpp>
#include <qmpkit/snapshot/vm_reset.hpp>

#include <boost/json.hpp>

#include <iostream>

namespace qmpkit::cli {
namespace {

namespace json = boost::json;

snapshot::vm_reset reset_for(const context& ctx, const std::string& vm) {
    return snapshot::vm_reset(find_vm(ctx, vm).vm_name(), manager_options_for(ctx));
}

json::object point_json(const snapshot::reset_point& p) {
    json::array disks;
    for (const auto& d : p.disks)
        disks.push_back({{"name", d.name}, {"base", d.base.string()}});
    return {{"name", p.name},
            {"created_at", p.created_at},
            {"ram", p.ram.string()},
            {"device_state", p.device_state.string()},
            {"disks", std::move(disks)}};
}

} // namespace

void register_reset_commands(CLI::App& app, context& ctx) {
    struct reset_options {
        std::string vm, target;
        bool paused = false, print_plan = false;
    };
    auto r = std::make_shared<reset_options>();
    auto* reset = app.add_subcommand(
        "reset", "Bring a VM back to a reset point or snapshot, the fastest way its "
                 "definition allows (reset.strategy)");
    reset->add_option("vm", r->vm, "VM name")->required();
    reset->add_option("target", r->target,
                      "reset point or snapshot (default: the newest reset point, or the "
                      "current snapshot)");
    reset->add_flag("--paused", r->paused, "leave it paused");
    reset->add_flag("--print-plan", r->print_plan, print_plan_help);
    reset->callback([&ctx, r] {
        ctx.action = [&ctx, r] {
            const auto target =
                r->target.empty() ? std::nullopt : std::optional<std::string>(r->target);
            if (r->print_plan) {
                print_plan(reset_for(ctx, r->vm).plan(target, r->paused));
                return exit_code::ok;
            }
            auto result =
                reset_for(ctx, r->vm)
                    .reset(r->target.empty() ? std::nullopt : std::optional<std::string>(r->target),
                           r->paused);
            const double ms = static_cast<double>(result.took.count()) / 1000.0;
            if (ctx.json) {
                json::object out{
                    {"strategy", result.strategy}, {"target", result.target}, {"ms", ms}};
                if (!result.fallback.empty())
                    out["fallback"] = result.fallback;
                print_json(out);
            } else {
                std::cout << "VM " << r->vm << " reset to " << result.target << " ("
                          << result.strategy << ", " << ms << " ms)\n";
                if (!result.fallback.empty())
                    std::cout << "  by template, not by standby: " << result.fallback << "\n";
            }
            return exit_code::ok;
        };
    });

    struct clone_options {
        std::string vm, point, prefix;
        int count = 1;
        bool paused = false;
        bool new_identity = false;
    };
    auto cl = std::make_shared<clone_options>();
    auto* clone = app.add_subcommand(
        "clone", "Start new VMs from a reset point, without booting: each has its own name, "
                 "state and overlays, and they share the point's RAM copy-on-write");
    clone->add_option("vm", cl->vm, "VM whose reset point to clone")->required();
    clone->add_option("--count,-n", cl->count, "how many clones")
        ->check(CLI::Range(1, 256))
        ->default_val(1);
    clone->add_option("--point", cl->point, "reset point (default: the newest)");
    clone->add_option("--prefix", cl->prefix,
                      "clones are named PREFIX1, PREFIX2, ... (default: VM-clone-)");
    clone->add_flag("--paused", cl->paused, "leave them paused");
    clone->add_flag(
        "--new-identity", cl->new_identity,
        "give each clone, through the guest agent, its own machine-id, SSH host keys and "
        "host name (its VM name): without it they are the origin's");
    clone->callback([&ctx, cl] {
        ctx.action = [&ctx, cl] {
            snapshot::clone_request request;
            request.count = cl->count;
            request.prefix = cl->prefix;
            request.paused = cl->paused;
            request.new_identity = cl->new_identity;
            if (!cl->point.empty())
                request.point = cl->point;
            const auto result = reset_for(ctx, cl->vm).clone(request);
            const double ms = static_cast<double>(result.took.count()) / 1000.0;
            if (ctx.json) {
                json::array names;
                for (const auto& n : result.names)
                    names.emplace_back(n);
                print_json(json::object{{"clones", std::move(names)}, {"ms", ms}});
            } else {
                for (const auto& n : result.names)
                    std::cout << "VM " << n << " started from " << cl->vm << "\n";
                std::cout << result.names.size() << " clone(s) in " << ms << " ms\n";
            }
            return exit_code::ok;
        };
    });

    auto* points = app.add_subcommand("reset-point", "Reset points: create, list, delete");
    points->require_subcommand(1);
    struct create_options {
        std::string vm, name;
        bool print_plan = false;
    };
    auto c = std::make_shared<create_options>();
    auto* create = points->add_subcommand("create", "Take a reset point of a running VM");
    create->add_option("vm", c->vm, "VM name")->required();
    create->add_option("name", c->name, "reset point name")->required();
    create->add_flag("--print-plan", c->print_plan, print_plan_help);
    create->callback([&ctx, c] {
        ctx.action = [&ctx, c] {
            // A point is a directory named after it: refuse names that would leave reset/.
            snapshot::require_valid_snapshot_name(c->name, "reset point name");
            if (c->print_plan) {
                print_plan(reset_for(ctx, c->vm).plan_point(c->name));
                return exit_code::ok;
            }
            auto p = reset_for(ctx, c->vm).create_point(c->name);
            if (ctx.json)
                print_json(point_json(p));
            else
                std::cout << "Reset point " << p.name << " created\n";
            return exit_code::ok;
        };
    });
    auto l = std::make_shared<std::string>();
    auto* list = points->add_subcommand("list", "List a VM's reset points");
    list->add_option("vm", *l, "VM name")->required();
    list->callback([&ctx, l] {
        ctx.action = [&ctx, l] {
            auto all = reset_for(ctx, *l).points();
            if (ctx.json) {
                json::array a;
                for (const auto& p : all)
                    a.push_back(point_json(p));
                print_json(a);
            } else {
                table t({"NAME", "CREATED", "DISKS"});
                for (const auto& p : all)
                    t.add({p.name, snapshot::format_local_time(p.created_at),
                           std::to_string(p.disks.size())});
                std::cout << t.str();
            }
            return exit_code::ok;
        };
    });
    auto d = std::make_shared<std::pair<std::string, std::string>>();
    auto* del = points->add_subcommand("delete", "Delete a reset point");
    del->add_option("vm", d->first, "VM name")->required();
    del->add_option("name", d->second, "reset point name")->required();
    del->callback([&ctx, d] {
        ctx.action = [&ctx, d] {
            snapshot::require_valid_snapshot_name(d->second, "reset point name");
            reset_for(ctx, d->first).remove_point(d->second);
            std::cout << "Reset point " << d->second << " deleted\n";
            return exit_code::ok;
        };
    });
}

} // namespace qmpkit::cli
