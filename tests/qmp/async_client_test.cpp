// The asynchronous client against the scripted fake server, driven by an io_context on the
// test thread: callbacks, C++20 coroutines and per-operation cancellation.

#include "qmp/fake_qmp_server.hpp"
#include "qmp/test_support.hpp"

#include <qmpkit/qmp/async_client.hpp>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/json/parse.hpp>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <functional>
#include <future>
#include <memory>
#include <optional>
#include <string>
#include <unistd.h>
#include <vector>

namespace qmpkit::qmp {
namespace {

namespace asio = boost::asio;
namespace json = boost::json;
using namespace std::chrono_literals;
using boost::system::error_code;
using test::checkpoint;
using test::fake_qmp_server;
using ::testing::HasSubstr;

// What an execute completed with.
struct outcome {
    error_code ec;
    json::value value;
};

// What a wait_event completed with.
struct event_outcome {
    error_code ec;
    event e;
};

class async_client_test : public ::testing::Test {
protected:
    // Starts the script; the guard ends the conversation when the test body leaves.
    test::script_guard run_script(std::function<void(fake_qmp_server&)> script) {
        server.run(std::move(script));
        return {server, [this] { qmp.reset(); }};
    }

    // Starts the script and gives the client its end of the socketpair (no handshake yet).
    test::script_guard start(std::function<void(fake_qmp_server&)> script) {
        auto guard = run_script(std::move(script));
        qmp = std::make_unique<async_client>(io.get_executor(), options);
        qmp->adopt(server.take_client_fd());
        return guard;
    }

    // Runs the io_context until `done` holds or the deadline passes; false on the deadline.
    bool run_until(const std::function<bool()>& done, std::chrono::milliseconds deadline = 5s) {
        const auto until = std::chrono::steady_clock::now() + deadline;
        while (!done()) {
            if (std::chrono::steady_clock::now() >= until)
                return false;
            if (io.stopped()) // it ran out of work earlier
                io.restart();
            io.run_one_for(10ms);
        }
        return true;
    }

    void handshake() {
        std::optional<error_code> result;
        qmp->async_handshake([&](error_code ec, greeting) { result = ec; });
        ASSERT_TRUE(run_until([&] { return result.has_value(); })) << "handshake hangs";
        ASSERT_FALSE(*result) << result->message();
    }

    // Starts a command; its outcome lands in the returned optional.
    std::shared_ptr<std::optional<outcome>> execute(std::string name, json::object args = {},
                                                    execute_options opts = {}) {
        auto result = std::make_shared<std::optional<outcome>>();
        qmp->async_execute(std::move(name), std::move(args), std::move(opts),
                           [result](error_code ec, json::value v) {
                               result->emplace(outcome{ec, std::move(v)});
                           });
        return result;
    }

    std::shared_ptr<std::optional<event_outcome>> wait_event(event_listener& l,
                                                             std::chrono::milliseconds timeout) {
        auto result = std::make_shared<std::optional<event_outcome>>();
        qmp->async_wait_event(l, timeout, [result](error_code ec, event e) {
            result->emplace(event_outcome{ec, std::move(e)});
        });
        return result;
    }

    // Runs a coroutine to its end and rethrows what escaped it.
    void run_coroutine(std::function<asio::awaitable<void>()> body) {
        bool done = false;
        std::exception_ptr escaped;
        asio::co_spawn(io, std::move(body), [&](std::exception_ptr e) {
            escaped = e;
            done = true;
        });
        ASSERT_TRUE(run_until([&] { return done; }, 10s)) << "coroutine hangs";
        if (escaped)
            std::rethrow_exception(escaped);
    }

    void TearDown() override {
        qmp.reset(); // closes our end, so a script waiting for EOF ends
        test::join_script(server);
    }

    test::captured_log log;
    client_options options = test::quick_options(log);
    fake_qmp_server server;
    asio::io_context io;
    // Signals outlive every operation bound to them: TearDown ends the client first.
    asio::cancellation_signal cancel;
    asio::cancellation_signal cancel_other;
    std::unique_ptr<async_client> qmp;
};

TEST_F(async_client_test, handshakes_with_a_callback) {
    json::object capabilities;
    auto script = start([&](fake_qmp_server& s) { capabilities = s.accept_handshake({"oob"}); });
    EXPECT_TRUE(qmp->is_open());
    EXPECT_FALSE(qmp->is_ready());

    std::optional<std::pair<error_code, greeting>> result;
    qmp->async_handshake([&](error_code ec, greeting g) { result.emplace(ec, std::move(g)); });
    EXPECT_FALSE(result) << "completions are never run inline";
    ASSERT_TRUE(run_until([&] { return result.has_value(); }));
    EXPECT_FALSE(result->first);
    EXPECT_EQ(result->second.version_string(), "7.2.0");
    EXPECT_TRUE(qmp->is_ready());
    ASSERT_TRUE(qmp->server_greeting());
    EXPECT_TRUE(qmp->server_greeting()->offers("oob"));
    server.join();
    EXPECT_EQ(capabilities.at("arguments"), json::parse(R"({"enable": ["oob"]})"));
}

TEST_F(async_client_test, refuses_commands_before_the_handshake) {
    auto script = start([](fake_qmp_server& s) { s.accept_handshake(); });
    auto early = execute("query-status");
    ASSERT_TRUE(run_until([&] { return early->has_value(); }));
    EXPECT_EQ((*early)->ec, errc::not_connected);
    handshake();
}

TEST_F(async_client_test, refuses_a_second_handshake) {
    auto script = start([](fake_qmp_server& s) { s.accept_handshake(); });
    handshake();
    std::optional<error_code> again;
    qmp->async_handshake([&](error_code ec, greeting) { again = ec; });
    ASSERT_TRUE(run_until([&] { return again.has_value(); }));
    EXPECT_EQ(*again, asio::error::already_connected);
}

TEST_F(async_client_test, runs_a_session_as_a_coroutine) {
    auto script = start([](fake_qmp_server& s) {
        s.accept_handshake();
        auto status = s.expect_command("query-status");
        s.event("STOP", {{"reason", "user"}});
        s.reply(status.at("id"), {{"status", "paused"}, {"running", false}});
        auto bad = s.expect_command("bogus");
        s.error(bad.at("id"), "CommandNotFound", "The command bogus has not been found");
    });
    run_coroutine([&]() -> asio::awaitable<void> {
        auto g = co_await qmp->async_handshake(asio::use_awaitable);
        EXPECT_EQ(g.version_string(), "7.2.0");

        auto stop = qmp->listen({"STOP"});
        auto status = co_await qmp->async_execute("query-status", {}, asio::use_awaitable);
        EXPECT_EQ(status.at("status"), "paused");
        auto e = co_await qmp->async_wait_event(stop, 1s, asio::use_awaitable);
        EXPECT_EQ(e.name, "STOP");
        EXPECT_EQ(e.data.at("reason"), "user");

        auto [ec, body] =
            co_await qmp->async_execute("bogus", {}, asio::as_tuple(asio::use_awaitable));
        EXPECT_EQ(ec, errc::command_failed);
        EXPECT_EQ(body, json::parse(R"({"class": "CommandNotFound",
                                        "desc": "The command bogus has not been found"})"));

        // With plain use_awaitable a failure is thrown.
        try {
            co_await qmp->async_wait_event(stop, 20ms, asio::use_awaitable);
            ADD_FAILURE() << "no exception";
        } catch (const boost::system::system_error& timeout) {
            EXPECT_EQ(timeout.code(), errc::timeout);
        }
    });
}

TEST_F(async_client_test, delivers_events_around_the_handshake_to_earlier_listeners) {
    auto script = start([](fake_qmp_server& s) {
        s.event("EARLY"); // before the greeting, even
        s.send_greeting();
        s.event("BEFORE_CAPABILITIES");
        auto caps = s.expect_command("qmp_capabilities");
        s.event("BEFORE_CAPABILITIES_REPLY");
        s.reply(caps.at("id"), json::object{});
        auto one = s.expect_command("one");
        auto two = s.expect_command("two");
        s.event("BETWEEN_REPLIES", {{"n", 1}});
        s.reply(two.at("id"), 2);
        s.event("BETWEEN_REPLIES", {{"n", 2}});
        s.reply(one.at("id"), 1);
    });
    auto all = qmp->listen();
    auto between = qmp->listen({"BETWEEN_REPLIES"});
    handshake();
    auto one = execute("one");
    auto two = execute("two");
    ASSERT_TRUE(run_until([&] { return one->has_value() && two->has_value(); }));
    EXPECT_EQ((*one)->value, 1);
    EXPECT_EQ((*two)->value, 2);

    std::vector<std::string> names;
    while (auto e = all.try_pop())
        names.push_back(e->name);
    EXPECT_EQ(names,
              (std::vector<std::string>{"EARLY", "BEFORE_CAPABILITIES", "BEFORE_CAPABILITIES_REPLY",
                                        "BETWEEN_REPLIES", "BETWEEN_REPLIES"}));
    EXPECT_EQ(between.queued(), 2u);
}

TEST_F(async_client_test, a_waiting_listener_gets_the_event_as_it_arrives) {
    checkpoint waiting;
    auto script = start([&](fake_qmp_server& s) {
        s.accept_handshake();
        waiting.wait();
        s.event("RESUME");
    });
    handshake();
    auto resume = qmp->listen({"RESUME"});
    auto got = wait_event(resume, 0ms);
    io.poll();
    EXPECT_FALSE(got->has_value());
    waiting.reach();
    ASSERT_TRUE(run_until([&] { return got->has_value(); }));
    EXPECT_FALSE((*got)->ec);
    EXPECT_EQ((*got)->e.name, "RESUME");

    // A second concurrent wait on one listener is refused.
    auto first = wait_event(resume, 0ms);
    auto second = wait_event(resume, 0ms);
    ASSERT_TRUE(run_until([&] { return second->has_value(); }));
    EXPECT_EQ((*second)->ec, boost::system::errc::operation_in_progress);
    EXPECT_FALSE(first->has_value());
}

TEST_F(async_client_test, drops_unknown_ids_and_completes_the_real_reply) {
    auto script = start([](fake_qmp_server& s) {
        s.accept_handshake();
        auto command = s.expect_command("query-name");
        s.reply(999999, "stray");
        s.error(888888, "GenericError", "stray error");
        s.reply(command.at("id"), {{"name", "vm"}});
    });
    handshake();
    auto result = execute("query-name");
    ASSERT_TRUE(run_until([&] { return result->has_value(); }));
    EXPECT_FALSE((*result)->ec);
    EXPECT_EQ((*result)->value.at("name"), "vm");
    EXPECT_THAT(log.text(), HasSubstr("unknown id 999999"));
    EXPECT_THAT(log.text(), HasSubstr("unknown id 888888"));
}

TEST_F(async_client_test, an_error_without_id_completes_the_oldest_command) {
    auto script = start([](fake_qmp_server& s) {
        s.accept_handshake();
        auto first = s.expect_command("first");
        auto second = s.expect_command("second");
        s.error(nullptr, "GenericError", "JSON parse error");
        s.reply(second.at("id"), "second");
    });
    handshake();
    auto first = execute("first");
    auto second = execute("second");
    ASSERT_TRUE(run_until([&] { return first->has_value() && second->has_value(); }));
    EXPECT_EQ((*first)->ec, errc::command_failed);
    EXPECT_EQ((*first)->value.at("desc"), "JSON parse error");
    EXPECT_FALSE((*second)->ec);
    EXPECT_EQ((*second)->value, "second");
}

TEST_F(async_client_test, a_reply_without_id_completes_the_oldest_command) {
    auto script = start([](fake_qmp_server& s) {
        s.accept_handshake();
        s.expect_command("first");
        s.expect_command("second");
        s.reply(nullptr, "answer one");
        s.send_raw("{\"return\": \"answer two\", \"id\": null}\r\n");
    });
    handshake();
    auto first = execute("first");
    auto second = execute("second");
    ASSERT_TRUE(run_until([&] { return first->has_value() && second->has_value(); }));
    EXPECT_EQ((*first)->value, "answer one");
    EXPECT_EQ((*second)->value, "answer two");
}

TEST_F(async_client_test, times_out_and_drops_the_late_reply) {
    auto script = start([](fake_qmp_server& s) {
        s.accept_handshake();
        auto slow = s.expect_command("slow");
        auto next = s.expect_command("next");
        s.reply(slow.at("id"), "late");
        s.reply(next.at("id"), "next");
    });
    handshake();
    execute_options quick;
    quick.timeout = 50ms;
    auto slow = execute("slow", {}, quick);
    ASSERT_TRUE(run_until([&] { return slow->has_value(); }));
    EXPECT_EQ((*slow)->ec, errc::timeout);

    auto next = execute("next");
    ASSERT_TRUE(run_until([&] { return next->has_value(); }));
    EXPECT_FALSE((*next)->ec);
    EXPECT_EQ((*next)->value, "next");
    EXPECT_THAT(log.text(), HasSubstr("late QMP reply"));
}

TEST_F(async_client_test, times_out_several_commands_each_at_its_own_deadline) {
    checkpoint timed_out;
    auto script = start([&](fake_qmp_server& s) {
        s.accept_handshake();
        auto a = s.expect_command("a");
        s.expect_command("b");
        s.expect_command("c");
        auto d = s.expect_command("d");
        s.reply(d.at("id"), "d");
        timed_out.wait();
        s.reply(a.at("id"), "a");
    });
    handshake();
    const auto begin = std::chrono::steady_clock::now();
    std::vector<std::pair<std::string, std::chrono::steady_clock::duration>> finished;
    auto run = [&](std::string name, std::optional<std::chrono::milliseconds> timeout) {
        execute_options opts;
        opts.timeout = timeout;
        qmp->async_execute(name, {}, opts, [&, name](error_code ec, json::value) {
            const bool times_out = name == "b" || name == "c";
            EXPECT_EQ(ec, times_out ? make_error_code(errc::timeout) : error_code{}) << name;
            finished.emplace_back(name, std::chrono::steady_clock::now() - begin);
            if (name == "c")
                timed_out.reach();
        });
    };
    // The first deadline is the latest: the later, earlier ones must re-arm the client's timer.
    run("a", 5s);
    run("b", 40ms);
    run("c", 150ms);
    run("d", std::nullopt);
    ASSERT_TRUE(run_until([&] { return finished.size() == 4; }));
    ASSERT_EQ(finished[0].first, "d");
    ASSERT_EQ(finished[1].first, "b");
    ASSERT_EQ(finished[2].first, "c");
    ASSERT_EQ(finished[3].first, "a");
    EXPECT_GE(finished[1].second, 40ms);
    EXPECT_GE(finished[2].second, 150ms);
    EXPECT_LT(finished[2].second, 2s) << "not held back until the first command's deadline";
}

TEST_F(async_client_test, the_client_wide_command_timeout_applies) {
    options.command_timeout = 50ms;
    auto script = start([](fake_qmp_server& s) {
        s.accept_handshake();
        s.expect_command("slow");
    });
    handshake();
    auto slow = execute("slow");
    ASSERT_TRUE(run_until([&] { return slow->has_value(); }));
    EXPECT_EQ((*slow)->ec, errc::timeout);
}

TEST_F(async_client_test, a_zero_timeout_means_no_deadline) {
    options.command_timeout = 10ms;
    checkpoint reply_now;
    auto script = start([&](fake_qmp_server& s) {
        s.accept_handshake();
        auto patient = s.expect_command("patient");
        reply_now.wait();
        s.reply(patient.at("id"), "waited");
    });
    handshake();
    execute_options forever;
    forever.timeout = 0ms;
    auto patient = execute("patient", {}, forever);
    run_until([] { return false; }, 100ms);
    EXPECT_FALSE(patient->has_value());
    reply_now.reach();
    ASSERT_TRUE(run_until([&] { return patient->has_value(); }));
    EXPECT_EQ((*patient)->value, "waited");
}

TEST_F(async_client_test, cancels_a_sent_command_through_its_cancellation_slot) {
    checkpoint sent;
    auto script = start([&](fake_qmp_server& s) {
        s.accept_handshake();
        auto slow = s.expect_command("slow");
        sent.reach();
        auto next = s.expect_command("next");
        s.reply(slow.at("id"), "late");
        s.reply(next.at("id"), "next");
    });
    handshake();
    std::optional<outcome> slow;
    qmp->async_execute(
        "slow", {}, asio::bind_cancellation_slot(cancel.slot(), [&](error_code ec, json::value v) {
            slow.emplace(outcome{ec, std::move(v)});
        }));
    ASSERT_TRUE(run_until([&] { return sent.reached(); }));
    EXPECT_FALSE(slow);
    cancel.emit(asio::cancellation_type::terminal);
    ASSERT_TRUE(run_until([&] { return slow.has_value(); }));
    EXPECT_EQ(slow->ec, errc::cancelled);

    auto next = execute("next");
    ASSERT_TRUE(run_until([&] { return next->has_value(); }));
    EXPECT_EQ((*next)->value, "next");
}

TEST_F(async_client_test, cancelling_a_queued_command_means_it_is_never_sent) {
    std::vector<json::value> received;
    auto script = start([&](fake_qmp_server& s) {
        s.accept_handshake();
        std::vector<json::object> held;
        for (int i = 0; i < 8; ++i)
            held.push_back(s.expect_command("hold"));
        s.expect_silence(50ms);
        for (auto& h : held)
            s.reply(h.at("id"), "done");
        auto after = s.expect_command("after");
        received.push_back(after.at("id"));
        s.reply(after.at("id"), "after");
    });
    handshake();
    std::vector<std::shared_ptr<std::optional<outcome>>> held;
    for (int i = 0; i < 8; ++i)
        held.push_back(execute("hold"));
    std::optional<outcome> queued;
    qmp->async_execute(
        "queued", {},
        asio::bind_cancellation_slot(cancel.slot(), [&](error_code ec, json::value v) {
            queued.emplace(outcome{ec, std::move(v)});
        }));
    cancel.emit(asio::cancellation_type::terminal);
    auto after = execute("after");
    ASSERT_TRUE(run_until([&] { return after->has_value(); }));
    ASSERT_TRUE(queued);
    EXPECT_EQ(queued->ec, errc::cancelled);
    EXPECT_EQ((*after)->value, "after");
    for (auto& h : held)
        EXPECT_EQ((*h)->value, "done");
}

TEST_F(async_client_test, cancels_with_awaitable_operators) {
    using namespace asio::experimental::awaitable_operators;
    auto script = start([](fake_qmp_server& s) {
        s.accept_handshake();
        auto slow = s.expect_command("slow");
        auto fast = s.expect_command("fast");
        s.reply(fast.at("id"), "fast");
        s.reply(slow.at("id"), "too late"); // dropped: its caller gave up
        auto next = s.expect_command("next");
        s.reply(next.at("id"), "next");
    });
    run_coroutine([&]() -> asio::awaitable<void> {
        co_await qmp->async_handshake(asio::use_awaitable);
        asio::steady_timer deadline(io, 50ms);
        auto lost = co_await (qmp->async_execute("slow", {}, asio::use_awaitable) ||
                              deadline.async_wait(asio::use_awaitable));
        EXPECT_EQ(lost.index(), 1u) << "the timer wins, the command is cancelled";

        asio::steady_timer generous(io, 5s);
        auto won = co_await (qmp->async_execute("fast", {}, asio::use_awaitable) ||
                             generous.async_wait(asio::use_awaitable));
        EXPECT_EQ(won.index(), 0u);
        if (won.index() == 0) {
            EXPECT_EQ(std::get<0>(won), "fast");
        }

        EXPECT_EQ(co_await qmp->async_execute("next", {}, asio::use_awaitable), "next");
    });
    EXPECT_THAT(log.text(), HasSubstr("cancelled"));
}

TEST_F(async_client_test, cancels_a_wait_for_an_event) {
    auto script = start([](fake_qmp_server& s) { s.accept_handshake(); });
    handshake();
    auto stop = qmp->listen({"STOP"});
    std::optional<error_code> result;
    qmp->async_wait_event(
        stop, 0ms,
        asio::bind_cancellation_slot(cancel.slot(), [&](error_code ec, event) { result = ec; }));
    io.poll();
    cancel.emit(asio::cancellation_type::terminal);
    ASSERT_TRUE(run_until([&] { return result.has_value(); }));
    EXPECT_EQ(*result, errc::cancelled);
}

TEST_F(async_client_test, cancels_hmp_and_has_command_through_their_cancellation_slots) {
    options.command_timeout = 2s;
    checkpoint sent;
    auto script = start([&](fake_qmp_server& s) {
        s.accept_handshake();
        auto hmp = s.expect_command("human-monitor-command");
        auto query = s.expect_command("query-commands");
        sent.reach();
        auto next = s.expect_command("next");
        s.reply(hmp.at("id"), "late");
        s.reply(query.at("id"), json::array{});
        s.reply(next.at("id"), "next");
    });
    handshake();
    std::optional<error_code> hmp;
    std::optional<error_code> query;
    qmp->async_hmp(
        "info status",
        asio::bind_cancellation_slot(cancel.slot(), [&](error_code ec, std::string) { hmp = ec; }));
    qmp->async_has_command("stop",
                           asio::bind_cancellation_slot(cancel_other.slot(),
                                                        [&](error_code ec, bool) { query = ec; }));
    ASSERT_TRUE(run_until([&] { return sent.reached(); }));
    cancel.emit(asio::cancellation_type::terminal);
    cancel_other.emit(asio::cancellation_type::terminal);
    ASSERT_TRUE(run_until([&] { return hmp && query; }));
    EXPECT_EQ(*hmp, errc::cancelled);
    EXPECT_EQ(*query, errc::cancelled);

    auto next = execute("next");
    ASSERT_TRUE(run_until([&] { return next->has_value(); }));
    EXPECT_EQ((*next)->value, "next");
}

TEST_F(async_client_test, cancels_a_handshake) {
    auto script = start([](fake_qmp_server& s) { s.expect_eof(); });
    std::optional<error_code> result;
    qmp->async_handshake(
        asio::bind_cancellation_slot(cancel.slot(), [&](error_code ec, greeting) { result = ec; }));
    io.poll();
    cancel.emit(asio::cancellation_type::terminal);
    ASSERT_TRUE(run_until([&] { return result.has_value(); }, 1s));
    EXPECT_EQ(*result, errc::cancelled);
    EXPECT_FALSE(qmp->is_open()) << "a half-negotiated connection is of no use";
}

TEST_F(async_client_test, a_disconnect_fails_every_pending_command_at_once) {
    auto script = start([](fake_qmp_server& s) {
        s.accept_handshake();
        for (int i = 0; i < 8; ++i)
            s.expect_command("pending");
        s.event("SHUTDOWN", {{"n", 1}});
        s.event("SHUTDOWN", {{"n", 2}});
        s.close();
    });
    handshake();
    auto queued_events = qmp->listen({"SHUTDOWN"});
    auto waiting = qmp->listen({"NEVER"});
    auto waiter = wait_event(waiting, 0ms);
    std::vector<std::shared_ptr<std::optional<outcome>>> pending;
    for (int i = 0; i < 11; ++i) // 8 sent, 3 queued in the client
        pending.push_back(execute("pending"));

    ASSERT_TRUE(run_until([&] { return waiter->has_value(); })) << "a waiting listener hangs";
    EXPECT_EQ((*waiter)->ec, errc::disconnected);
    ASSERT_TRUE(run_until([&] {
        return std::all_of(pending.begin(), pending.end(), [](auto& p) { return p->has_value(); });
    })) << "a pending command hangs";
    for (auto& p : pending)
        EXPECT_EQ((*p)->ec, errc::disconnected);
    EXPECT_FALSE(qmp->is_open());

    // Events queued before the end come first, then the end.
    for (int n = 1; n <= 2; ++n) {
        auto got = wait_event(queued_events, 1s);
        ASSERT_TRUE(run_until([&] { return got->has_value(); }));
        EXPECT_FALSE((*got)->ec);
        EXPECT_EQ((*got)->e.data.at("n"), n);
    }
    auto end = wait_event(queued_events, 1s);
    ASSERT_TRUE(run_until([&] { return end->has_value(); }));
    EXPECT_EQ((*end)->ec, errc::disconnected);

    // Later operations learn why at once.
    auto late = execute("late");
    auto late_listener = qmp->listen();
    auto late_wait = wait_event(late_listener, 1s);
    ASSERT_TRUE(run_until([&] { return late->has_value() && late_wait->has_value(); }));
    EXPECT_EQ((*late)->ec, errc::disconnected);
    EXPECT_EQ((*late_wait)->ec, errc::disconnected);
}

TEST_F(async_client_test, keeps_at_most_eight_commands_in_flight) {
    constexpr int total = 20;
    std::size_t most_unanswered = 0;
    auto script = start([&](fake_qmp_server& s) {
        s.accept_handshake();
        std::vector<json::object> unanswered;
        int received = 0;
        while (received < total || !unanswered.empty()) {
            while (received < total && unanswered.size() < 8) {
                unanswered.push_back(s.expect_command("echo"));
                ++received;
            }
            most_unanswered = std::max(most_unanswered, unanswered.size());
            if (received < total)
                s.expect_silence(30ms); // the client holds the rest back
            // Answer out of order: newest first, every third one oldest first.
            auto pick = received % 3 == 0 ? unanswered.begin() : unanswered.end() - 1;
            s.reply(pick->at("id"), pick->at("arguments"));
            unanswered.erase(pick);
        }
    });
    handshake();
    std::vector<std::shared_ptr<std::optional<outcome>>> results;
    for (int i = 0; i < total; ++i)
        results.push_back(execute("echo", {{"n", i}}));
    ASSERT_TRUE(run_until(
        [&] {
            return std::all_of(results.begin(), results.end(),
                               [](auto& r) { return r->has_value(); });
        },
        10s));
    for (int i = 0; i < total; ++i) {
        EXPECT_FALSE((*results[i])->ec) << i;
        EXPECT_EQ((*results[i])->value, json::parse("{\"n\": " + std::to_string(i) + "}")) << i;
    }
    server.join();
    EXPECT_EQ(most_unanswered, 8u);
}

TEST_F(async_client_test, honours_a_smaller_window) {
    options.max_in_flight = 2;
    auto script = start([](fake_qmp_server& s) {
        s.accept_handshake();
        auto a = s.expect_command("x");
        auto b = s.expect_command("x");
        s.expect_silence(30ms);
        s.reply(a.at("id"), 1);
        auto c = s.expect_command("x");
        s.reply(b.at("id"), 2);
        s.reply(c.at("id"), 3);
    });
    handshake();
    auto a = execute("x");
    auto b = execute("x");
    auto c = execute("x");
    ASSERT_TRUE(run_until([&] { return c->has_value(); }));
    EXPECT_EQ((*a)->value, 1);
    EXPECT_EQ((*b)->value, 2);
    EXPECT_EQ((*c)->value, 3);
}

TEST_F(async_client_test, out_of_band_commands_bypass_the_window) {
    auto script = start([](fake_qmp_server& s) {
        s.accept_handshake({"oob"});
        std::vector<json::object> held;
        for (int i = 0; i < 8; ++i)
            held.push_back(s.expect_command("hold"));
        auto oob = s.expect_command("migrate-pause");
        if (!oob.contains("exec-oob"))
            throw fake_qmp_server::failure("not sent as exec-oob");
        s.reply(oob.at("id"), "paused");
        s.expect_silence(30ms); // the ninth in-band command still waits
        for (auto& h : held)
            s.reply(h.at("id"), "held");
        auto ninth = s.expect_command("hold");
        s.reply(ninth.at("id"), "ninth");
    });
    handshake();
    std::vector<std::shared_ptr<std::optional<outcome>>> held;
    for (int i = 0; i < 9; ++i)
        held.push_back(execute("hold"));
    execute_options oob;
    oob.out_of_band = true;
    auto pause = execute("migrate-pause", {}, oob);
    ASSERT_TRUE(run_until([&] { return pause->has_value(); }));
    EXPECT_EQ((*pause)->value, "paused");
    EXPECT_FALSE(held[0]->has_value());
    ASSERT_TRUE(run_until([&] { return held[8]->has_value(); }));
    EXPECT_EQ((*held[8])->value, "ninth");
}

TEST_F(async_client_test, passes_several_descriptors_with_one_command) {
    const int a = test::make_memfd();
    const int b = test::make_memfd();
    std::vector<int> received;
    auto script = start([&](fake_qmp_server& s) {
        s.accept_handshake();
        auto command = s.expect_command("add-fd");
        received = s.receive_fds();
        s.reply(command.at("id"), {{"fdset-id", 1}, {"fd", 10}});
    });
    handshake();
    execute_options with_fds;
    with_fds.fds = {a, b};
    auto result = execute("add-fd", {{"fdset-id", 1}}, with_fds);
    ASSERT_TRUE(run_until([&] { return result->has_value(); }));
    EXPECT_FALSE((*result)->ec);
    server.join();
    ASSERT_EQ(received.size(), 2u);
    EXPECT_TRUE(test::same_file(received[0], a));
    EXPECT_TRUE(test::same_file(received[1], b));
    EXPECT_FALSE(test::same_file(received[0], b));
    for (int fd : received)
        ::close(fd);
    ::close(a);
    ::close(b);
}

TEST_F(async_client_test, a_bad_descriptor_fails_with_fd_passing_failed) {
    auto script = start([](fake_qmp_server& s) {
        s.accept_handshake();
        s.expect_eof();
    });
    handshake();
    execute_options bad;
    bad.fds = {-1};
    auto result = execute("getfd", {{"fdname", "x"}}, bad);
    ASSERT_TRUE(run_until([&] { return result->has_value(); }));
    EXPECT_EQ((*result)->ec, errc::fd_passing_failed);
}

TEST_F(async_client_test, hmp_and_has_command) {
    auto script = start([](fake_qmp_server& s) {
        s.accept_handshake();
        auto info = s.expect_command("human-monitor-command");
        s.reply(info.at("id"), "VM status: running\r\n");
        auto bad = s.expect_command("human-monitor-command");
        s.reply(bad.at("id"), "Error: unknown thing\r\n");
        auto query = s.expect_command("query-commands");
        s.reply(query.at("id"), json::array{{{"name", "stop"}}});
    });
    handshake();
    run_coroutine([&]() -> asio::awaitable<void> {
        EXPECT_EQ(co_await qmp->async_hmp("info status", asio::use_awaitable),
                  "VM status: running\r\n");
        auto [ec, text] =
            co_await qmp->async_hmp("frobnicate", asio::as_tuple(asio::use_awaitable));
        EXPECT_EQ(ec, errc::hmp_error);
        EXPECT_EQ(text, "Error: unknown thing\r\n");
        EXPECT_TRUE(co_await qmp->async_has_command("stop", asio::use_awaitable));
        EXPECT_FALSE(co_await qmp->async_has_command("cont", asio::use_awaitable));
    });
}

TEST_F(async_client_test, sends_and_receives_messages_larger_than_the_socket_buffers) {
    const std::string big(1024 * 1024, 'x');
    const int file = test::make_memfd();
    std::vector<int> received;
    auto script = start([&](fake_qmp_server& s) {
        s.accept_handshake();
        auto plain = s.expect_command("big");
        auto with_fd = s.expect_command("big-with-fd");
        received = s.receive_fds();
        if (plain.at("arguments").at("data") != big.c_str() ||
            with_fd.at("arguments").at("data") != big.c_str())
            throw fake_qmp_server::failure("the big argument arrived damaged");
        s.reply(plain.at("id"), json::string(big));
        s.reply(with_fd.at("id"), "ok");
    });
    handshake();
    auto plain = execute("big", {{"data", big}});
    execute_options with_fd;
    with_fd.fds = {file};
    auto fd_result = execute("big-with-fd", {{"data", big}}, with_fd);
    ASSERT_TRUE(run_until([&] { return plain->has_value() && fd_result->has_value(); }));
    EXPECT_FALSE((*plain)->ec);
    EXPECT_EQ((*plain)->value, big.c_str());
    EXPECT_FALSE((*fd_result)->ec);
    server.join();
    ASSERT_EQ(received.size(), 1u);
    EXPECT_TRUE(test::same_file(received[0], file));
    ::close(received[0]);
    ::close(file);
}

TEST_F(async_client_test, ignores_a_second_greeting) {
    auto script = start([](fake_qmp_server& s) {
        s.accept_handshake();
        auto command = s.expect_command("query-status");
        s.send_greeting({"oob"});
        s.reply(command.at("id"), "fine");
    });
    handshake();
    auto status = execute("query-status");
    ASSERT_TRUE(run_until([&] { return status->has_value(); }));
    EXPECT_EQ((*status)->value, "fine");
    EXPECT_FALSE(qmp->server_greeting()->offers("oob"));
    EXPECT_THAT(log.text(), HasSubstr("second QMP greeting ignored"));
}

TEST_F(async_client_test, close_during_the_handshake_completes_it_with_closed) {
    auto script = start([](fake_qmp_server& s) { s.expect_eof(); });
    std::optional<error_code> result;
    qmp->async_handshake([&](error_code ec, greeting) { result = ec; });
    io.poll();
    qmp->close();
    ASSERT_TRUE(run_until([&] { return result.has_value(); }));
    EXPECT_EQ(*result, errc::closed);
}

TEST_F(async_client_test, a_destroyed_listener_completes_its_wait_with_closed) {
    auto script = start([](fake_qmp_server& s) {
        s.accept_handshake();
        auto sync = s.expect_command("sync");
        s.event("STOP");
        s.reply(sync.at("id"), json::object{});
    });
    handshake();
    auto listener = std::make_unique<event_listener>(qmp->listen({"STOP"}));
    auto got = wait_event(*listener, 0ms);
    listener.reset();
    ASSERT_TRUE(run_until([&] { return got->has_value(); }));
    EXPECT_EQ((*got)->ec, errc::closed);

    // The event that follows finds no listener and harms nothing.
    auto sync = execute("sync");
    ASSERT_TRUE(run_until([&] { return sync->has_value(); }));
    EXPECT_FALSE((*sync)->ec);
}

TEST_F(async_client_test, times_out_when_no_greeting_comes) {
    options.connect_timeout = 50ms;
    auto script = start([](fake_qmp_server& s) { s.expect_eof(); });
    std::optional<error_code> result;
    qmp->async_handshake([&](error_code ec, greeting) { result = ec; });
    ASSERT_TRUE(run_until([&] { return result.has_value(); }));
    EXPECT_EQ(*result, errc::timeout);
    EXPECT_FALSE(qmp->is_open());
    EXPECT_THAT(log.text(), HasSubstr("never came"));
}

TEST_F(async_client_test, times_out_when_qmp_capabilities_is_not_answered) {
    options.connect_timeout = 50ms;
    auto script = start([](fake_qmp_server& s) {
        s.send_greeting();
        s.expect_command("qmp_capabilities");
        s.expect_eof();
    });
    std::optional<error_code> result;
    qmp->async_handshake([&](error_code ec, greeting) { result = ec; });
    ASSERT_TRUE(run_until([&] { return result.has_value(); }));
    EXPECT_EQ(*result, errc::timeout);
}

TEST_F(async_client_test, a_malformed_line_fails_every_pending_command_with_protocol_error) {
    auto script = start([](fake_qmp_server& s) {
        s.accept_handshake();
        auto a = s.expect_command("a");
        s.expect_command("b");
        s.reply(a.at("id"), "a");
        s.send_raw("[\"not\", \"a\", \"message\"]\r\n");
        s.expect_eof();
    });
    handshake();
    auto events = qmp->listen();
    auto a = execute("a");
    auto b = execute("b");
    ASSERT_TRUE(run_until([&] { return a->has_value() && b->has_value(); }));
    EXPECT_FALSE((*a)->ec);
    EXPECT_EQ((*b)->ec, errc::protocol_error);
    auto end = wait_event(events, 1s);
    ASSERT_TRUE(run_until([&] { return end->has_value(); }));
    EXPECT_EQ((*end)->ec, errc::protocol_error);
    EXPECT_THAT(log.text(), HasSubstr("not a JSON object"));
}

TEST_F(async_client_test, close_fails_pending_operations_with_closed) {
    checkpoint sent;
    auto script = start([&](fake_qmp_server& s) {
        s.accept_handshake();
        s.expect_command("pending");
        sent.reach();
        s.expect_eof();
    });
    handshake();
    auto events = qmp->listen();
    auto waiter = wait_event(events, 0ms);
    auto pending = execute("pending");
    ASSERT_TRUE(run_until([&] { return sent.reached(); }));
    qmp->close();
    EXPECT_FALSE(qmp->is_open());
    ASSERT_TRUE(run_until([&] { return pending->has_value() && waiter->has_value(); }));
    EXPECT_EQ((*pending)->ec, errc::closed);
    EXPECT_EQ((*waiter)->ec, errc::closed);
    qmp->close(); // twice is harmless
}

TEST_F(async_client_test, destroying_the_client_completes_pending_operations) {
    auto script = start([](fake_qmp_server& s) {
        s.accept_handshake();
        s.expect_command("pending");
        s.expect_eof();
    });
    handshake();
    auto pending = execute("pending");
    io.poll();
    qmp.reset();
    ASSERT_TRUE(run_until([&] { return pending->has_value(); }));
    EXPECT_EQ((*pending)->ec, errc::closed);
}

TEST_F(async_client_test, connects_to_a_socket_path) {
    test::unix_listener listener;
    auto script = run_script([&](fake_qmp_server& s) {
        s.accept_from(listener.fd());
        s.accept_handshake();
    });
    qmp = std::make_unique<async_client>(io.get_executor(), options);
    run_coroutine([&]() -> asio::awaitable<void> {
        co_await qmp->async_connect(listener.path(), asio::use_awaitable);
        EXPECT_TRUE(qmp->is_open());
        co_await qmp->async_handshake(asio::use_awaitable);
        EXPECT_TRUE(qmp->is_ready());
        auto [ec] =
            co_await qmp->async_connect(listener.path(), asio::as_tuple(asio::use_awaitable));
        EXPECT_EQ(ec, asio::error::already_connected);
    });
    EXPECT_THROW(qmp->adopt(server.take_client_fd()), error) << "already connected";
}

TEST_F(async_client_test, adopts_a_new_socket_after_close) {
    checkpoint sent;
    auto script = start([&](fake_qmp_server& s) {
        s.accept_handshake();
        s.expect_command("pending");
        sent.reach();
        s.expect_eof();
    });
    handshake();
    auto pending = execute("pending");
    ASSERT_TRUE(run_until([&] { return sent.reached(); }));
    qmp->close();

    // At once, while the first connection's aborted read may still be queued.
    fake_qmp_server second;
    second.run([](fake_qmp_server& s) {
        s.accept_handshake({"oob"});
        auto command = s.expect_command("query-status");
        s.event("RESUME");
        s.reply(command.at("id"), "second");
    });
    qmp->adopt(second.take_client_fd());
    auto events = qmp->listen();
    handshake();
    ASSERT_TRUE(qmp->server_greeting());
    EXPECT_TRUE(qmp->server_greeting()->offers("oob")) << "the new greeting, not the old one";
    auto status = execute("query-status");
    ASSERT_TRUE(run_until([&] { return status->has_value(); }));
    EXPECT_FALSE((*status)->ec);
    EXPECT_EQ((*status)->value, "second");
    EXPECT_EQ(events.queued(), 1u);
    ASSERT_TRUE(pending->has_value());
    EXPECT_EQ((*pending)->ec, errc::closed);
    qmp.reset();
    test::join_script(second);
}

TEST_F(async_client_test, a_failed_connect_leaves_the_client_closed) {
    // No server listens there: the connect fails cleanly.
    qmp = std::make_unique<async_client>(io.get_executor(), options);
    std::optional<error_code> result;
    qmp->async_connect("/nonexistent/qmpkit-test.sock", [&](error_code ec) { result = ec; });
    ASSERT_TRUE(run_until([&] { return result.has_value(); }));
    EXPECT_TRUE(*result);
    EXPECT_FALSE(qmp->is_open());
}

} // namespace
} // namespace qmpkit::qmp
