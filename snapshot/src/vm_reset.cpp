#include "clone_identity.hpp"
#include "device_state.hpp"
#include "free_space.hpp"
#include "guest_clock.hpp"
#include "interrupted_operation.hpp"
#include "memory_state.hpp"
#include "operation_journal.hpp"
#include "plan/plan_executor.hpp"
#include "plan/point_plan.hpp"
#include "plan/reset_plan.hpp"
#include "reset_files.hpp"
#include "share_mounts.hpp"
#include "vm_context.hpp"

#include <qmpkit/launcher/cloud_init.hpp>
#include <qmpkit/launcher/definition_validator.hpp>
#include <qmpkit/launcher/error.hpp>
#include <qmpkit/launcher/internal/fault_point.hpp>
#include <qmpkit/launcher/qemu_img.hpp>
#include <qmpkit/launcher/standby.hpp>
#include <qmpkit/launcher/vm_agent.hpp>
#include <qmpkit/snapshot/vm_reset.hpp>

#include <boost/json.hpp>
#include <spdlog/logger.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <future>
#include <iostream>
#include <unistd.h>

namespace qmpkit::snapshot {
namespace {

using detail::arm_for_device_state;
using detail::fresh_instance;
using detail::load_device_state;
using detail::point_file;
using detail::read_points;
using detail::set_guest_clock;
using detail::superseded_overlays;
using detail::sweep_overlays;
using detail::write_point;

namespace json = boost::json;
namespace fs = std::filesystem;
using namespace std::chrono_literals;
using detail::vm_context;

launcher::state_directory state_of(const std::string& vm, const manager_options& o) {
    return {o.state_root.empty() ? launcher::default_state_root() : o.state_root, vm};
}

// Copies only the parts of the file that hold data: guest RAM is mostly holes at first.
// An operation killed half-way (a reset point's creation) is finished or taken back before
// this one: a reset must find the VM whole, not refuse.
void settle_left_operation(vm_context& ctx) {
    std::error_code ec;
    if (fs::exists(detail::journal_file(ctx.dir), ec))
        ctx.connect_if_running(); // the repair may need qemu
    const auto done = detail::resolve_left_operation(ctx);
    for (const auto& line : done)
        if (ctx.options->logger)
            ctx.options->logger->warn("{}", line);
    // It may have resumed the guest: what this operation found is no longer so.
    if (!done.empty() && ctx.qmp)
        ctx.refresh_state();
}

// A clone in the making carries a marker naming the process that makes it. A clone left with
// a marker by a process that is gone (killed half-way through `clone`) never got the whole
// guest, or its siblings did not: it is not a VM anyone asked for, and the next clone removes
// it (clones are all or nothing).
fs::path clone_marker(const launcher::state_directory& dir) {
    return dir.path() / "clone-in-progress.json";
}

void write_clone_marker(const launcher::state_directory& dir, const std::string& origin) {
    launcher::write_file_atomically(
        clone_marker(dir),
        json::serialize(json::object{{"origin", origin}, {"pid", ::getpid()}}) + "\n");
}

// Stops a clone that is not whole and removes its state directory.
void remove_clone(const launcher::state_directory& dir) {
    if (launcher::is_running(dir))
        launcher::destroy_vm(dir, {});
    fs::remove_all(dir.path());
}

void sweep_interrupted_clones(const fs::path& root, const manager_options& options) {
    // Not state_directory::list: a clone killed early has no definition yet.
    std::error_code ec;
    for (const auto& entry : fs::directory_iterator(root, ec)) {
        const auto name = entry.path().filename().string();
        if (!entry.is_directory(ec) || !launcher::is_valid_vm_name(name))
            continue;
        const launcher::state_directory dir(root, name);
        if (!fs::exists(clone_marker(dir), ec))
            continue;
        pid_t maker = 0;
        try {
            maker = static_cast<pid_t>(json::parse(launcher::read_file(clone_marker(dir)))
                                           .at("pid")
                                           .to_number<std::int64_t>());
        } catch (const std::exception&) {
            continue; // being written, or not ours to judge
        }
        if (maker > 0 && launcher::process_alive(maker))
            continue; // still in the making
        try {
            remove_clone(dir);
            if (options.logger)
                options.logger->warn("removed clone '{}': the clone that made it was interrupted",
                                     name);
        } catch (const std::exception& e) {
            if (options.logger)
                options.logger->warn("could not remove the interrupted clone '{}': {}", name,
                                     e.what());
        }
    }
}

// What a standby is prepared for: the point, and which incarnation of its name.
std::string standby_key(const reset_point& p) {
    return p.name + "@" + std::to_string(p.created_at);
}

// Logs how long each step of a reset took.
class step_timer {
public:
    explicit step_timer(std::shared_ptr<spdlog::logger> logger)
        : logger_(std::move(logger)) {}
    void operator()(const char* what) {
        const auto now = std::chrono::steady_clock::now();
        if (logger_)
            logger_->debug(
                "reset: {} took {} us", what,
                std::chrono::duration_cast<std::chrono::microseconds>(now - last_).count());
        last_ = now;
    }

private:
    std::shared_ptr<spdlog::logger> logger_;
    std::chrono::steady_clock::time_point last_ = std::chrono::steady_clock::now();
};

// The standby strategy: the qemu prepared for this point, which has loaded the point's device
// state already and waits paused at it, takes the VM's place; the old one is told to quit and
// ends off the critical path. nullopt when there is no usable standby (the caller falls back to
// the template strategy, and `why_not` says why).
std::optional<launcher::vm_definition> reset_from_standby(vm_context& ctx, const reset_point& point,
                                                          bool paused, step_timer& step,
                                                          std::string& why_not) {
    const auto key = standby_key(point);
    auto standby = launcher::find_standby(ctx.dir, key, 0s);
    const auto& logger = ctx.options->logger;
    if (!standby && !launcher::standby_being_prepared(ctx.dir)) {
        why_not = reset_fallback::none_on_its_way;
    } else if (!standby) {
        // Resets that follow each other faster than standbys are prepared: the one on its way
        // is taken the moment it is ready, still sooner than starting a qemu here.
        if (logger)
            logger->debug("reset: no standby is ready yet; waiting for the one being prepared");
        const auto deadline = std::chrono::steady_clock::now() + 10s;
        standby = launcher::find_standby(ctx.dir, key, 10s);
        if (!standby)
            why_not = std::chrono::steady_clock::now() >= deadline
                          ? reset_fallback::none_in_time
                          : reset_fallback::preparation_made_none;
    }
    step("finding the standby");
    if (!standby) {
        if (logger)
            logger->debug("reset: no standby for reset point '{}' ({}): resetting by template",
                          point.name, why_not);
        return std::nullopt;
    }
    // The qemu to end once the standby has its place (retire_replaced_qemu checks it still runs
    // this VM).
    const auto replaced = launcher::read_runtime_info(ctx.dir);
    std::optional<qmp::client> qmp;
    try {
        qmp::client_options o;
        o.logger = ctx.options->logger;
        qmp.emplace(o);
        qmp->connect(standby->files.qmp_socket());
        launcher::fault_point("reset.standby.before-load", standby->runtime.qemu_pid);
        // A ready standby has loaded the state while it was prepared (see prepare_standby);
        // should it still be waiting for it, it is loaded here.
        const auto status = qmp->execute("query-status");
        if (status.at("status").as_string() == "inmigrate")
            load_device_state(*qmp, point.device_state, true);
        step("checking the standby's state");
        launcher::fault_point("reset.standby.after-load", standby->runtime.qemu_pid);
    } catch (const std::exception& e) {
        why_not = std::string(reset_fallback::standby_failed) + e.what();
        if (ctx.options->logger)
            ctx.options->logger->warn("{}; resetting without it", why_not);
        launcher::discard_standbys(ctx.dir);
        return std::nullopt;
    }
    launcher::promote_standby(ctx.dir, *standby);
    step("promoting the standby");
    launcher::fault_point("reset.standby.after-promote", ctx.dir);
    // The old guest is told to stop before the new one runs (on TCG they would share the CPUs),
    // and its end takes CPU time only when nothing else wants it.
    ctx.qmp.reset();
    if (replaced)
        launcher::retire_replaced_qemu(ctx.dir, *replaced);
    step("retiring the old qemu");
    if (!paused)
        qmp->execute("cont");
    step("cont");
    ctx.qmp = std::move(qmp);
    ctx.def = standby->definition;
    return standby->definition;
}

// How many ready standbys a VM keeps for its reset point. Refilling one takes ~0.2 s under TCG
// here; with three, resets 0.2 s apart found one ready every time (with two, the median reset
// waited 11-15 ms for one on its way).
constexpr int standby_pool = 3;

// `replaced`: the definition a reset replaced, whose files nothing keeps are removed in the
// background process, after the caller has returned. The plan lives on in each standby's
// supervisor: the one a reset promotes prepares the next standbys with it.
void prepare_standby(const launcher::state_directory& dir, const reset_point& point,
                     std::optional<launcher::vm_definition> replaced = {}) {
    launcher::standby_plan plan;
    plan.key = standby_key(point);
    plan.replaced = std::move(replaced);
    plan.superseded = [dir](const launcher::vm_definition& replaced,
                            const launcher::vm_definition& now) {
        return superseded_overlays(dir, replaced, now);
    };
    plan.pool = standby_pool;
    plan.prepare = [point, dir] {
        return fresh_instance(point, dir.vm_name(), dir.overlays(), dir.definition_copy());
    };
    plan.tidy_up = [dir](const std::vector<fs::path>& owned) {
        // Only while no operation holds the VM: a reset point being taken makes overlays too.
        // Never waits: a reset may hold the VM's lock while it waits for this standby.
        try {
            auto lock = launcher::vm_lock::acquire(dir.lock_file(), "tidying up overlays", 0s);
            sweep_overlays(dir, owned);
        } catch (const launcher::error&) {
            // Busy: a later preparation tidies up.
        }
    };
    // Tidying up while standbys were prepared may have found the VM busy every time: once more
    // with the pool full, waiting a moment for the VM.
    plan.finish = [dir, key = plan.key] {
        try {
            auto lock = launcher::vm_lock::acquire(dir.lock_file(), "tidying up overlays", 2s);
            // A pool holds no more than its size, whatever overlapping preparations made.
            if (const auto surplus =
                    launcher::trim_standbys(dir, key, static_cast<std::size_t>(standby_pool)))
                std::cerr << "removed " << surplus << " standby qemu(s) beyond the pool of "
                          << standby_pool << "\n";
            sweep_overlays(dir);
        } catch (const launcher::error&) {
            // Busy for long: a later preparation tidies up.
        }
    };
    // The device state is loaded now, off the critical path: the standby then waits paused at
    // the point, and a reset only has to promote it and continue. Nothing in a paused qemu
    // changes the guest's state until `cont`.
    plan.arm = [state = point.device_state](qmp::client& qmp) {
        arm_for_device_state(qmp);
        load_device_state(qmp, state, true);
    };
    plan.launch.state_root = dir.path().parent_path();
    plan.launch.memory_template = point.ram;
    plan.launch.extra_args = {"-incoming", "defer"};
    // Without -S qemu would start the guest the moment the state is in; a reset may want it
    // paused.
    plan.launch.paused = true;
    launcher::prepare_standby_in_background(dir, std::move(plan));
}

detail::reset_facts reset_facts_of(const vm_context& ctx, const std::vector<reset_point>& points,
                                   const std::optional<std::string>& target, bool paused) {
    detail::reset_facts f;
    f.def = ctx.def;
    f.qemu_runs = ctx.running() || launcher::is_running(ctx.dir);
    f.definition_file = ctx.dir.definition_copy();
    f.overlays_dir = ctx.dir.overlays();
    f.points = points;
    f.target = target;
    f.paused = paused;
    f.host = detail::real_host();
    return f;
}

// A reset of a VM without reset points (strategy loadvm) is a revert to `target`, or to the
// current snapshot, left running unless `paused`.
std::pair<std::string, revert_request> loadvm_revert(const std::string& vm,
                                                     const snapshot_manager& snapshots,
                                                     const std::optional<std::string>& target,
                                                     bool paused) {
    auto name = target;
    if (!name)
        name = snapshots.tree().current();
    if (!name)
        throw error(error_kind::not_found, "VM '" + vm + "' has no current snapshot to reset to");
    revert_request r;
    r.running = !paused;
    r.paused = paused;
    return {*name, r};
}

} // namespace

vm_reset::vm_reset(std::string vm, manager_options options)
    : vm_(std::move(vm))
    , options_(std::move(options)) {}

std::vector<reset_point> vm_reset::points() const {
    return read_points(state_of(vm_, options_));
}

namespace {

// What a reset point's plan is made from (point_plan.hpp).
detail::point_facts point_facts_of(vm_context& ctx, const std::string& name) {
    detail::point_facts f;
    f.vm = ctx.dir.vm_name();
    f.name = name;
    f.def = ctx.def;
    f.qemu_runs = ctx.running();
    f.state = ctx.state;
    f.now = detail::now_seconds();
    f.pid = ::getpid();
    f.host = detail::real_host();
    f.ram_file = ctx.dir.ram_file();
    const auto runtime = launcher::read_runtime_info(ctx.dir);
    f.runs_on_own_ram =
        runtime && std::any_of(runtime->command_line.begin(), runtime->command_line.end(),
                               [&](const std::string& a) {
                                   return a.find(f.ram_file.string()) != std::string::npos;
                               });
    f.points_dir = ctx.dir.reset_points();
    f.overlays_dir = ctx.dir.overlays();
    if (ctx.qmp)
        f.live = detail::live_disks(*ctx.qmp);
    return f;
}

} // namespace

reset_point vm_reset::create_point(const std::string& name) {
    require_valid_snapshot_name(name, "reset point name");
    vm_context ctx(vm_, options_, "creating a reset point");
    settle_left_operation(ctx);
    ctx.require_whole_guest("create a reset point");
    const auto plan = detail::plan_point_create(point_facts_of(ctx, name));
    try {
        detail::run_plan(ctx, plan.steps);
    } catch (const std::exception& e) {
        if (const auto hint = detail::full_file_system_hint({plan.dir, ctx.dir.overlays()});
            !hint.empty())
            throw error(error_kind::other, e.what() + hint);
        throw;
    }
    // auto resets by standby once there is a point (see reset()).
    if (ctx.def.reset.strategy == launcher::reset_strategy::standby ||
        ctx.def.reset.strategy == launcher::reset_strategy::automatic)
        prepare_standby(ctx.dir, plan.point);
    return plan.point;
}

std::vector<boost::json::object> vm_reset::plan_point(const std::string& name) const {
    require_valid_snapshot_name(name, "reset point name");
    vm_context ctx(vm_, options_, "planning a reset point");
    ctx.require_whole_guest("create a reset point");
    auto steps = detail::describe(detail::plan_point_create(point_facts_of(ctx, name)).steps);
    if (std::error_code ec; fs::exists(detail::journal_file(ctx.dir), ec))
        steps.insert(steps.begin(),
                     boost::json::object{{"first", "resolve the interrupted operation its "
                                                   "journal names (as snapshot check --repair)"}});
    return steps;
}

void vm_reset::remove_point(const std::string& name) {
    require_valid_snapshot_name(name, "reset point name");
    vm_context ctx(vm_, options_, "removing a reset point");
    const auto dir = ctx.dir.reset_points() / name;
    if (!fs::exists(point_file(dir)))
        throw error(error_kind::not_found,
                    "VM '" + vm_ + "' has no reset point named '" + name + "'");
    // The VM, or a clone of it, may run on this point's RAM.
    const auto root = ctx.dir.path().parent_path();
    for (const auto& other : launcher::state_directory::list(root)) {
        const launcher::state_directory d(root, other);
        if (!launcher::is_running(d))
            continue;
        const auto runtime = launcher::read_runtime_info(d);
        for (const auto& a : runtime ? runtime->command_line : std::vector<std::string>{})
            if (a.find(dir.string()) != std::string::npos)
                throw error(error_kind::running, "VM '" + other + "' runs on reset point '" + name +
                                                     "' of VM '" + vm_ + "': stop it first");
    }
    launcher::discard_standbys(ctx.dir);
    fs::remove_all(dir);
}

reset_result vm_reset::reset(const std::optional<std::string>& target, bool paused) {
    const auto started = std::chrono::steady_clock::now();
    step_timer step(options_.logger);
    const auto state = state_of(vm_, options_);
    const auto def = launcher::load_definition(state.definition_copy());
    const auto points = read_points(state);
    step("reading the definition and the reset points");
    const auto strategy = detail::effective_strategy(def, !points.empty());

    reset_result result;
    if (strategy == launcher::reset_strategy::loadvm) {
        snapshot_manager snapshots(vm_, options_);
        const auto [name, r] = loadvm_revert(vm_, snapshots, target, paused);
        snapshots.revert(name, r);
        result.strategy = "loadvm";
        result.target = name;
    } else {
        const bool standby = strategy == launcher::reset_strategy::standby;
        // After a standby reset, what the background processes need: the VM's definition before
        // and after, and the guest lock for the clock setter.
        launcher::vm_definition old_definition;
        std::optional<launcher::vm_definition> now;
        std::optional<launcher::vm_lock> guest_lock;
        // The point is chosen first; the template steps are planned only when they are needed
        // (a standby reset that finds its standby spends nothing on them).
        const auto& point = detail::choose_point(vm_, points, target, [](const fs::path& f) {
            std::error_code ec;
            return fs::exists(f, ec);
        });
        detail::reset_afterwards afterwards;
        {
            vm_context ctx(vm_, options_, "resetting the VM",
                           standby ? vm_context::session::on_demand : vm_context::session::now);
            settle_left_operation(ctx);
            step(standby ? "locking the VM" : "locking the VM and connecting to its qemu");
            old_definition = ctx.def;
            if (standby)
                now = reset_from_standby(ctx, point, paused, step, result.fallback);
            result.strategy = now ? "standby" : "template";
            if (now) {
                afterwards = detail::afterwards_of(standby, paused, *now);
                // The promoted standby's supervisor prepares the next ones, with the plan that
                // made it (launcher::promote_standby): nothing to fork for them here.
                afterwards.prepare_standbys = false;
            } else {
                auto plan =
                    detail::plan_reset(reset_facts_of(ctx, points, target, paused), standby);
                detail::run_plan(ctx, plan.steps);
                step("resetting by template");
                now = ctx.def;
                afterwards = plan.afterwards;
            }
            result.target = point.name;
            if (afterwards.set_clock_in_background) {
                // The clock is set off the caller's path (below), under the guest lock, taken
                // here, while this holds the VM, so that the next command in the guest comes
                // after it; the next reset, which does not talk to the guest, does not wait. The
                // lock is busy only while the setter of the last reset still talks to the qemu
                // this one replaced: the background process then waits for it.
                try {
                    guest_lock.emplace(launcher::lock_guest(state, 0ms));
                } catch (const launcher::error&) {
                }
            }
        }
        // The guest runs. What is left goes to background processes, forked only now that this
        // process has let go of the VM and freed what it used: a page this process writes after
        // a fork is copied first, which cost the caller 1-3 ms here.
        if (afterwards.prepare_standbys) {
            // After a fallback to the template strategy, the next standbys. The process that
            // prepares them works out and removes the replaced qemu's overlays first.
            prepare_standby(state, point, old_definition);
            step("handing the clean-up to the background");
        }
        // The agent and hwclock in a guest just resumed take a quarter of a second on TCG.
        if (afterwards.set_clock_in_background) {
            auto work = [state, def = *now,
                         logger = options_.logger](std::optional<launcher::vm_lock> held) {
                set_guest_clock(state, def, logger, std::move(held));
            };
            if (guest_lock)
                launcher::finish_in_background_holding(
                    state, std::move(*guest_lock),
                    [work](launcher::vm_lock& held) { work(std::move(held)); });
            else
                launcher::finish_in_background(state, [work] { work(std::nullopt); });
        }
    }
    result.took = std::chrono::duration_cast<std::chrono::microseconds>(
        std::chrono::steady_clock::now() - started);
    return result;
}

std::vector<boost::json::object> vm_reset::plan(const std::optional<std::string>& target,
                                                bool paused) const {
    const auto state = state_of(vm_, options_);
    const auto def = launcher::load_definition(state.definition_copy());
    const auto points = read_points(state);
    const auto strategy = detail::effective_strategy(def, !points.empty());
    if (strategy == launcher::reset_strategy::loadvm) {
        snapshot_manager snapshots(vm_, options_);
        const auto [name, r] = loadvm_revert(vm_, snapshots, target, paused);
        return snapshots.plan(name, r);
    }
    vm_context ctx(vm_, options_, "planning a reset", vm_context::session::on_demand);
    auto steps =
        detail::describe(detail::plan_reset(reset_facts_of(ctx, points, target, paused),
                                            strategy == launcher::reset_strategy::standby));
    // A reset resolves an operation left interrupted first, as `snapshot check --repair` would.
    if (std::error_code ec; fs::exists(detail::journal_file(ctx.dir), ec))
        steps.insert(steps.begin(),
                     boost::json::object{{"first", "resolve the interrupted operation its "
                                                   "journal names (as snapshot check --repair)"}});
    return steps;
}

clone_result vm_reset::clone(const clone_request& request) {
    const auto started = std::chrono::steady_clock::now();
    const auto state = state_of(vm_, options_);
    if (!fs::exists(state.definition_copy()))
        throw error(error_kind::not_found,
                    "no VM named '" + vm_ + "' in " + state.path().parent_path().string());
    const auto count =
        request.names.empty() ? request.count : static_cast<int>(request.names.size());
    if (count < 1 || count > 256)
        throw error(error_kind::other,
                    "clone count must be between 1 and 256, not " + std::to_string(count));
    const auto points = read_points(state);
    const auto& point =
        detail::choose_point(vm_, points, request.point, detail::real_host().exists);
    const auto root = state.path().parent_path();
    const auto prefix = request.prefix.empty() ? vm_ + "-clone-" : request.prefix;

    sweep_interrupted_clones(root, options_);

    const auto origin = launcher::load_definition(state.definition_copy());
    if (request.new_identity && (request.paused || !origin.guest_agent))
        throw error(error_kind::unsupported,
                    request.paused ? "new identities are given to running clones: leave out "
                                     "--paused, or --new-identity"
                                   : "VM '" + vm_ +
                                         "' has no guest agent (guest_agent: true), which gives "
                                         "clones identities of their own");
    clone_result result;
    for (const auto& name : request.names) {
        if (!launcher::is_valid_vm_name(name))
            throw error(error_kind::invalid_name,
                        "clone name '" + name + "' is not a valid VM name");
        if (fs::exists(root / name))
            throw error(error_kind::name_taken, "a VM named '" + name + "' exists");
        result.names.push_back(name);
    }
    for (int n = 1; static_cast<int>(result.names.size()) < count; ++n) {
        auto name = prefix + std::to_string(n);
        if (!launcher::is_valid_vm_name(name))
            throw error(error_kind::invalid_name, "clone name '" + name +
                                                      "' is not a valid VM name (prefix '" +
                                                      prefix + "')");
        if (!fs::exists(root / name))
            result.names.push_back(std::move(name));
    }

    std::vector<launcher::state_directory> made;
    try {
        // Every qemu starts at once; each then takes the device state.
        std::vector<launcher::background_start> starting;
        for (const auto& name : result.names) {
            const launcher::state_directory dir(root, name);
            dir.create();
            made.push_back(dir);
            write_clone_marker(dir, vm_);
            // The guest is the origin's, with the origin's authorized key and host keys.
            launcher::copy_ssh_identity(state, dir);
            fs::create_directories(dir.reset_points());
            // The clone resets to its origin's point: same RAM, same frozen disks.
            fs::create_directory_symlink(point.ram.parent_path(), dir.reset_points() / point.name);
            auto [def, overlays] =
                fresh_instance(point, name, dir.overlays(), state.definition_copy());
            if (request.strategy)
                def.reset.strategy = *request.strategy;
            launcher::launch_options o;
            o.state_root = root;
            o.memory_template = point.ram;
            o.extra_args = {"-incoming", "defer"};
            o.lock_timeout = options_.lock_timeout;
            starting.push_back(
                launcher::begin_start_in_background(def, o, launcher::supervise_options{}));
        }
        for (auto& s : starting)
            s.wait();
        launcher::fault_point("clone.after-start", -1);
        for (const auto& dir : made) {
            qmp::client_options o;
            o.logger = options_.logger;
            qmp::client qmp(o);
            qmp.connect(dir.qmp_socket());
            load_device_state(qmp, point.device_state);
            if (!request.paused)
                qmp.execute("cont");
            launcher::fault_point("clone.after-load", dir);
        }
        // One guest after the other: all at once (tried), four TCG guests' agents on two cores
        // answered so late that some clocks stayed unset, and the clones took longer to answer
        // ssh (54 s against 45 s for four).
        if (!request.paused)
            for (const auto& dir : made) {
                const auto def = launcher::load_definition(dir.definition_copy());
                set_guest_clock(dir, def, options_.logger);
                if (request.new_identity)
                    detail::give_new_identity(dir, def, options_.logger);
            }
        // Whole: from here on they are VMs like any other.
        for (const auto& dir : made)
            fs::remove(clone_marker(dir));
    } catch (...) {
        for (const auto& dir : made) {
            try {
                remove_clone(dir);
            } catch (const std::exception&) {
                std::error_code ignored;
                fs::remove_all(dir.path(), ignored);
            }
        }
        throw;
    }
    result.took = std::chrono::duration_cast<std::chrono::microseconds>(
        std::chrono::steady_clock::now() - started);
    return result;
}

} // namespace qmpkit::snapshot
