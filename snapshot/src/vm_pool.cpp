#include "pool_record.hpp"
#include "vm_context.hpp"

#include <qmpkit/launcher/atomic_file.hpp>
#include <qmpkit/launcher/definition_loader.hpp>
#include <qmpkit/launcher/definition_validator.hpp>
#include <qmpkit/launcher/error.hpp>
#include <qmpkit/launcher/launch.hpp>
#include <qmpkit/launcher/vm_control.hpp>
#include <qmpkit/launcher/vm_lock.hpp>
#include <qmpkit/qmp/post_completion.hpp>
#include <qmpkit/snapshot/error.hpp>
#include <qmpkit/snapshot/vm_pool.hpp>
#include <qmpkit/snapshot/vm_reset.hpp>

#include <boost/asio/associated_cancellation_slot.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <iostream>
#include <memory>
#include <thread>
#include <unistd.h>

namespace qmpkit::snapshot {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using detail::now_seconds;

// A broken member (its reset and its replacement failed) is tried again after this long, not
// on every lease: a replacement that fails for good (the point was removed) would otherwise
// start a qemu many times a second.
constexpr std::int64_t broken_backoff_seconds = 30;

fs::path root_of(const manager_options& o) {
    return o.state_root.empty() ? launcher::default_state_root() : o.state_root;
}

// Pools live beside the VMs, in a directory that is no VM's (VM names cannot start with '.').
fs::path pools_of(const fs::path& root) {
    return root / ".pools";
}

// A pool's directory, treated as a state directory of its own: its supervisor.log is where the
// background resets write.
launcher::state_directory pool_directory(const fs::path& root, const std::string& name) {
    return {pools_of(root), name};
}

fs::path record_file(const launcher::state_directory& dir) {
    return dir.path() / "pool.json";
}

// Held by the background process that resets or replaces one member, while it works.
fs::path worker_lock(const launcher::state_directory& dir, const std::string& vm) {
    return dir.path() / (vm + ".worker.lock");
}

void require_valid_pool_name(const std::string& name) {
    if (!launcher::is_valid_vm_name(name))
        throw error(error_kind::invalid_name,
                    "pool name '" + name +
                        "' is not valid: letters, digits, '.', '_' and '-', starting with a "
                        "letter or digit");
}

// The pool's record, read and held under its lock: no other process changes it meanwhile.
struct locked_pool {
    launcher::state_directory dir;
    launcher::vm_lock lock;
    pool_status pool;

    void save() const {
        // A pool means nothing after a reboot (its members' RAM is gone): atomic, not synced.
        launcher::write_file_atomically(record_file(dir), detail::dump_pool(pool),
                                        fs::perms::owner_read | fs::perms::owner_write,
                                        launcher::durability::atomic_only);
    }
};

std::optional<locked_pool> try_open_locked(const launcher::state_directory& dir,
                                           std::string_view purpose,
                                           std::chrono::milliseconds timeout) {
    if (!fs::exists(record_file(dir)))
        return std::nullopt;
    auto lock = launcher::vm_lock::acquire(dir.path() / "lock", purpose, timeout);
    // destroy() may have removed the pool while this waited.
    if (!fs::exists(record_file(dir)))
        return std::nullopt;
    auto pool = detail::parse_pool(launcher::read_file(record_file(dir)), record_file(dir));
    return locked_pool{dir, std::move(lock), std::move(pool)};
}

locked_pool open_locked(const launcher::state_directory& dir, std::string_view purpose,
                        std::chrono::milliseconds timeout) {
    auto locked = try_open_locked(dir, purpose, timeout);
    if (!locked)
        throw error(error_kind::not_found, "no pool named '" + dir.vm_name() + "' in " +
                                               dir.path().parent_path().parent_path().string());
    return std::move(*locked);
}

std::string holder_or_default(const std::string& holder) {
    return holder.empty() ? "pid " + std::to_string(::getpid()) : holder;
}

clone_request clone_for(const pool_status& pool, std::vector<std::string> names) {
    clone_request r;
    r.point = pool.point;
    r.names = std::move(names);
    r.count = static_cast<int>(r.names.size());
    r.strategy = pool.strategy;
    return r;
}

// Runs in the background process: the member back to the point, or, where its qemu is gone or
// the reset fails, a new clone in its place under the same name. Then records the outcome,
// unless the pool went or the member is no longer the one this was asked to restore.
void restore_member(const fs::path& root, const pool_status& pool, const std::string& vm,
                    const manager_options& options) {
    const auto log = [&](const std::string& text) {
        std::cerr << "pool " << pool.name << ": " << vm << ": " << text << std::endl;
    };
    const launcher::state_directory member(root, vm);
    bool ready = false;
    std::string problem;
    if (launcher::is_running(member)) {
        try {
            const auto r = vm_reset(vm, options).reset(pool.point);
            log("reset to " + r.target + " (" + r.strategy + ") in " +
                std::to_string(r.took.count() / 1000) + " ms");
            ready = true;
        } catch (const std::exception& e) {
            log(std::string("reset failed, replacing it: ") + e.what());
        }
    }
    if (!ready) {
        try {
            if (member.exists()) {
                try {
                    launcher::destroy_vm(member);
                } catch (const std::exception&) {
                    // Not running.
                }
                launcher::remove_vm(member);
            }
            vm_reset(pool.origin, options).clone(clone_for(pool, {vm}));
            log("replaced by a new clone of " + pool.origin);
            ready = true;
        } catch (const std::exception& e) {
            problem = e.what();
            log("could not be replaced: " + problem);
        }
    }
    auto locked = try_open_locked(pool_directory(root, pool.name), "recording a reset", 5min);
    if (!locked || locked->pool.destroying)
        return;
    auto* m = detail::find_member(locked->pool, vm);
    if (!m || m->state != member_state::restoring)
        return;
    m->state = ready ? member_state::free : member_state::broken;
    m->since = now_seconds();
    m->problem = problem;
    locked->save();
}

// Starts restore_member in a process of its own, unless one already works on this member (it
// holds the member's worker lock; one that died let go of it).
void restore_in_background(const fs::path& root, const pool_status& pool, const std::string& vm,
                           const manager_options& options) {
    const auto dir = pool_directory(root, pool.name);
    std::optional<launcher::vm_lock> lock;
    try {
        lock.emplace(launcher::vm_lock::acquire(worker_lock(dir, vm), "restoring " + vm, 0ms));
    } catch (const launcher::error&) {
        return;
    }
    auto background = options;
    background.progress = {};
    launcher::finish_in_background_holding(dir, std::move(*lock),
                                           [root, pool, vm, background](launcher::vm_lock&) {
                                               restore_member(root, pool, vm, background);
                                           });
}

// Restores whatever needs it: members given back or lapsed, members whose worker died, broken
// ones after their back-off. The caller holds the pool's lock and has saved the record.
void restore_pending(const fs::path& root, const pool_status& pool,
                     const manager_options& options) {
    for (const auto& m : pool.members)
        if (m.state == member_state::restoring)
            restore_in_background(root, pool, m.vm, options);
}

vm_lease lease_of(const fs::path& root, const pool_status& pool, const pool_member& m) {
    const launcher::state_directory dir(root, m.vm);
    vm_lease l;
    l.pool = pool.name;
    l.vm = m.vm;
    l.id = m.lease;
    l.state_dir = dir.path();
    l.qmp_socket = dir.qmp_socket();
    l.serial_log = dir.serial_log();
    const auto def = launcher::load_definition(dir.definition_copy());
    if (def.guest_agent)
        l.agent_socket = dir.agent_socket();
    if (def.command_channel)
        l.shell_socket = dir.shell_socket();
    l.leased_at = m.since;
    l.expires_at = m.expires_at;
    return l;
}

} // namespace

vm_pool::vm_pool(std::string name, manager_options options)
    : name_(std::move(name))
    , options_(std::move(options)) {
    require_valid_pool_name(name_);
}

std::vector<std::string> vm_pool::list(manager_options options) {
    std::vector<std::string> names;
    std::error_code ec;
    for (const auto& entry : fs::directory_iterator(pools_of(root_of(options)), ec))
        if (fs::exists(entry.path() / "pool.json"))
            names.push_back(entry.path().filename().string());
    std::sort(names.begin(), names.end());
    return names;
}

pool_status vm_pool::create(const pool_spec& spec) {
    if (spec.size < 1 || spec.size > 256)
        throw error(error_kind::other,
                    "pool size must be between 1 and 256, not " + std::to_string(spec.size));
    if (spec.lease_timeout.count() < 1)
        throw error(error_kind::other, "a pool's lease timeout must be at least 1 second");
    if (spec.strategy == launcher::reset_strategy::loadvm ||
        spec.strategy == launcher::reset_strategy::automatic)
        throw error(error_kind::unsupported,
                    "pool members reset to a reset point: strategy template or standby");
    const auto root = root_of(options_);
    vm_reset origin(spec.origin, options_);
    const auto points = origin.points();
    if (points.empty())
        throw error(error_kind::not_found, "VM '" + spec.origin +
                                               "' has no reset point to clone a pool from: "
                                               "qmpkit reset-point create " +
                                               spec.origin + " NAME");
    const auto point =
        spec.point
            ? *spec.point
            : std::max_element(points.begin(), points.end(), [](const auto& a, const auto& b) {
                  return a.created_at < b.created_at;
              })->name;
    const auto dir = pool_directory(root, name_);
    fs::create_directories(pools_of(root));
    fs::permissions(pools_of(root), fs::perms::owner_all, fs::perm_options::replace);
    // The directory is the claim on the name: two creates of one pool cannot both make it.
    if (!fs::create_directory(dir.path()))
        throw error(error_kind::name_taken, "a pool named '" + name_ + "' exists");
    try {
        fs::permissions(dir.path(), fs::perms::owner_all, fs::perm_options::replace);
        auto lock = launcher::vm_lock::acquire(dir.path() / "lock", "creating the pool", 0ms);
        locked_pool locked{dir, std::move(lock), {}};
        auto& pool = locked.pool;
        pool.name = name_;
        pool.origin = spec.origin;
        pool.point = point;
        pool.size = spec.size;
        pool.lease_timeout = spec.lease_timeout;
        pool.strategy = spec.strategy;
        std::vector<std::string> names;
        for (int i = 0; i < spec.size; ++i) {
            names.push_back(detail::next_member_name(
                pool, [&](const std::string& n) { return fs::exists(root / n); }));
            pool.members.push_back({names.back(), member_state::free, now_seconds()});
        }
        origin.clone(clone_for(pool, names));
        for (auto& m : pool.members)
            m.since = now_seconds();
        locked.save();
        return pool;
    } catch (...) {
        std::error_code ignored;
        fs::remove_all(dir.path(), ignored);
        throw;
    }
}

vm_pool::lease_attempt vm_pool::begin_lease(const lease_request& request) const {
    return {request, detail::hex_id() + detail::hex_id(), holder_or_default(request.holder),
            std::chrono::steady_clock::now()};
}

std::optional<vm_lease> vm_pool::try_lease(const lease_attempt& attempt) const {
    const auto& request = attempt.request;
    const auto root = root_of(options_);
    auto locked = open_locked(pool_directory(root, name_), "leasing a VM", options_.lock_timeout);
    auto& pool = locked.pool;
    // A waiting lease looks every 20 ms: the record is written only when it changes.
    const auto as_read = detail::dump_pool(pool);
    if (pool.destroying)
        throw error(error_kind::not_found, "pool '" + name_ + "' is being destroyed");
    const auto now = now_seconds();
    const auto ttl = request.ttl.value_or(pool.lease_timeout).count();
    if (ttl < 1)
        throw error(error_kind::other, "a lease must live at least 1 second");
    detail::reclaim_lapsed(pool, now);
    detail::retry_broken(pool, now, broken_backoff_seconds);
    std::vector<std::string> dead;
    const auto* taken = detail::take_free(
        pool,
        [&](const std::string& vm) {
            return launcher::is_running(launcher::state_directory(root, vm));
        },
        now, ttl, attempt.id, attempt.holder, dead);
    if (detail::dump_pool(pool) != as_read)
        locked.save();
    for (const auto& vm : dead)
        if (options_.logger)
            options_.logger->warn("pool '{}': VM '{}' was not running; it is replaced", name_, vm);
    restore_pending(root, pool, options_);
    if (taken) {
        auto l = lease_of(root, pool, *taken);
        l.waited = std::chrono::duration_cast<std::chrono::milliseconds>(
            std::chrono::steady_clock::now() - attempt.started);
        return l;
    }
    if (std::chrono::steady_clock::now() - attempt.started >= request.wait)
        throw error(error_kind::timeout,
                    "no VM of pool '" + name_ + "' was free" +
                        (request.wait.count() > 0
                             ? " within " + std::to_string(request.wait.count()) + " ms"
                             : std::string()) +
                        " (" + detail::count_by_state(pool) + ")");
    return std::nullopt;
}

// A member becomes free when its background reset records it: a few hundred ms.
constexpr auto lease_poll_interval = 20ms;

vm_lease vm_pool::lease(const lease_request& request) const {
    const auto attempt = begin_lease(request);
    for (;;) {
        if (auto l = try_lease(attempt))
            return *l;
        std::this_thread::sleep_for(lease_poll_interval);
    }
}

namespace detail {

// async_lease: try_lease, then a timer, until a member is free or the wait is over.
struct async_lease_op : std::enable_shared_from_this<async_lease_op> {
    async_lease_op(vm_pool pool, vm_pool::lease_attempt attempt, boost::asio::any_io_executor ex,
                   boost::asio::any_completion_handler<vm_pool::lease_signature> h)
        : pool(std::move(pool))
        , attempt(std::move(attempt))
        , executor(ex)
        , timer(ex) {
        handler.emplace(std::move(h));
    }

    void look() {
        if (cancelled)
            return finish(cancelled_error(), {});
        std::optional<vm_lease> lease;
        try {
            lease = pool.try_lease(attempt);
        } catch (...) {
            return finish(std::current_exception(), {});
        }
        if (lease)
            return finish(nullptr, std::move(*lease));
        timer.expires_after(lease_poll_interval);
        timer.async_wait([self = shared_from_this()](boost::system::error_code ec) {
            if (ec)
                return self->finish(self->cancelled_error(), {});
            self->look();
        });
    }

    std::exception_ptr cancelled_error() const {
        return std::make_exception_ptr(
            error(error_kind::other, "leasing from pool '" + pool.name() + "' was cancelled"));
    }

    void finish(std::exception_ptr failure, vm_lease lease) {
        qmp::detail::post_completion(executor, std::move(*handler), failure, std::move(lease));
        handler.reset();
    }

    vm_pool pool;
    vm_pool::lease_attempt attempt;
    boost::asio::any_io_executor executor;
    boost::asio::steady_timer timer;
    bool cancelled = false; // the handler's cancellation slot was signalled
    std::optional<boost::asio::any_completion_handler<vm_pool::lease_signature>> handler;
};

} // namespace detail

void vm_pool::start_lease(boost::asio::any_io_executor executor, lease_request request,
                          boost::asio::any_completion_handler<lease_signature> handler) const {
    auto op = std::make_shared<detail::async_lease_op>(*this, begin_lease(request), executor,
                                                       std::move(handler));
    // A cancelled lease stops waiting: it completes at its next look, at once if it waits.
    if (auto slot = boost::asio::get_associated_cancellation_slot(*op->handler);
        slot.is_connected())
        slot.assign(
            [weak = std::weak_ptr<detail::async_lease_op>(op)](boost::asio::cancellation_type) {
                if (auto o = weak.lock()) {
                    o->cancelled = true;
                    o->timer.cancel();
                }
            });
    // The first look is posted too: the caller's code after async_lease runs first.
    boost::asio::post(executor, [op] { op->look(); });
}

void vm_pool::start_release(boost::asio::any_io_executor executor, std::string vm,
                            release_request request,
                            boost::asio::any_completion_handler<release_signature> handler) const {
    std::exception_ptr failure;
    try {
        release(vm, request);
    } catch (...) {
        failure = std::current_exception();
    }
    qmp::detail::post_completion(executor, std::move(handler), failure);
}

void vm_pool::release(const std::string& vm, const release_request& request) const {
    const auto root = root_of(options_);
    auto locked = open_locked(pool_directory(root, name_), "releasing a VM", options_.lock_timeout);
    auto& pool = locked.pool;
    const auto now = now_seconds();
    detail::give_back(pool, vm, request.lease, now);
    if (request.keep) {
        // Out of the pool, as it is; a new member takes its place.
        std::erase_if(pool.members, [&](const pool_member& m) { return m.vm == vm; });
        pool.members.push_back(
            {detail::next_member_name(pool,
                                      [&](const std::string& n) { return fs::exists(root / n); }),
             member_state::restoring, now});
    }
    locked.save();
    restore_pending(root, pool, options_);
}

pool_status vm_pool::status() const {
    const auto dir = pool_directory(root_of(options_), name_);
    if (!fs::exists(record_file(dir)))
        throw error(error_kind::not_found,
                    "no pool named '" + name_ + "' in " + root_of(options_).string());
    // Read without the lock: the record is replaced atomically, so it is whole.
    return detail::parse_pool(launcher::read_file(record_file(dir)), record_file(dir));
}

void vm_pool::destroy() {
    const auto root = root_of(options_);
    const auto dir = pool_directory(root, name_);
    pool_status pool;
    {
        auto locked = open_locked(dir, "destroying the pool", options_.lock_timeout);
        locked.pool.destroying = true;
        locked.save();
        pool = locked.pool;
    }
    // Background resets finish first (they record nothing once the pool is destroying), so
    // that none starts a qemu after its member was removed.
    std::string failures;
    for (const auto& m : pool.members) {
        try {
            auto worker =
                launcher::vm_lock::acquire(worker_lock(dir, m.vm), "destroying the pool", 5min);
            const launcher::state_directory member(root, m.vm);
            if (!member.exists())
                continue;
            try {
                launcher::destroy_vm(member);
            } catch (const std::exception&) {
                // Not running.
            }
            launcher::remove_vm(member);
        } catch (const std::exception& e) {
            failures += std::string("\n  ") + e.what();
        }
    }
    if (!failures.empty())
        throw error(error_kind::other,
                    "pool '" + name_ + "' is left destroying; could not remove:" + failures);
    std::error_code ignored;
    fs::remove_all(dir.path(), ignored);
}

} // namespace qmpkit::snapshot
