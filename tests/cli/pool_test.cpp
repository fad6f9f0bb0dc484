// `qmpkit pool` with real qemus: a pool of three tiny guests cloned from one reset point, leased
// and released by four worker processes at once; lapsed leases, dead members, kept VMs, and a
// destroy that leaves nothing behind. One pool is shared by the tests, in order.

#include "cli_suite.hpp"
#include "processes.hpp"

#include <qmpkit/launcher/launch.hpp>
#include <qmpkit/launcher/runtime_info.hpp>
#include <qmpkit/launcher/state_directory.hpp>
#include <qmpkit/launcher/subprocess.hpp>
#include <qmpkit/snapshot/error.hpp>
#include <qmpkit/snapshot/vm_pool.hpp>

#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/json.hpp>
#include <gtest/gtest.h>

#include <csignal>
#include <fstream>
#include <map>
#include <mutex>
#include <set>
#include <thread>

namespace {

using namespace qmpkit;
using namespace std::chrono_literals;
namespace fs = std::filesystem;
namespace json = boost::json;

constexpr int pool_size = 3;

class pool_test : public test::cli_suite {
protected:
    static void SetUpTestSuite() {
        if (!open_suite())
            return;
        // template: the origin keeps no standbys of its own; the pool's members reset by
        // template too (the pool's default).
        auto def = test::write_tiny_guest("origin", scratch(), {{"system"}},
                                          "reset: {strategy: template}\n");
        auto r = qmpkit({"start", def.string(), "--wait-ready"});
        ASSERT_EQ(r.code, 0) << r.err;
        ASSERT_TRUE(run().wait_for_mount("origin", "/mnt"));
        r = qmpkit({"reset-point", "create", "origin", "rp"});
        ASSERT_EQ(r.code, 0) << r.err;
        r = qmpkit({"--json", "pool", "create", "p", "--from", "origin", "--size",
                    std::to_string(pool_size)});
        ASSERT_EQ(r.code, 0) << r.err;
        created_ = true;
    }
    static void TearDownTestSuite() {
        if (created_)
            qmpkit({"pool", "destroy", "p"});
        close_suite();
    }
    void SetUp() override {
        cli_suite::SetUp();
        if (IsSkipped())
            return;
        if (!created_)
            GTEST_FAIL() << "the pool was not created";
        // Each test starts from a whole pool, whatever the one before left leased.
        for (const auto& [vm, state] : states())
            if (state == "leased")
                qmpkit({"pool", "release", "p", vm});
        ASSERT_TRUE(wait_all_free());
    }

    static json::object lease(std::vector<std::string> extra = {}) {
        std::vector<std::string> args{"pool", "lease", "p", "--wait", "120"};
        args.insert(args.end(), extra.begin(), extra.end());
        const auto r = qmpkit(args);
        EXPECT_EQ(r.code, 0) << r.err;
        return r.code == 0 ? json::parse(r.out).as_object() : json::object{};
    }
    static std::string vm_of(const json::object& l) { return std::string(l.at("vm").as_string()); }

    static json::object status() {
        const auto r = qmpkit({"--json", "pool", "status", "p"});
        EXPECT_EQ(r.code, 0) << r.err;
        return json::parse(r.out).as_object();
    }
    static std::map<std::string, std::string> states() {
        std::map<std::string, std::string> s;
        const auto pool = status();
        for (const auto& m : pool.at("members").as_array())
            s[std::string(m.at("vm").as_string())] = m.at("state").as_string();
        return s;
    }
    // Until every member is free again (their background resets are done).
    static bool wait_all_free() {
        for (int i = 0; i < 1200; ++i) {
            const auto s = states();
            if (std::all_of(s.begin(), s.end(), [](const auto& kv) { return kv.second == "free"; }))
                return true;
            std::this_thread::sleep_for(100ms);
        }
        return false;
    }

    static inline bool created_ = false;
};

// The marker a holder leaves in RAM (/run) and on disk (/mnt): the next holder must see neither.
constexpr const char* check_and_mark =
    "test -e /run/marker && echo dirty-ram; test -e /mnt/marker && echo dirty-disk; "
    "echo x > /run/marker; echo x > /mnt/marker; sync; echo checked";

TEST_F(pool_test, four_workers_share_three_vms_and_every_lease_is_clean) {
    struct held {
        std::string vm;
        std::chrono::steady_clock::time_point from, to;
    };
    std::mutex mutex;
    std::vector<held> leases;
    std::vector<std::string> problems;
    auto worker = [&](int w) {
        for (int i = 0; i < 25; ++i) {
            const auto r = qmpkit(
                {"pool", "lease", "p", "--wait", "120", "--holder", "w" + std::to_string(w)});
            if (r.code != 0) {
                std::lock_guard g(mutex);
                problems.push_back("lease: " + r.err);
                continue;
            }
            const auto l = json::parse(r.out).as_object();
            const auto vm = vm_of(l);
            held h{vm, std::chrono::steady_clock::now(), {}};
            const auto seen = qmpkit({"shell", vm, "--", check_and_mark});
            h.to = std::chrono::steady_clock::now();
            const auto back = qmpkit(
                {"pool", "release", "p", vm, "--lease", std::string(l.at("lease").as_string())});
            std::lock_guard g(mutex);
            leases.push_back(h);
            if (seen.code != 0 || seen.out != "checked\n")
                problems.push_back(vm + " as leased: " + seen.out + seen.err);
            if (back.code != 0)
                problems.push_back("release: " + back.err);
        }
    };
    const auto started = std::chrono::steady_clock::now();
    std::vector<std::thread> workers;
    for (int w = 0; w < 4; ++w)
        workers.emplace_back(worker, w);
    for (auto& t : workers)
        t.join();
    const auto took = std::chrono::steady_clock::now() - started;
    for (const auto& p : problems)
        ADD_FAILURE() << p;
    ASSERT_EQ(leases.size(), 100u);
    // Nobody held a VM while another did: a VM's leases never overlap.
    std::map<std::string, std::vector<held>> by_vm;
    for (const auto& h : leases)
        by_vm[h.vm].push_back(h);
    EXPECT_EQ(by_vm.size(), static_cast<std::size_t>(pool_size));
    for (auto& [vm, hs] : by_vm) {
        std::sort(hs.begin(), hs.end(),
                  [](const held& a, const held& b) { return a.from < b.from; });
        for (std::size_t i = 1; i < hs.size(); ++i)
            EXPECT_LE(hs[i - 1].to, hs[i].from) << vm << " was handed out twice at once";
    }
    std::cout << "100 leases by 4 workers from a pool of " << pool_size << " in "
              << std::chrono::duration_cast<std::chrono::milliseconds>(took).count() << " ms\n";
    EXPECT_TRUE(wait_all_free());
}

// The same from outside the guest: after a release, no byte of RAM (pmemsave of all of it) holds
// what the holder wrote, and the member's disk reads as the point's image (qemu-img compare of
// the chain it runs on against the frozen image below it). Both checks first see the writes, so
// they can see them.
TEST_F(pool_test, a_released_vm_is_clean_from_outside_in_ram_and_on_disk) {
    const auto l = lease();
    ASSERT_FALSE(l.empty());
    const auto vm = vm_of(l);
    const std::string token =
        "qmpkit-lease-token-" +
        std::to_string(std::chrono::steady_clock::now().time_since_epoch().count());
    auto r = qmpkit({"shell", vm, "--",
                     "echo " + token + " > /run/marker; echo " + token + " > /mnt/marker; sync"});
    ASSERT_EQ(r.code, 0) << r.err;

    const auto ram = scratch() / (vm + ".ram");
    const auto ram_holds_token = [&] {
        r = qmpkit({"qmp", vm, "query-memory-size-summary"});
        EXPECT_EQ(r.code, 0) << r.err;
        const auto size = json::parse(r.out).at("base-memory").to_number<std::int64_t>();
        r = qmpkit({"qmp", vm, "pmemsave", "val=0", "size=" + std::to_string(size),
                    "filename=" + ram.string()});
        EXPECT_EQ(r.code, 0) << r.err;
        std::ifstream in(ram, std::ios::binary);
        const std::string bytes((std::istreambuf_iterator<char>(in)), {});
        EXPECT_EQ(bytes.size(), static_cast<std::size_t>(size));
        fs::remove(ram);
        return bytes.find(token) != std::string::npos;
    };
    // The disk the member runs on, and the image of the point below it.
    const auto disk_matches_point = [&] {
        r = qmpkit({"--json", "disks", vm});
        EXPECT_EQ(r.code, 0) << r.err;
        std::string top;
        const auto disks = json::parse(r.out);
        for (const auto& d : disks.as_array())
            if (d.at("disk").as_string() == "system")
                top = d.at("file").as_string();
        const auto info = launcher::run({"qemu-img", "info", "-U", "--output=json", top});
        EXPECT_TRUE(info.ok()) << info.err;
        const auto backing = json::parse(info.out).at("full-backing-filename").as_string();
        const auto compare =
            launcher::run({"qemu-img", "compare", "-U", "-q", top, std::string(backing)});
        EXPECT_LE(compare.exit_code, 1) << compare.err; // 0 identical, 1 different, 2+ error
        return compare.exit_code == 0;
    };
    EXPECT_TRUE(ram_holds_token()) << "pmemsave does not show what the guest wrote";
    EXPECT_FALSE(disk_matches_point()) << "qemu-img compare does not show what the guest wrote";

    r = qmpkit({"pool", "release", "p", vm, "--lease", std::string(l.at("lease").as_string())});
    ASSERT_EQ(r.code, 0) << r.err;
    ASSERT_TRUE(wait_all_free());
    EXPECT_FALSE(ram_holds_token()) << vm << "'s RAM still holds the last holder's writes";
    EXPECT_TRUE(disk_matches_point()) << vm << "'s disk differs from the reset point's";
}

TEST_F(pool_test, a_lapsed_lease_goes_back_to_the_pool_and_its_holder_cannot_release_it) {
    // The others first: however slow a call is, only the last lease is short.
    std::vector<json::object> others;
    for (int i = 1; i < pool_size; ++i)
        others.push_back(lease());
    const auto first = lease({"--ttl", "1"});
    // The pool is empty now; the short lease lapses and its VM comes back, reset.
    const auto again = lease();
    EXPECT_EQ(vm_of(again), vm_of(first));
    EXPECT_EQ(qmpkit({"shell", vm_of(again), "--", check_and_mark}).out, "checked\n");
    const auto refused = qmpkit({"pool", "release", "p", vm_of(first), "--lease",
                                 std::string(first.at("lease").as_string())});
    EXPECT_EQ(refused.code, 1);
    EXPECT_NE(refused.err.find("lapsed"), std::string::npos) << refused.err;
    EXPECT_EQ(states().at(vm_of(again)), "leased") << "a refused release changed the pool";
    // With nothing free, --wait 0 fails at once, as a timeout.
    const auto none = qmpkit({"pool", "lease", "p", "--wait", "0"});
    EXPECT_EQ(none.code, 4) << none.err;
    EXPECT_NE(none.err.find("no VM of pool 'p' was free"), std::string::npos) << none.err;
    others.push_back(again);
    for (const auto& l : others)
        EXPECT_EQ(qmpkit({"pool", "release", "p", vm_of(l)}).code, 0);
    EXPECT_TRUE(wait_all_free());
}

// The library's asynchronous forms: every lease and release of one harness on one io_context
// and one thread. A lease that finds the pool empty waits on a timer, not in the thread, and
// takes the VM released meanwhile; a lease that may not wait fails as a timeout.
TEST_F(pool_test, asynchronous_leases_share_one_thread_and_never_hand_out_a_vm_twice) {
    snapshot::manager_options options;
    options.state_root = run().state_root();
    snapshot::vm_pool pool("p", options);
    const auto size = static_cast<std::size_t>(pool_size);
    boost::asio::io_context io;
    std::vector<snapshot::vm_lease> leases;
    std::vector<std::exception_ptr> failures;
    auto on_lease = [&](std::exception_ptr failure, snapshot::vm_lease lease) {
        if (failure)
            failures.push_back(failure);
        else
            leases.push_back(std::move(lease));
    };
    auto run_until = [&](auto done) {
        const auto deadline = std::chrono::steady_clock::now() + 120s;
        io.restart(); // it stops whenever it runs out of work
        while (!done() && std::chrono::steady_clock::now() < deadline)
            io.run_one_for(1s);
        return done();
    };
    snapshot::lease_request waiting;
    waiting.wait = 120s;
    waiting.holder = "async";
    for (int i = 0; i < pool_size + 1; ++i)
        pool.async_lease(io.get_executor(), waiting, on_lease);
    EXPECT_TRUE(leases.empty()) << "a completion ran inside async_lease";
    ASSERT_TRUE(run_until([&] { return leases.size() + failures.size() >= size; }));
    ASSERT_TRUE(failures.empty());
    std::set<std::string> vms;
    for (const auto& l : leases)
        vms.insert(l.vm);
    EXPECT_EQ(vms.size(), size);

    // The pool is empty: one more that may not wait fails at once, as a timeout.
    snapshot::lease_request now;
    now.wait = 0ms;
    pool.async_lease(io.get_executor(), now, on_lease);
    ASSERT_TRUE(run_until([&] { return !failures.empty(); }));
    try {
        std::rethrow_exception(failures.front());
    } catch (const snapshot::error& e) {
        EXPECT_EQ(e.kind(), snapshot::error_kind::timeout) << e.what();
    }
    failures.clear();

    // A waiting lease that is cancelled completes at once, as cancelled, and takes nothing.
    boost::asio::cancellation_signal stop;
    pool.async_lease(io.get_executor(), waiting,
                     boost::asio::bind_cancellation_slot(stop.slot(), on_lease));
    io.restart();
    io.run_for(100ms);
    EXPECT_TRUE(failures.empty());
    stop.emit(boost::asio::cancellation_type::terminal);
    ASSERT_TRUE(run_until([&] { return !failures.empty(); }));
    try {
        std::rethrow_exception(failures.front());
    } catch (const snapshot::error& e) {
        EXPECT_NE(std::string(e.what()).find("cancelled"), std::string::npos) << e.what();
    }
    failures.clear();
    EXPECT_EQ(leases.size(), size);

    // The one still waiting takes the VM given back, once its background reset is done.
    for (const auto& l : leases)
        EXPECT_EQ(qmpkit({"shell", l.vm, "--", check_and_mark}).out, "checked\n");
    const auto given_back = leases.front().vm;
    bool released = false;
    pool.async_release(io.get_executor(), given_back, {}, [&](std::exception_ptr failure) {
        EXPECT_FALSE(failure);
        released = true;
    });
    EXPECT_FALSE(released) << "a completion ran inside async_release";
    ASSERT_TRUE(run_until([&] { return leases.size() + failures.size() > size; }));
    ASSERT_TRUE(failures.empty());
    EXPECT_TRUE(released);
    EXPECT_EQ(leases.back().vm, given_back);
    EXPECT_EQ(qmpkit({"shell", given_back, "--", check_and_mark}).out, "checked\n")
        << "the VM was handed out before its reset";

    int back = 0;
    for (std::size_t i = 1; i < leases.size(); ++i)
        pool.async_release(io.get_executor(), leases[i].vm, {}, [&](std::exception_ptr failure) {
            EXPECT_FALSE(failure);
            ++back;
        });
    ASSERT_TRUE(run_until([&] { return back == pool_size; }));
    EXPECT_TRUE(wait_all_free());
}

TEST_F(pool_test, a_member_whose_qemu_died_is_replaced_by_a_new_clone) {
    const launcher::state_directory victim(run().state_root(), "p-1");
    const auto before = launcher::read_runtime_info(victim);
    ASSERT_TRUE(before);
    ::kill(before->qemu_pid, SIGKILL);
    for (int i = 0; i < 100 && launcher::is_running(victim); ++i)
        std::this_thread::sleep_for(50ms);
    std::set<std::string> got;
    std::vector<json::object> held;
    for (int i = 0; i < pool_size; ++i) {
        held.push_back(lease());
        got.insert(vm_of(held.back()));
    }
    EXPECT_EQ(got.size(), static_cast<std::size_t>(pool_size));
    EXPECT_TRUE(got.count("p-1"));
    const auto after = launcher::read_runtime_info(victim);
    ASSERT_TRUE(after);
    EXPECT_NE(after->qemu_pid, before->qemu_pid);
    EXPECT_EQ(qmpkit({"shell", "p-1", "--", check_and_mark}).out, "checked\n");
    for (const auto& l : held)
        EXPECT_EQ(qmpkit({"pool", "release", "p", vm_of(l)}).code, 0);
    EXPECT_TRUE(wait_all_free());
}

TEST_F(pool_test, a_kept_vm_leaves_the_pool_as_it_was_and_a_new_one_takes_its_place) {
    const auto l = lease();
    const auto vm = vm_of(l);
    run().guest(vm, "echo evidence > /mnt/failure; sync");
    const auto r = qmpkit({"pool", "release", "p", vm, "--keep"});
    ASSERT_EQ(r.code, 0) << r.err;
    EXPECT_EQ(run().guest(vm, "cat /mnt/failure"), "evidence\n");
    EXPECT_TRUE(wait_all_free());
    const auto s = states();
    EXPECT_EQ(s.size(), static_cast<std::size_t>(pool_size));
    EXPECT_FALSE(s.count(vm));
    for (const auto& [member, state] : s)
        EXPECT_EQ(qmpkit({"shell", member, "--", "test -e /mnt/failure"}).code, 1) << member;
    EXPECT_EQ(qmpkit({"destroy", vm}).code, 0);
    EXPECT_EQ(qmpkit({"remove", vm}).code, 0);
}

TEST_F(pool_test, bad_requests_change_nothing) {
    auto r = qmpkit({"pool", "lease", "nosuch"});
    EXPECT_EQ(r.code, 1);
    EXPECT_NE(r.err.find("no pool named 'nosuch'"), std::string::npos) << r.err;
    r = qmpkit({"pool", "create", "p", "--from", "origin"});
    EXPECT_EQ(r.code, 1);
    EXPECT_NE(r.err.find("a pool named 'p' exists"), std::string::npos) << r.err;
    r = qmpkit({"pool", "release", "p", "origin"});
    EXPECT_EQ(r.code, 1);
    EXPECT_NE(r.err.find("not a member of pool 'p'"), std::string::npos) << r.err;
    r = qmpkit({"pool", "create", "q", "--from", "origin", "--point", "nosuch"});
    EXPECT_NE(r.code, 0);
    EXPECT_FALSE(fs::exists(run().state_root() / ".pools" / "q"));
    EXPECT_FALSE(fs::exists(run().state_root() / "q-1"));
    EXPECT_EQ(states().size(), static_cast<std::size_t>(pool_size));
    // A clone did not boot: its console has no ready line, and waiting for one is a timeout.
    r = qmpkit({"wait-ready", states().begin()->first, "--timeout", "0"});
    EXPECT_EQ(r.code, 4) << r.err;
    EXPECT_NE(r.err.find("no console line"), std::string::npos) << r.err;
}

// Last: the shared pool goes.
TEST_F(pool_test, destroy_leaves_no_process_file_or_ram_behind) {
    const auto leased = lease(); // leased VMs go too
    const auto members = states();
    auto r = qmpkit({"pool", "destroy", "p"});
    ASSERT_EQ(r.code, 0) << r.err;
    created_ = false;
    EXPECT_FALSE(fs::exists(run().state_root() / ".pools" / "p"));
    for (const auto& [vm, state] : members) {
        EXPECT_FALSE(fs::exists(run().state_root() / vm)) << vm;
        const auto dir = (run().state_root() / vm).string() + "/";
        for (int i = 0; i < 100 && test::processes_mentioning(dir) > 0; ++i)
            std::this_thread::sleep_for(50ms);
        EXPECT_EQ(test::processes_mentioning(dir), 0) << vm;
        for (const auto& e : fs::directory_iterator("/dev/shm"))
            EXPECT_NE(e.path().filename().string().rfind("qmpkit-" + vm + "-", 0), 0u) << e.path();
    }
    r = qmpkit({"pool", "status", "p"});
    EXPECT_EQ(r.code, 1);
    EXPECT_EQ(qmpkit({"pool", "list"}).out.find("p "), std::string::npos);
}

} // namespace
