// Load on one QMP connection to a real qemu: 10,000 commands through the asynchronous client,
// eight in flight at any time, while `stop`/`cont` make qemu interleave STOP and RESUME events
// with the replies. Every reply must reach the command that asked for it (each reply carries
// something only its own request had), none may be lost, and every event the commands caused
// must arrive, in order.

#include "bare_qemu.hpp"

#include <qmpkit/qmp/async_client.hpp>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/json/serialize.hpp>
#include <gtest/gtest.h>

#include <chrono>
#include <iostream>
#include <map>
#include <string>
#include <vector>

namespace {

using namespace qmpkit;
using namespace std::chrono_literals;
namespace asio = boost::asio;
namespace json = boost::json;
using boost::system::error_code;

constexpr int total_commands = 10'000;
constexpr int in_flight = 8; // qemu's own queue length: the client's default window
const std::string qom_get = "qom-get";
const std::string qom_set = "qom-set";

// Built outside the coroutines: GCC 12 rejects some braced initialisers inside co_await
// expressions ("array used as initializer").
json::object qom_args(std::string path, std::string property) {
    return json::object{{"path", std::move(path)}, {"property", std::move(property)}};
}

// What the run saw, shared by the coroutines (all on the one thread that runs the io_context).
struct load_state {
    int handed_out = 0; // numbers given to commands
    int completed = 0;  // replies matched to their command
    int outstanding = 0;
    int max_outstanding = 0;
    int resumes_caused = 0;
    int stops_caused = 0;
    bool running = false;            // the VM's run state as the last stop/cont left it
    std::vector<std::string> events; // names, in arrival order
    std::vector<std::string> failures;

    void fail(std::string what) {
        if (failures.size() < 20)
            failures.push_back(std::move(what));
    }
};

class qmp_load_test : public ::testing::Test {
protected:
    void SetUp() override {
        if (!test::qemu_available())
            GTEST_SKIP() << "qemu-system-x86_64 is not installed (scripts/setup installs it)";
        // No machine at all: nothing but the monitor costs qemu time.
        qemu_ = std::make_unique<test::bare_qemu>(std::vector<std::string>{"-machine", "none"});
    }

    // One command, counted while it is outstanding.
    asio::awaitable<std::tuple<error_code, json::value>> execute(std::string name,
                                                                 json::object args) {
        ++s_.outstanding;
        s_.max_outstanding = std::max(s_.max_outstanding, s_.outstanding);
        auto result = co_await qmp_->async_execute(std::move(name), std::move(args),
                                                   asio::as_tuple(asio::use_awaitable));
        --s_.outstanding;
        co_return result;
    }

    asio::awaitable<std::tuple<error_code, std::string>> hmp(std::string line) {
        ++s_.outstanding;
        s_.max_outstanding = std::max(s_.max_outstanding, s_.outstanding);
        auto result =
            co_await qmp_->async_hmp(std::move(line), asio::as_tuple(asio::use_awaitable));
        --s_.outstanding;
        co_return result;
    }

    // Worker 0 is the event source: it alternates cont and stop, one at a time, so each of its
    // commands changes the run state and makes exactly one event. The others send commands whose
    // replies name the request: an unknown HMP command echoed back, a missing QOM path named in
    // the error, and a value set on the worker's own QOM object and read back.
    asio::awaitable<void> worker(int k) {
        const std::string group = "/objects/tg" + std::to_string(k);
        while (s_.handed_out < total_commands) {
            const int i = s_.handed_out++;
            if (k == 0) {
                const std::string verb = s_.running ? "stop" : "cont";
                auto [ec, v] = co_await execute(verb, json::object{});
                if (ec || !v.is_object() || !v.get_object().empty())
                    s_.fail(verb + " #" + std::to_string(i) + ": " + ec.message());
                s_.running = !s_.running;
                ++(s_.running ? s_.resumes_caused : s_.stops_caused);
                ++s_.completed;
                continue;
            }
            const std::string token = "qmpkit-load-" + std::to_string(i);
            const int kind = i % 3;
            if (kind == 0 || s_.handed_out >= total_commands) {
                auto [ec, text] = co_await hmp(token);
                if (ec || text != "unknown command: '" + token + "'\r\n")
                    s_.fail("hmp #" + std::to_string(i) + " got '" + text + "' (" + ec.message() +
                            ")");
                ++s_.completed;
            } else if (kind == 1) {
                auto args = qom_args("/" + token, "type");
                auto [ec, v] = co_await execute(qom_get, std::move(args));
                const auto* desc = v.is_object() ? v.get_object().if_contains("desc") : nullptr;
                if (ec != qmp::errc::command_failed || !desc || !desc->is_string() ||
                    desc->get_string() != "Device '/" + token + "' not found")
                    s_.fail("qom-get #" + std::to_string(i) + " got " + json::serialize(v) + " (" +
                            ec.message() + ")");
                ++s_.completed;
            } else {
                // A pair: the set's value is this command's number, the get must return it. Other
                // workers' commands run between the two, but none touches this object.
                const int j = s_.handed_out++;
                auto set_args = qom_args(group, "limits");
                set_args["value"] = json::object{{"iops-total", i}};
                auto [set_ec, set_v] = co_await execute(qom_set, std::move(set_args));
                if (set_ec)
                    s_.fail("qom-set #" + std::to_string(i) + ": " + json::serialize(set_v));
                ++s_.completed;
                auto get_args = qom_args(group, "limits");
                auto [get_ec, get_v] = co_await execute(qom_get, std::move(get_args));
                const auto* iops =
                    get_v.is_object() ? get_v.get_object().if_contains("iops-total") : nullptr;
                if (get_ec || !iops || !iops->is_int64() || iops->get_int64() != i)
                    s_.fail("qom-get #" + std::to_string(j) + " of " + group + " expected " +
                            std::to_string(i) + ", got " + json::serialize(get_v));
                ++s_.completed;
            }
        }
    }

    asio::awaitable<void> read_events(qmp::event_listener& listener) {
        for (;;) {
            // No deadline: the driver cancels this wait once every reply is in, and every event
            // qemu emitted for a command precedes that command's reply on the socket.
            auto [ec, e] =
                co_await qmp_->async_wait_event(listener, 0ms, asio::as_tuple(asio::use_awaitable));
            if (ec == qmp::errc::cancelled)
                co_return;
            if (ec) {
                s_.fail("waiting for an event: " + ec.message());
                co_return;
            }
            s_.events.push_back(e.name);
        }
    }

    asio::awaitable<void> drive() {
        auto ex = co_await asio::this_coro::executor;
        auto [hs_ec, greeting] =
            co_await qmp_->async_handshake(asio::as_tuple(asio::use_awaitable));
        if (hs_ec) {
            s_.fail("handshake: " + hs_ec.message());
            co_return;
        }
        for (int k = 1; k < in_flight; ++k) {
            json::object args{{"qom-type", "throttle-group"}, {"id", "tg" + std::to_string(k)}};
            auto [ec, v] = co_await qmp_->async_execute(std::string("object-add"), std::move(args),
                                                        asio::as_tuple(asio::use_awaitable));
            if (ec) {
                s_.fail("object-add: " + json::serialize(v));
                co_return;
            }
        }

        auto listener = qmp_->listen(); // every event: anything unexpected shows up too
        asio::cancellation_signal stop_reading;
        bool reader_done = false;
        asio::co_spawn(ex, read_events(listener),
                       asio::bind_cancellation_slot(
                           stop_reading.slot(), [&](std::exception_ptr) { reader_done = true; }));

        const auto start = std::chrono::steady_clock::now();
        int workers = in_flight;
        asio::steady_timer all_done(ex, asio::steady_timer::time_point::max());
        for (int k = 0; k < in_flight; ++k)
            asio::co_spawn(ex, worker(k), [&](std::exception_ptr e) {
                if (e)
                    s_.fail("a worker threw");
                if (--workers == 0)
                    all_done.cancel();
            });
        co_await all_done.async_wait(asio::as_tuple(asio::use_awaitable));
        elapsed_ = std::chrono::steady_clock::now() - start;

        // One more round trip: whatever qemu emitted before this reply has been routed by now.
        auto [ec, status] = co_await qmp_->async_execute(
            std::string("query-status"), json::object{}, asio::as_tuple(asio::use_awaitable));
        if (ec || !status.is_object() || status.at("running") != json::value(s_.running))
            s_.fail("query-status at the end: " + json::serialize(status));
        stop_reading.emit(asio::cancellation_type::terminal);
        while (!reader_done) {
            asio::steady_timer tick(ex, 1ms);
            co_await tick.async_wait(asio::use_awaitable);
        }
        leftover_ = static_cast<int>(listener.queued());
    }

    std::unique_ptr<test::bare_qemu> qemu_;
    asio::io_context io_{1};
    std::unique_ptr<qmp::async_client> qmp_; // destroyed before the io_context
    load_state s_;
    std::chrono::steady_clock::duration elapsed_{};
    int leftover_ = 0;
};

TEST_F(qmp_load_test, ten_thousand_commands_eight_in_flight_with_events_interleaved) {
    qmp_ = std::make_unique<qmp::async_client>(io_.get_executor());
    qmp_->adopt(qemu_->take_monitor_fd());
    bool finished = false;
    asio::co_spawn(io_, drive(), [&](std::exception_ptr e) {
        finished = true;
        io_.stop(); // the client's read stays pending
        if (e)
            std::rethrow_exception(e);
    });
    // A hang shows as a failure, not as the ctest timeout.
    io_.run_for(100s);
    ASSERT_TRUE(finished) << "the load did not finish in 100 s; " << s_.completed << " replies";

    for (const auto& f : s_.failures)
        ADD_FAILURE() << f;
    EXPECT_EQ(s_.handed_out, total_commands);
    EXPECT_EQ(s_.completed, total_commands) << "replies lost";
    EXPECT_EQ(s_.max_outstanding, in_flight);
    EXPECT_EQ(s_.outstanding, 0);

    // Events: one per stop/cont, alternating from the first RESUME, none other and none left.
    std::map<std::string, int> counts;
    for (const auto& name : s_.events)
        ++counts[name];
    EXPECT_GT(s_.resumes_caused, 100);
    EXPECT_EQ(counts["RESUME"], s_.resumes_caused);
    EXPECT_EQ(counts["STOP"], s_.stops_caused);
    EXPECT_EQ(counts.size(), 2u) << "unexpected events arrived";
    for (std::size_t n = 0; n < s_.events.size(); ++n)
        if (s_.events[n] != (n % 2 == 0 ? "RESUME" : "STOP")) {
            ADD_FAILURE() << "event " << n << " is " << s_.events[n] << ": out of order";
            break;
        }
    EXPECT_EQ(leftover_, 0);

    const double seconds = std::chrono::duration<double>(elapsed_).count();
    std::cout << total_commands << " commands (" << in_flight << " in flight) and "
              << s_.events.size() << " events in " << seconds
              << " s: " << static_cast<int>(total_commands / seconds) << " commands/s\n";
    RecordProperty("commands_per_second", static_cast<int>(total_commands / seconds));
}

} // namespace
