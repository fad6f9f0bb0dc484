// The blocking client against the scripted fake server.

#include "qmp/fake_qmp_server.hpp"
#include "qmp/test_support.hpp"

#include <qmpkit/qmp/client.hpp>

#include <boost/json/parse.hpp>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <fcntl.h>
#include <functional>
#include <memory>
#include <unistd.h>

namespace qmpkit::qmp {
namespace {

namespace json = boost::json;
using namespace std::chrono_literals;
using test::fake_qmp_server;
using ::testing::HasSubstr;

class client_test : public ::testing::Test {
protected:
    // Starts the script; the guard ends the conversation when the test body leaves.
    test::script_guard run_script(std::function<void(fake_qmp_server&)> script) {
        server.run(std::move(script));
        return {server, [this] { qmp.reset(); }};
    }

    // Starts the script, then hands the client its end of the socketpair (which negotiates).
    test::script_guard start(std::function<void(fake_qmp_server&)> script) {
        auto guard = run_script(std::move(script));
        qmp = std::make_unique<client>(options);
        qmp->adopt(server.take_client_fd());
        return guard;
    }

    // Runs `call`, which must throw qmp::error, and returns it.
    template <typename Call>
    error expect_error(Call&& call) {
        try {
            call();
        } catch (const error& e) {
            return e;
        }
        ADD_FAILURE() << "no qmp::error thrown";
        return error({}, {});
    }

    void TearDown() override {
        qmp.reset(); // closes our end, so a script waiting for EOF ends
        test::join_script(server);
    }

    test::captured_log log;
    client_options options = test::quick_options(log);
    fake_qmp_server server;
    std::unique_ptr<client> qmp;
};

TEST_F(client_test, negotiates_without_oob_when_not_offered) {
    json::object capabilities;
    auto script = start([&](fake_qmp_server& s) { capabilities = s.accept_handshake(); });
    server.join();
    EXPECT_TRUE(qmp->is_ready());
    EXPECT_EQ(capabilities.at("execute"), "qmp_capabilities");
    EXPECT_FALSE(capabilities.contains("arguments"));
    EXPECT_TRUE(capabilities.at("id").is_number());
    EXPECT_EQ(qmp->server_greeting().version_string(), "7.2.0");
    EXPECT_FALSE(qmp->server_greeting().offers("oob"));
}

TEST_F(client_test, negotiates_oob_when_offered) {
    json::object capabilities;
    auto script = start([&](fake_qmp_server& s) { capabilities = s.accept_handshake({"oob"}); });
    server.join();
    EXPECT_TRUE(qmp->is_ready());
    EXPECT_EQ(capabilities.at("arguments"), json::parse(R"({"enable": ["oob"]})"));
    EXPECT_TRUE(qmp->server_greeting().offers("oob"));
}

TEST_F(client_test, executes_with_arguments_and_returns_the_reply_value) {
    json::object command;
    auto script = start([&](fake_qmp_server& s) {
        s.accept_handshake();
        command = s.expect_command("query-block");
        s.reply(command.at("id"), json::array{{{"device", "drive0"}}});
    });
    const auto value = qmp->execute("query-block", {{"flat", true}});
    EXPECT_EQ(value, json::parse(R"([{"device": "drive0"}])"));
    server.join();
    EXPECT_EQ(command.at("arguments"), json::parse(R"({"flat": true})"));
    EXPECT_THAT(log.text(), HasSubstr("query-block")) << "commands are logged at trace level";
}

TEST_F(client_test, delivers_events_around_the_handshake_and_replies_to_earlier_listeners) {
    auto all = std::make_unique<event_listener>();
    auto only_b = std::make_unique<event_listener>();
    auto script = run_script([](fake_qmp_server& s) {
        s.send_greeting();
        s.event("A", {{"n", 1}}); // before the greeting is answered
        auto caps = s.expect_command("qmp_capabilities");
        s.event("B", {{"n", 2}}); // between qmp_capabilities and its reply
        s.reply(caps.at("id"), json::object{});
        auto first = s.expect_command("first");
        s.event("A", {{"n", 3}}); // before a reply
        s.reply(first.at("id"), "one");
        s.event("B", {{"n", 4}}); // between replies
        auto second = s.expect_command("second");
        s.reply(second.at("id"), "two");
    });
    qmp = std::make_unique<client>(options);
    *all = qmp->listen();
    *only_b = qmp->listen({"B"});
    qmp->adopt(server.take_client_fd());

    EXPECT_EQ(qmp->execute("first"), "one");
    EXPECT_EQ(qmp->execute("second"), "two");

    std::vector<std::pair<std::string, std::int64_t>> seen;
    while (auto e = all->try_pop())
        seen.emplace_back(e->name, e->data.at("n").as_int64());
    EXPECT_EQ(seen, (std::vector<std::pair<std::string, std::int64_t>>{
                        {"A", 1}, {"B", 2}, {"A", 3}, {"B", 4}}));

    auto b = qmp->wait_event(*only_b, 1s);
    ASSERT_TRUE(b);
    EXPECT_EQ(b->data.at("n"), 2);
    EXPECT_GT(b->seconds, 0);
    b = qmp->wait_event(*only_b, 1s);
    ASSERT_TRUE(b);
    EXPECT_EQ(b->data.at("n"), 4);
    EXPECT_EQ(only_b->queued(), 0u);
}

TEST_F(client_test, drops_a_reply_with_an_unknown_id_and_completes_the_real_one) {
    auto script = start([](fake_qmp_server& s) {
        s.accept_handshake();
        auto command = s.expect_command("query-status");
        s.reply(command.at("id").as_int64() + 1000, "stray");
        s.reply("foreign-id", "stray too");
        s.reply(command.at("id"), "mine");
    });
    EXPECT_EQ(qmp->execute("query-status"), "mine");
    EXPECT_THAT(log.text(), HasSubstr("unknown id"));
    EXPECT_THAT(log.text(), HasSubstr("foreign id"));
}

TEST_F(client_test, throws_command_failed_with_class_and_description) {
    auto script = start([](fake_qmp_server& s) {
        s.accept_handshake();
        auto command = s.expect_command("blockdev-del");
        s.error(command.at("id"), "GenericError", "Failed to find node with node-name='x'");
    });
    const auto e = expect_error([&] { qmp->execute("blockdev-del", {{"node-name", "x"}}); });
    EXPECT_EQ(e.code(), errc::command_failed);
    EXPECT_EQ(e.diag().command, "blockdev-del");
    EXPECT_EQ(e.diag().error_class, "GenericError");
    EXPECT_EQ(e.diag().description, "Failed to find node with node-name='x'");
    EXPECT_THAT(e.what(), HasSubstr("Failed to find node"));
    EXPECT_TRUE(qmp->is_ready()) << "a refused command leaves the connection usable";
}

TEST_F(client_test, an_error_without_id_fails_the_pending_command) {
    auto script = start([](fake_qmp_server& s) {
        s.accept_handshake();
        s.expect_command("garbled");
        s.error(nullptr, "GenericError", "JSON parse error, invalid keyword");
        auto next = s.expect_command("next");
        s.reply(next.at("id"), "fine");
    });
    const auto e = expect_error([&] { qmp->execute("garbled"); });
    EXPECT_EQ(e.code(), errc::command_failed);
    EXPECT_EQ(e.diag().description, "JSON parse error, invalid keyword");
    EXPECT_EQ(qmp->execute("next"), "fine");
}

TEST_F(client_test, times_out_then_drops_the_late_reply_and_keeps_working) {
    auto script = start([](fake_qmp_server& s) {
        s.accept_handshake();
        auto slow = s.expect_command("slow");
        auto next = s.expect_command("next"); // sent once "slow" timed out
        s.reply(slow.at("id"), "too late");
        s.reply(next.at("id"), "next");
    });
    execute_options quick;
    quick.timeout = 100ms;
    const auto e = expect_error([&] { qmp->execute("slow", {}, quick); });
    EXPECT_EQ(e.code(), errc::timeout);
    EXPECT_EQ(e.diag().command, "slow");
    EXPECT_EQ(qmp->execute("next"), "next");
    EXPECT_TRUE(qmp->is_ready());
}

TEST_F(client_test, fails_with_disconnected_when_the_server_goes_away) {
    auto script = start([](fake_qmp_server& s) {
        s.accept_handshake();
        s.expect_command("quit");
        s.event("SHUTDOWN", {{"guest", false}});
        s.close();
    });
    auto shutdown = qmp->listen({"SHUTDOWN"});
    const auto e = expect_error([&] { qmp->execute("quit"); });
    EXPECT_EQ(e.code(), errc::disconnected);
    EXPECT_FALSE(qmp->is_ready());

    // The event that came before the end is still there, then the end is reported.
    auto event = qmp->wait_event(shutdown, 1s);
    ASSERT_TRUE(event);
    EXPECT_EQ(event->name, "SHUTDOWN");
    EXPECT_EQ(expect_error([&] { qmp->wait_event(shutdown, 1s); }).code(), errc::disconnected);
    EXPECT_EQ(expect_error([&] { qmp->execute("query-status"); }).code(), errc::disconnected);
    EXPECT_EQ(qmp->listen().try_pop(), std::nullopt);
}

TEST_F(client_test, passes_a_descriptor_with_getfd) {
    const int file = test::make_memfd();
    std::vector<int> received;
    json::object command;
    auto script = start([&](fake_qmp_server& s) {
        s.accept_handshake();
        command = s.expect_command("getfd");
        received = s.receive_fds();
        s.reply(command.at("id"), json::object{});
    });
    qmp->send_fd("migration", file);
    server.join();
    EXPECT_EQ(command.at("arguments"), json::parse(R"({"fdname": "migration"})"));
    ASSERT_EQ(received.size(), 1u);
    EXPECT_TRUE(test::same_file(received[0], file));
    EXPECT_NE(::fcntl(file, F_GETFD), -1) << "the caller keeps its descriptor";
    for (int fd : received)
        ::close(fd);
    ::close(file);
}

TEST_F(client_test, passes_a_descriptor_with_add_fd) {
    const int file = test::make_memfd();
    std::vector<int> received;
    json::object command;
    auto script = start([&](fake_qmp_server& s) {
        s.accept_handshake();
        command = s.expect_command("add-fd");
        received = s.receive_fds();
        s.reply(command.at("id"), {{"fdset-id", 3}, {"fd", 42}});
    });
    const auto result = qmp->add_fd(file, 3, "disk image");
    server.join();
    EXPECT_EQ(result, json::parse(R"({"fdset-id": 3, "fd": 42})"));
    EXPECT_EQ(command.at("arguments"), json::parse(R"({"fdset-id": 3, "opaque": "disk image"})"));
    ASSERT_EQ(received.size(), 1u);
    EXPECT_TRUE(test::same_file(received[0], file));
    for (int fd : received)
        ::close(fd);
    ::close(file);
}

TEST_F(client_test, add_fd_without_fdset_or_opaque_sends_no_arguments) {
    const int file = test::make_memfd();
    json::object command;
    auto script = start([&](fake_qmp_server& s) {
        s.accept_handshake();
        command = s.expect_command("add-fd");
        for (int fd : s.receive_fds())
            ::close(fd);
        s.reply(command.at("id"), {{"fdset-id", 0}, {"fd", 40}});
    });
    EXPECT_EQ(qmp->add_fd(file).at("fdset-id"), 0);
    server.join();
    EXPECT_FALSE(command.contains("arguments"));
    ::close(file);
}

TEST_F(client_test, hmp_returns_text_and_throws_on_error_text) {
    std::vector<json::object> commands;
    auto script = start([&](fake_qmp_server& s) {
        s.accept_handshake();
        commands.push_back(s.expect_command("human-monitor-command"));
        s.reply(commands.back().at("id"), "VM status: running\r\n");
        commands.push_back(s.expect_command("human-monitor-command"));
        s.reply(commands.back().at("id"), "Error: Device 'nope' not found\r\n");
    });
    EXPECT_EQ(qmp->hmp("info status"), "VM status: running\r\n");
    const auto e = expect_error([&] { qmp->hmp("device_del nope"); });
    EXPECT_EQ(e.code(), errc::hmp_error);
    EXPECT_THAT(e.diag().command, HasSubstr("device_del nope"));
    EXPECT_THAT(e.diag().description, HasSubstr("Device 'nope' not found"));
    server.join();
    ASSERT_EQ(commands.size(), 2u);
    EXPECT_EQ(commands[0].at("arguments"), json::parse(R"({"command-line": "info status"})"));
    EXPECT_EQ(commands[1].at("arguments").at("command-line"), "device_del nope");
}

TEST_F(client_test, has_command_asks_query_commands_once_and_caches) {
    auto script = start([](fake_qmp_server& s) {
        s.accept_handshake();
        auto query = s.expect_command("query-commands");
        s.reply(query.at("id"), json::array{{{"name", "query-status"}}, {{"name", "stop"}}});
        // Any second query-commands fails this expectation.
        auto next = s.expect_command("stop");
        s.reply(next.at("id"), json::object{});
    });
    EXPECT_TRUE(qmp->has_command("stop"));
    EXPECT_FALSE(qmp->has_command("migrate-pause"));
    EXPECT_TRUE(qmp->has_command("query-status"));
    qmp->execute("stop");
}

TEST_F(client_test, a_full_listener_drops_the_oldest_events) {
    options.listener_queue_limit = 3;
    auto script = start([](fake_qmp_server& s) {
        s.accept_handshake();
        auto sync = s.expect_command("sync");
        for (int n = 1; n <= 5; ++n)
            s.event("TICK", {{"n", n}});
        s.reply(sync.at("id"), json::object{});
    });
    auto ticks = qmp->listen({"TICK"});
    qmp->execute("sync");
    ASSERT_EQ(ticks.queued(), 3u);
    for (int n = 3; n <= 5; ++n)
        EXPECT_EQ(qmp->wait_event(ticks, 1s)->data.at("n"), n);
    EXPECT_THAT(log.text(), HasSubstr("dropped TICK event"));
}

TEST_F(client_test, wait_event_returns_nullopt_on_timeout) {
    auto script = start([](fake_qmp_server& s) { s.accept_handshake(); });
    auto stop = qmp->listen({"STOP"});
    const auto before = std::chrono::steady_clock::now();
    EXPECT_EQ(qmp->wait_event(stop, 50ms), std::nullopt);
    EXPECT_GE(std::chrono::steady_clock::now() - before, 50ms);
    EXPECT_TRUE(qmp->is_ready());
}

TEST_F(client_test, wait_event_before_connecting_throws_and_leaves_the_listener_usable) {
    qmp = std::make_unique<client>(options);
    auto stop = qmp->listen({"STOP"});
    EXPECT_EQ(expect_error([&] { qmp->wait_event(stop, 0ms); }).code(), errc::not_connected);

    auto script = run_script([](fake_qmp_server& s) {
        s.accept_handshake();
        auto sync = s.expect_command("sync");
        s.event("STOP");
        s.reply(sync.at("id"), json::object{});
    });
    qmp->adopt(server.take_client_fd());
    qmp->execute("sync");
    auto event = qmp->wait_event(stop, 1s);
    ASSERT_TRUE(event) << "the event went to the abandoned wait";
    EXPECT_EQ(event->name, "STOP");
}

TEST_F(client_test, a_destroyed_listener_is_unregistered) {
    auto script = start([](fake_qmp_server& s) {
        s.accept_handshake();
        auto sync = s.expect_command("sync");
        s.event("STOP");
        s.reply(sync.at("id"), json::object{});
    });
    auto kept = qmp->listen({"STOP"});
    {
        auto dropped = qmp->listen({"STOP"});
        EXPECT_TRUE(dropped.is_registered());
    }
    auto replaced = qmp->listen({"STOP"});
    replaced = qmp->listen({"RESUME"}); // move assignment unregisters the first one
    qmp->execute("sync");
    EXPECT_EQ(kept.queued(), 1u);
    EXPECT_EQ(replaced.queued(), 0u);
    EXPECT_EQ(replaced.names(), std::vector<std::string>{"RESUME"});

    kept.unregister();
    EXPECT_FALSE(kept.is_registered());
    EXPECT_EQ(kept.queued(), 0u);
    EXPECT_EQ(expect_error([&] { qmp->wait_event(kept, 1s); }).code(), errc::closed);
}

TEST_F(client_test, times_out_when_no_greeting_comes) {
    options.connect_timeout = 100ms;
    auto script = run_script([](fake_qmp_server& s) { s.expect_eof(); });
    qmp = std::make_unique<client>(options);
    const auto e = expect_error([&] { qmp->adopt(server.take_client_fd()); });
    EXPECT_EQ(e.code(), errc::timeout);
    EXPECT_EQ(e.diag().command, "qmp_capabilities");
    EXPECT_FALSE(qmp->is_ready());
    server.join(); // the client closed the connection
}

TEST_F(client_test, fails_negotiation_when_qmp_capabilities_is_refused) {
    auto script = run_script([](fake_qmp_server& s) {
        s.send_greeting();
        auto caps = s.expect_command("qmp_capabilities");
        s.error(caps.at("id"), "GenericError", "Capabilities negotiation is already complete");
        s.expect_eof();
    });
    qmp = std::make_unique<client>(options);
    const auto e = expect_error([&] { qmp->adopt(server.take_client_fd()); });
    EXPECT_EQ(e.code(), errc::negotiation_failed);
    server.join();
}

TEST_F(client_test, a_malformed_line_ends_the_connection_with_protocol_error) {
    auto script = start([](fake_qmp_server& s) {
        s.accept_handshake();
        s.expect_command("query-status");
        s.send_raw("{\"return\": {\"status\": \"running\"\r\n");
        s.expect_eof();
    });
    EXPECT_EQ(expect_error([&] { qmp->execute("query-status"); }).code(), errc::protocol_error);
    EXPECT_FALSE(qmp->is_ready());
    server.join();
    EXPECT_EQ(expect_error([&] { qmp->execute("query-status"); }).code(), errc::protocol_error);
}

TEST_F(client_test, an_oversized_message_ends_the_connection_with_message_too_large) {
    options.max_message_size = 1024;
    auto script = start([](fake_qmp_server& s) {
        s.accept_handshake();
        auto command = s.expect_command("query-qmp-schema");
        s.reply(command.at("id"), json::string(4096, 's'));
        s.expect_eof();
    });
    EXPECT_EQ(expect_error([&] { qmp->execute("query-qmp-schema"); }).code(),
              errc::message_too_large);
}

TEST_F(client_test, close_ends_the_connection) {
    auto script = start([](fake_qmp_server& s) {
        s.accept_handshake();
        s.expect_eof();
    });
    auto events = qmp->listen();
    qmp->close();
    EXPECT_FALSE(qmp->is_ready());
    server.join();
    EXPECT_EQ(expect_error([&] { qmp->execute("query-status"); }).code(), errc::closed);
    EXPECT_EQ(expect_error([&] { qmp->wait_event(events, 1s); }).code(), errc::closed);
}

TEST_F(client_test, connects_to_a_socket_path_and_negotiates) {
    test::unix_listener listener;
    auto script = run_script([&](fake_qmp_server& s) {
        s.accept_from(listener.fd());
        s.accept_handshake();
        auto command = s.expect_command("query-status");
        s.reply(command.at("id"), {{"status", "running"}});
    });
    qmp = std::make_unique<client>(options);
    qmp->connect(listener.path());
    EXPECT_TRUE(qmp->is_ready());
    EXPECT_EQ(qmp->execute("query-status").at("status"), "running");
}

TEST_F(client_test, connecting_to_a_missing_socket_throws_with_the_path) {
    qmp = std::make_unique<client>(options);
    const auto e = expect_error([&] { qmp->connect("/nonexistent/qmpkit/qmp.sock"); });
    EXPECT_TRUE(e.code());
    EXPECT_THAT(e.diag().description, HasSubstr("/nonexistent/qmpkit/qmp.sock"));
    EXPECT_FALSE(qmp->is_ready());
    EXPECT_EQ(expect_error([&] { qmp->server_greeting(); }).code(), errc::not_connected);
}

TEST_F(client_test, adopts_a_new_socket_after_a_failed_handshake) {
    options.connect_timeout = 300ms; // the second handshake must fit in it too
    auto script = run_script([](fake_qmp_server& s) { s.expect_eof(); });
    qmp = std::make_unique<client>(options);
    EXPECT_EQ(expect_error([&] { qmp->adopt(server.take_client_fd()); }).code(), errc::timeout);
    test::join_script(server);

    // The same client, a new connection (a retry): the stale read of the first one must not
    // end the second.
    fake_qmp_server second;
    second.run([](fake_qmp_server& s) {
        s.accept_handshake({"oob"});
        auto command = s.expect_command("query-status");
        s.reply(command.at("id"), "second");
    });
    qmp->adopt(second.take_client_fd());
    EXPECT_TRUE(qmp->server_greeting().offers("oob"));
    EXPECT_EQ(qmp->execute("query-status"), "second");
    qmp.reset();
    test::join_script(second);
}

TEST_F(client_test, moves) {
    auto script = start([](fake_qmp_server& s) {
        s.accept_handshake();
        auto command = s.expect_command("query-status");
        s.reply(command.at("id"), "moved");
    });
    client other(std::move(*qmp));
    EXPECT_TRUE(other.is_ready());
    EXPECT_EQ(other.execute("query-status"), "moved");
    *qmp = std::move(other);
    EXPECT_TRUE(qmp->is_ready());
}

} // namespace
} // namespace qmpkit::qmp
