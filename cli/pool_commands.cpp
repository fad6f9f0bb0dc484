// pool create|lease|release|status|list|destroy — warm clones of a reset point, handed out one
// per test worker (snapshot/vm_pool.hpp)

#include "context.hpp"
#include "exit_codes.hpp"
#include "output.hpp"
#include "vm_lookup.hpp"

#include <qmpkit/snapshot/vm_pool.hpp>

#include <boost/json.hpp>

#include <ctime>
#include <iostream>

namespace qmpkit::cli {
namespace {

namespace json = boost::json;

snapshot::vm_pool pool_for(const context& ctx, const std::string& name) {
    return snapshot::vm_pool(name, manager_options_for(ctx));
}

std::string local_time(std::int64_t seconds) {
    const auto t = static_cast<std::time_t>(seconds);
    char text[32];
    std::strftime(text, sizeof text, "%Y-%m-%d %H:%M:%S", std::localtime(&t));
    return text;
}

void print_status(const snapshot::pool_status& p) {
    std::cout << key_values({{"Pool", p.name},
                             {"From", p.origin + ", reset point " + p.point},
                             {"Size", std::to_string(p.size)},
                             {"Lease timeout", std::to_string(p.lease_timeout.count()) + " s"},
                             {"Resets", std::string(launcher::to_string(p.strategy))}});
    if (p.destroying)
        std::cout << "Being destroyed (a destroy was interrupted: run pool destroy again)\n";
    table t({"VM", "STATE", "SINCE", "HOLDER", "LEASE EXPIRES"});
    for (const auto& m : p.members) {
        const bool leased = m.state == snapshot::member_state::leased;
        t.add({m.vm, std::string(snapshot::to_string(m.state)), local_time(m.since),
               leased ? m.holder : m.problem, leased ? local_time(m.expires_at) : ""});
    }
    std::cout << t.str();
}

json::object lease_json(const snapshot::vm_lease& l) {
    json::object o{{"pool", l.pool},
                   {"vm", l.vm},
                   {"lease", l.id},
                   {"state_dir", l.state_dir.string()},
                   {"qmp_socket", l.qmp_socket.string()},
                   {"serial_log", l.serial_log.string()},
                   {"leased_at", l.leased_at},
                   {"expires_at", l.expires_at},
                   {"waited_ms", l.waited.count()}};
    o["agent_socket"] = l.agent_socket ? json::value(l.agent_socket->string()) : nullptr;
    o["shell_socket"] = l.shell_socket ? json::value(l.shell_socket->string()) : nullptr;
    return o;
}

} // namespace

void register_pool_commands(CLI::App& app, context& ctx) {
    auto* pool = app.add_subcommand(
        "pool", "Warm clones of a reset point for test workers: create, lease, release, status, "
                "list, destroy");
    pool->require_subcommand(1);

    struct create_options {
        std::string name, from, point, strategy = "template";
        int size = 1;
        double lease_timeout = 600;
    };
    auto c = std::make_shared<create_options>();
    auto* create = pool->add_subcommand(
        "create", "Clone SIZE VMs from a VM's reset point, running and ready to lease");
    create->add_option("name", c->name, "pool name")->required();
    create->add_option("--from", c->from, "VM whose reset point to clone")->required();
    create->add_option("--point", c->point, "reset point (default: the newest)");
    create->add_option("--size,-n", c->size, "how many VMs")
        ->check(CLI::Range(1, 256))
        ->default_val(1);
    create
        ->add_option("--lease-timeout", c->lease_timeout,
                     "seconds a lease lives unless `pool lease --ttl` says otherwise; a worker "
                     "that dies without releasing loses its VM after it")
        ->check(CLI::Range(1.0, 1e7))
        ->default_val(600);
    create
        ->add_option("--strategy", c->strategy,
                     "how released VMs reset: template (a new qemu per reset) or standby (three "
                     "more qemus per VM kept ready)")
        ->check(CLI::IsMember({"template", "standby"}))
        ->default_val("template");
    create->callback([&ctx, c] {
        ctx.action = [&ctx, c] {
            snapshot::pool_spec spec;
            spec.origin = find_vm(ctx, c->from).vm_name();
            if (!c->point.empty())
                spec.point = c->point;
            spec.size = c->size;
            spec.lease_timeout = std::chrono::seconds(static_cast<long>(c->lease_timeout));
            spec.strategy = *launcher::reset_strategy_from_string(c->strategy);
            const auto p = pool_for(ctx, c->name).create(spec);
            if (ctx.json)
                print_json(snapshot::to_json(p));
            else
                std::cout << "Pool " << p.name << " created: " << p.size << " VM(s) from "
                          << p.origin << ", reset point " << p.point << "\n";
            return exit_code::ok;
        };
    });

    struct lease_options {
        std::string name, holder;
        double wait = 60, ttl = 0;
    };
    auto l = std::make_shared<lease_options>();
    auto* lease = pool->add_subcommand(
        "lease", "Take a ready VM from the pool; prints one JSON object (vm, lease, sockets)");
    lease->add_option("name", l->name, "pool name")->required();
    lease
        ->add_option("--wait", l->wait,
                     "seconds to wait for a VM to become free (0: fail at once); exit code 4 "
                     "when none did")
        ->check(CLI::Range(0.0, 1e7))
        ->default_val(60);
    lease
        ->add_option("--ttl", l->ttl,
                     "seconds until the lease lapses and the VM goes back to the pool (default: "
                     "the pool's lease timeout)")
        ->check(CLI::Range(1.0, 1e7));
    lease->add_option("--holder", l->holder,
                      "who holds the lease, shown by pool status (default: this process's pid)");
    lease->callback([&ctx, l] {
        ctx.action = [&ctx, l] {
            snapshot::lease_request r;
            r.wait = milliseconds_of(l->wait);
            if (l->ttl > 0)
                r.ttl = std::chrono::seconds(static_cast<long>(l->ttl));
            r.holder = l->holder;
            print_json(lease_json(pool_for(ctx, l->name).lease(r)));
            return exit_code::ok;
        };
    });

    struct release_options {
        std::string name, vm, lease;
        bool keep = false;
    };
    auto r = std::make_shared<release_options>();
    auto* release = pool->add_subcommand(
        "release", "Give a leased VM back: it is reset in the background and leased again");
    release->add_option("name", r->name, "pool name")->required();
    release->add_option("vm", r->vm, "the leased VM")->required();
    release->add_option("--lease", r->lease,
                        "the lease id `pool lease` printed: refused if that lease lapsed and the "
                        "VM went to someone else");
    release->add_flag("--keep", r->keep,
                      "keep the VM as it is, out of the pool (to look at a failed test); a new "
                      "VM takes its place");
    release->callback([&ctx, r] {
        ctx.action = [&ctx, r] {
            snapshot::release_request request;
            request.lease = r->lease;
            request.keep = r->keep;
            pool_for(ctx, r->name).release(r->vm, request);
            if (ctx.json)
                print_json(json::object{{"pool", r->name}, {"vm", r->vm}, {"kept", r->keep}});
            else if (r->keep)
                std::cout << "VM " << r->vm << " left the pool as it is (qmpkit console " << r->vm
                          << ", qmpkit destroy " << r->vm << " and remove " << r->vm
                          << " when done)\n";
            else
                std::cout << "VM " << r->vm << " released\n";
            return exit_code::ok;
        };
    });

    auto status_name = std::make_shared<std::string>();
    auto* status = pool->add_subcommand("status", "A pool's VMs and their leases");
    status->add_option("name", *status_name, "pool name")->required();
    status->callback([&ctx, status_name] {
        ctx.action = [&ctx, status_name] {
            const auto p = pool_for(ctx, *status_name).status();
            if (ctx.json)
                print_json(snapshot::to_json(p));
            else
                print_status(p);
            return exit_code::ok;
        };
    });

    auto* list = pool->add_subcommand("list", "The pools");
    list->callback([&ctx] {
        ctx.action = [&ctx] {
            const auto names = snapshot::vm_pool::list(manager_options_for(ctx));
            if (ctx.json) {
                json::array pools;
                for (const auto& n : names)
                    pools.push_back(snapshot::to_json(pool_for(ctx, n).status()));
                print_json(pools);
                return exit_code::ok;
            }
            table t({"POOL", "FROM", "SIZE", "FREE", "LEASED"});
            for (const auto& n : names) {
                const auto p = pool_for(ctx, n).status();
                int free = 0, leased = 0;
                for (const auto& m : p.members) {
                    free += m.state == snapshot::member_state::free;
                    leased += m.state == snapshot::member_state::leased;
                }
                t.add({p.name, p.origin + "/" + p.point, std::to_string(p.size),
                       std::to_string(free), std::to_string(leased)});
            }
            std::cout << t.str();
            return exit_code::ok;
        };
    });

    auto destroy_name = std::make_shared<std::string>();
    auto* destroy =
        pool->add_subcommand("destroy", "Stop and remove every VM of the pool, leased or not");
    destroy->add_option("name", *destroy_name, "pool name")->required();
    destroy->callback([&ctx, destroy_name] {
        ctx.action = [&ctx, destroy_name] {
            pool_for(ctx, *destroy_name).destroy();
            if (!ctx.json)
                std::cout << "Pool " << *destroy_name << " destroyed\n";
            else
                print_json(json::object{{"pool", *destroy_name}, {"destroyed", true}});
            return exit_code::ok;
        };
    });
}

} // namespace qmpkit::cli
