// One process drives twenty qemus at once from one io_context on one thread: commands to all of
// them concurrently, events from all of them, then a clean `quit` of every one. Afterwards no
// descriptor and no child process may be left behind.

#include "bare_qemu.hpp"

#include <qmpkit/qmp/async_client.hpp>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/json/serialize.hpp>
#include <gtest/gtest.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <filesystem>
#include <iostream>
#include <string>
#include <sys/wait.h>
#include <vector>

namespace {

using namespace qmpkit;
using namespace std::chrono_literals;
namespace asio = boost::asio;
namespace json = boost::json;
using boost::system::error_code;

constexpr int vm_count = 20;
constexpr int commands_per_vm = 200;
constexpr int in_flight_per_vm = 4;

int open_fds() {
    int n = 0;
    for ([[maybe_unused]] const auto& entry : std::filesystem::directory_iterator("/proc/self/fd"))
        ++n;
    return n;
}

// How many VMs had commands outstanding at once.
struct fleet_load {
    int active = 0;
    int max_active = 0;
};

// One VM's client and what happened on it; every coroutine runs on the test thread.
struct vm_run {
    fleet_load* fleet = nullptr;
    std::string name;
    std::unique_ptr<test::bare_qemu> qemu;
    std::unique_ptr<qmp::async_client> qmp;
    int handed_out = 0;
    int completed = 0;
    bool running = false;
    int resumes_caused = 0, stops_caused = 0;
    int resumes_seen = 0, stops_seen = 0, other_events = 0;
    bool shutdown_seen = false;
    bool disconnected = false;
    std::vector<std::string> failures;

    void fail(std::string what) {
        if (failures.size() < 10)
            failures.push_back(name + ": " + std::move(what));
    }

    // Worker 0 toggles the run state (one event per command); the others ask for the VM's name,
    // which tells that the reply came from the right qemu, and send an unknown HMP command that
    // qemu echoes, which tells that it is the reply to the right command.
    asio::awaitable<void> worker(int k) {
        while (handed_out < commands_per_vm) {
            const int i = handed_out++;
            if (k == 0) {
                const std::string verb = running ? "stop" : "cont";
                auto [ec, v] = co_await qmp->async_execute(verb, json::object{},
                                                           asio::as_tuple(asio::use_awaitable));
                if (ec)
                    fail(verb + ": " + ec.message());
                running = !running;
                ++(running ? resumes_caused : stops_caused);
            } else if (i % 2 == 0) {
                auto [ec, v] = co_await qmp->async_execute(
                    std::string("query-name"), json::object{}, asio::as_tuple(asio::use_awaitable));
                if (ec || !v.is_object() || v.get_object().if_contains("name") == nullptr ||
                    v.at("name") != json::value(name))
                    fail("query-name answered " + json::serialize(v));
            } else {
                const auto token = name + "-" + std::to_string(i);
                auto [ec, text] =
                    co_await qmp->async_hmp(token, asio::as_tuple(asio::use_awaitable));
                if (ec || text != "unknown command: '" + token + "'\r\n")
                    fail("hmp " + token + " answered '" + text + "'");
            }
            ++completed;
        }
    }

    asio::awaitable<void> drive() {
        auto ex = co_await asio::this_coro::executor;
        auto [hs_ec, greeting] = co_await qmp->async_handshake(asio::as_tuple(asio::use_awaitable));
        if (hs_ec) {
            fail("handshake: " + hs_ec.message());
            co_return;
        }
        auto events = qmp->listen();

        fleet->max_active = std::max(fleet->max_active, ++fleet->active);
        int workers = in_flight_per_vm;
        asio::steady_timer all_done(ex, asio::steady_timer::time_point::max());
        for (int k = 0; k < in_flight_per_vm; ++k)
            asio::co_spawn(ex, worker(k), [&](std::exception_ptr e) {
                if (e)
                    fail("a worker threw");
                if (--workers == 0)
                    all_done.cancel();
            });
        co_await all_done.async_wait(asio::as_tuple(asio::use_awaitable));
        --fleet->active;

        // Every event qemu emitted for a command came before that command's reply: all are
        // queued in the listener by now.
        while (auto e = events.try_pop()) {
            if (e->name == "RESUME")
                ++resumes_seen;
            else if (e->name == "STOP")
                ++stops_seen;
            else
                ++other_events;
        }

        // A clean end: quit, its SHUTDOWN event, then the connection closes.
        auto [quit_ec, quit_v] = co_await qmp->async_execute(std::string("quit"), json::object{},
                                                             asio::as_tuple(asio::use_awaitable));
        if (quit_ec)
            fail("quit: " + quit_ec.message());
        for (;;) {
            auto [ec, e] =
                co_await qmp->async_wait_event(events, 10s, asio::as_tuple(asio::use_awaitable));
            if (ec == qmp::errc::disconnected) {
                disconnected = true;
                break;
            }
            if (ec) {
                fail("waiting for the end: " + ec.message());
                break;
            }
            if (e.name == "SHUTDOWN" && e.data.contains("reason") &&
                e.data.at("reason").as_string() == "host-qmp-quit")
                shutdown_seen = true;
            else
                ++other_events;
        }
    }
};

TEST(many_vms, twenty_qemus_on_one_io_context) {
    if (!test::qemu_available())
        GTEST_SKIP() << "qemu-system-x86_64 is not installed (scripts/setup installs it)";
    const int fds_before = open_fds();
    int fds_during = 0;
    {
        asio::io_context io(1);
        fleet_load fleet;
        std::vector<vm_run> vms(vm_count);
        const auto start = std::chrono::steady_clock::now();
        for (int k = 0; k < vm_count; ++k) {
            auto& vm = vms[k];
            vm.name = "vm-" + std::to_string(k);
            vm.fleet = &fleet;
            vm.qemu = std::make_unique<test::bare_qemu>(
                std::vector<std::string>{"-machine", "none", "-m", "16", "-name", vm.name});
            vm.qmp = std::make_unique<qmp::async_client>(io.get_executor());
            vm.qmp->adopt(vm.qemu->take_monitor_fd());
        }
        fds_during = open_fds();

        int running = vm_count;
        for (auto& vm : vms)
            asio::co_spawn(io, vm.drive(), [&](std::exception_ptr e) {
                if (e)
                    vm.fail("its driver threw");
                if (--running == 0)
                    io.stop(); // a client whose driver failed early may still have a read pending
            });
        io.run_for(50s);
        const double seconds =
            std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
        ASSERT_EQ(running, 0) << "some VMs did not finish in 50 s";

        // The VMs were worked on at the same time, not one after the other.
        EXPECT_GT(fleet.max_active, vm_count / 2);
        int total_events = 0;
        for (auto& vm : vms) {
            for (const auto& f : vm.failures)
                ADD_FAILURE() << f;
            EXPECT_EQ(vm.completed, commands_per_vm) << vm.name;
            EXPECT_GT(vm.resumes_caused, 0) << vm.name;
            EXPECT_EQ(vm.resumes_seen, vm.resumes_caused) << vm.name;
            EXPECT_EQ(vm.stops_seen, vm.stops_caused) << vm.name;
            EXPECT_EQ(vm.other_events, 0) << vm.name;
            EXPECT_TRUE(vm.shutdown_seen) << vm.name;
            EXPECT_TRUE(vm.disconnected) << vm.name;
            total_events += vm.resumes_seen + vm.stops_seen + (vm.shutdown_seen ? 1 : 0);

            // qemu ended by itself after quit, with status 0.
            const int status = vm.qemu->wait_exit(10000);
            EXPECT_TRUE(status != -1 && WIFEXITED(status) && WEXITSTATUS(status) == 0)
                << vm.name << " ended with status " << status;
        }
        std::cout << vm_count << " VMs, " << vm_count * commands_per_vm << " commands, "
                  << total_events << " events, at most " << fleet.max_active
                  << " VMs busy at once, start to clean end in " << seconds << " s; "
                  << "fds before " << fds_before << ", with all VMs " << fds_during << "\n";
    }
    const int fds_after = open_fds();
    std::cout << "fds after " << fds_after << "\n";
    EXPECT_EQ(fds_after, fds_before) << "descriptors leaked";
    EXPECT_GT(fds_during, fds_before + vm_count - 1);
    // Every qemu was reaped: no child of ours is left, running or zombie.
    errno = 0;
    EXPECT_EQ(::waitpid(-1, nullptr, WNOHANG), -1);
    EXPECT_EQ(errno, ECHILD) << "a child process is left";
}

} // namespace
