#pragma once

// A pool of warm VMs for test harnesses: N clones of one VM's reset point, handed out one per
// worker. lease() takes a ready clone at once; release() hands it back, and it is reset to the
// point in a background process, so the caller goes on at once and the next lease finds it
// clean. Leases are safe across processes (the pool's record is changed under its lock): many
// workers, in any language through `qmpkit pool`, lease from one pool, and no VM is handed out
// twice. A lease lapses after its time to live, so a worker that dies without releasing loses
// it; a member whose qemu died is replaced by a new clone.
//
// The record lives in <state root>/.pools/<name>/pool.json; members are ordinary VMs named
// <pool>-<n> (qmpkit status, console, snapshot work on them). release() and lease() fork (the
// background reset): call them while the process has no other threads. Each has an
// asynchronous form (async_lease, async_release) for a harness that serves many workers from one
// io_context.

#include <qmpkit/launcher/vm_definition.hpp>
#include <qmpkit/snapshot/snapshot_manager.hpp>

#include <boost/asio/any_completion_handler.hpp>
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/json/object.hpp>

#include <chrono>
#include <cstdint>
#include <exception>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

namespace qmpkit::snapshot {

struct pool_spec {
    std::string origin;               // the VM whose reset point the members are cloned from
    std::optional<std::string> point; // default: its newest reset point
    int size = 1;
    // What a lease lives for unless lease() says otherwise.
    std::chrono::seconds lease_timeout{std::chrono::minutes(10)};
    // How members reset when released. template starts a new qemu per reset (off the caller's
    // path anyway); standby keeps three more qemus per member, which makes a member ready sooner
    // where CPUs are idle, but under load on a small machine sustains no more leases than
    // template (bench/pool_throughput: 158 against 160 a minute with 2 cores).
    launcher::reset_strategy strategy = launcher::reset_strategy::template_ram;
};

enum class member_state {
    free,      // reset and running, ready for lease()
    leased,    // handed out
    restoring, // being reset (or replaced) in the background
    broken     // the last reset and replacement failed; retried later
};
std::string_view to_string(member_state s) noexcept;

struct pool_member {
    std::string vm{};
    member_state state = member_state::restoring;
    std::int64_t since = 0; // when it entered this state (Unix seconds)
    // leased:
    std::string lease{};  // the lease's id
    std::string holder{}; // who holds it, as the leaser said
    std::int64_t expires_at = 0;
    std::string problem{}; // broken: why
};

struct pool_status {
    std::string name, origin, point;
    int size = 0;
    std::chrono::seconds lease_timeout{0};
    launcher::reset_strategy strategy = launcher::reset_strategy::template_ram;
    bool destroying = false;
    std::vector<pool_member> members;
};

struct lease_request {
    // How long to wait for a member to become free; zero: fail at once if none is.
    std::chrono::milliseconds wait{std::chrono::minutes(1)};
    std::optional<std::chrono::seconds> ttl; // default: the pool's lease_timeout
    std::string holder;                      // for status; default "pid N"
};

// What a worker needs to use the VM it leased.
struct vm_lease {
    std::string pool, vm, id;
    std::filesystem::path state_dir, qmp_socket, serial_log;
    std::optional<std::filesystem::path> agent_socket; // where the VM runs qemu-ga
    std::optional<std::filesystem::path> shell_socket; // the tiny guest's command channel
    std::int64_t leased_at = 0, expires_at = 0;
    std::chrono::milliseconds waited{0};
};

struct release_request {
    // The lease being given back: refused when it lapsed and the VM went to someone else.
    // Empty: whoever holds the VM.
    std::string lease;
    // Keep the VM as it is, out of the pool (to look at after a failed test); a new clone takes
    // its place.
    bool keep = false;
};

// A pool as JSON: what pool.json holds (with its format) and `qmpkit --json pool status` prints.
boost::json::object to_json(const pool_status& pool);

namespace detail {
struct async_lease_op;
}

class vm_pool {
public:
    vm_pool(std::string name, manager_options options = {});

    // Clones spec.size members and returns when all run. All or nothing.
    pool_status create(const pool_spec& spec);
    vm_lease lease(const lease_request& request = {}) const;
    void release(const std::string& vm, const release_request& request = {}) const;
    pool_status status() const;
    // Stops and removes every member, leased or not, and the pool.
    void destroy();

    // The asynchronous forms: the same operations, with a lease's waits for a free member on
    // `executor`'s timers instead of a blocked thread, so that one thread leases for many
    // workers at once. They complete, on the handler's executor and never inside the call, with
    // what the blocking form throws (null on success; snapshot::error, kind timeout, when no
    // member became free in time). Each look at the pool and the release itself take the pool's
    // lock for a few ms on the executor's thread; like the blocking forms they may fork, so the
    // io_context runs on the process's only thread. The operation keeps its own copy of the
    // pool's name and options: this object may go before it completes.
    using lease_signature = void(std::exception_ptr, vm_lease);
    using release_signature = void(std::exception_ptr);

    template <typename Token>
    auto async_lease(boost::asio::any_io_executor executor, lease_request request, Token&& token) {
        return boost::asio::async_initiate<Token, lease_signature>(
            // A copy: with a deferred token the initiation may run after this object is gone.
            [pool = *this](auto handler, boost::asio::any_io_executor ex, lease_request r) {
                pool.start_lease(std::move(ex), std::move(r), std::move(handler));
            },
            token, std::move(executor), std::move(request));
    }

    template <typename Token>
    auto async_release(boost::asio::any_io_executor executor, std::string vm,
                       release_request request, Token&& token) {
        return boost::asio::async_initiate<Token, release_signature>(
            [pool = *this](auto handler, boost::asio::any_io_executor ex, std::string v,
                           release_request r) {
                pool.start_release(std::move(ex), std::move(v), std::move(r), std::move(handler));
            },
            token, std::move(executor), std::move(vm), std::move(request));
    }

    // The names of the pools under the state root.
    static std::vector<std::string> list(manager_options options = {});

    const std::string& name() const noexcept { return name_; }

private:
    friend struct detail::async_lease_op;

    // One lease() from its start: what every look at the pool needs.
    struct lease_attempt {
        lease_request request;
        std::string id, holder;
        std::chrono::steady_clock::time_point started;
    };

    lease_attempt begin_lease(const lease_request& request) const;
    // One look at the pool under its lock: the lease when a member is free, nullopt when none
    // is yet; throws once the attempt has waited as long as it may. Both forms repeat it.
    std::optional<vm_lease> try_lease(const lease_attempt& attempt) const;
    void start_lease(boost::asio::any_io_executor executor, lease_request request,
                     boost::asio::any_completion_handler<lease_signature> handler) const;
    void start_release(boost::asio::any_io_executor executor, std::string vm,
                       release_request request,
                       boost::asio::any_completion_handler<release_signature> handler) const;

    std::string name_;
    manager_options options_;
};

} // namespace qmpkit::snapshot
