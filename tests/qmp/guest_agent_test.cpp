// The guest agent client against a scripted fake agent: the fake QMP server, speaking the
// agent's dialect (no greeting, no ids, 0xFF before the answer to guest-sync-delimited).

#include "qmp/fake_qmp_server.hpp"
#include "qmp/test_support.hpp"

#include <qmpkit/qmp/guest_agent.hpp>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <functional>
#include <memory>

namespace qmpkit::qmp {
namespace {

namespace json = boost::json;
using namespace std::chrono_literals;
using test::fake_qmp_server;
using ::testing::HasSubstr;

// Reads the client's 0xFF and guest-sync-delimited; returns its id.
std::int64_t expect_sync(fake_qmp_server& s) {
    s.expect_bytes("\xff");
    auto command = s.expect_command("guest-sync-delimited");
    return command.at("arguments").at("id").as_int64();
}

void answer_sync(fake_qmp_server& s, std::int64_t id) {
    s.send_raw("\xff");
    s.reply(nullptr, id);
}

void sync(fake_qmp_server& s) {
    answer_sync(s, expect_sync(s));
}

class guest_agent_test : public ::testing::Test {
protected:
    test::script_guard start(std::function<void(fake_qmp_server&)> script) {
        server.run(std::move(script));
        agent = std::make_unique<guest_agent>(options);
        agent->adopt(server.take_client_fd());
        return {server, [this] { agent.reset(); }};
    }

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
        agent.reset();
        test::join_script(server);
    }

    test::captured_log log;
    guest_agent_options options = [this] {
        guest_agent_options o;
        o.command_timeout = 5s;
        o.sync_timeout = 5s;
        o.logger = log.logger();
        return o;
    }();
    fake_qmp_server server;
    std::unique_ptr<guest_agent> agent;
};

TEST_F(guest_agent_test, synchronises_before_the_first_command_only) {
    json::object ping;
    auto script = start([&](fake_qmp_server& s) {
        sync(s);
        ping = s.expect_command("guest-ping");
        s.reply(nullptr, json::object{});
        s.expect_command("guest-fsfreeze-status");
        s.reply(nullptr, "thawed");
    });
    agent->ping();
    EXPECT_EQ(agent->fsfreeze_status(), "thawed");
    server.join();
    EXPECT_FALSE(ping.contains("arguments"));
    EXPECT_FALSE(ping.contains("id"));
    EXPECT_THAT(log.text(), HasSubstr("agent -> {\"execute\":\"guest-ping\"}"));
}

TEST_F(guest_agent_test, resync_skips_stale_bytes_and_answers_until_its_own_id) {
    auto script = start([&](fake_qmp_server& s) {
        const auto id = expect_sync(s);
        // What an earlier client left: a reply, a half line, an older sync answer, an error.
        s.send_raw("{\"return\": {\"pid\": 5}}\n{\"return\": {\"ex");
        s.send_raw("\xff{\"return\": 12345}\n");
        s.error(nullptr, "GenericError", "JSON parse error, stray '\xff'");
        answer_sync(s, id);
        s.expect_command("guest-ping");
        s.reply(nullptr, json::object{});
    });
    agent->ping();
    EXPECT_THAT(log.text(), HasSubstr("stale answer dropped"));
}

TEST_F(guest_agent_test, resyncs_when_told_to_after_a_revert) {
    auto script = start([&](fake_qmp_server& s) {
        sync(s);
        s.expect_command("guest-ping");
        s.reply(nullptr, json::object{});
        // A revert brings back an agent that was answering something else.
        s.send_raw("{\"return\": {\"exited\": false}}\n");
        const auto id = expect_sync(s);
        s.send_raw("{\"return\": \"stale\"}\n");
        answer_sync(s, id);
        s.expect_command("guest-fsfreeze-status");
        s.reply(nullptr, "thawed");
    });
    agent->ping();
    agent->resync_needed();
    EXPECT_EQ(agent->fsfreeze_status(), "thawed");
}

TEST_F(guest_agent_test, times_out_cleanly_when_no_agent_answers) {
    options.sync_timeout = 300ms;
    auto done = std::make_shared<test::checkpoint>();
    auto script = start([done](fake_qmp_server& s) {
        // qemu accepts the connection, but nobody in the guest reads or answers.
        expect_sync(s);
        done->wait();
        // Later the agent comes up; the next command resyncs past the first sync's answer.
        const auto second = expect_sync(s);
        s.send_raw("\xff{\"return\": 1}\n");
        answer_sync(s, second);
        s.expect_command("guest-ping");
        s.reply(nullptr, json::object{});
    });
    const auto before = std::chrono::steady_clock::now();
    auto e = expect_error([&] { agent->ping(); });
    const auto took = std::chrono::steady_clock::now() - before;
    EXPECT_EQ(e.code(), errc::timeout);
    EXPECT_EQ(e.diag().command, "guest-sync-delimited");
    EXPECT_THAT(e.what(), HasSubstr("is qemu-ga running in the guest?"));
    EXPECT_GE(took, 300ms);
    EXPECT_LT(took, 3s);
    done->reach();
    agent->ping();
}

TEST_F(guest_agent_test, a_timed_out_command_makes_the_next_one_resync_past_its_late_reply) {
    options.command_timeout = 300ms;
    auto done = std::make_shared<test::checkpoint>();
    auto script = start([done](fake_qmp_server& s) {
        sync(s);
        s.expect_command("guest-info");
        done->wait();
        s.reply(nullptr, json::object{{"version", "late"}}); // the late answer
        const auto id = expect_sync(s);
        answer_sync(s, id);
        s.expect_command("guest-info");
        s.reply(
            nullptr,
            json::object{{"version", "7.2.22"},
                         {"supported_commands",
                          json::array{json::object{{"name", "guest-ping"}, {"enabled", true}},
                                      json::object{{"name", "guest-exec"}, {"enabled", false}}}}});
    });
    auto e = expect_error([&] { agent->info(); });
    EXPECT_EQ(e.code(), errc::timeout);
    EXPECT_EQ(e.diag().command, "guest-info");
    done->reach();
    const auto info = agent->info();
    EXPECT_EQ(info.version, "7.2.22");
    EXPECT_EQ(info.enabled_commands, std::vector<std::string>{"guest-ping"});
}

TEST_F(guest_agent_test, errors_carry_the_agents_class_and_keep_the_stream_in_sync) {
    auto script = start([&](fake_qmp_server& s) {
        sync(s);
        auto open = s.expect_command("guest-file-open");
        EXPECT_EQ(open.at("arguments").at("path"), "/nope/x");
        EXPECT_EQ(open.at("arguments").at("mode"), "r");
        s.error(nullptr, "GenericError", "failed to open file '/nope/x' (mode: 'r')");
        s.expect_command("guest-ping"); // no resync in between
        s.reply(nullptr, json::object{});
    });
    auto e = expect_error([&] { agent->file_open("/nope/x"); });
    EXPECT_EQ(e.code(), errc::command_failed);
    EXPECT_EQ(e.diag().command, "guest-file-open");
    EXPECT_EQ(e.diag().error_class, "GenericError");
    EXPECT_THAT(e.diag().description, HasSubstr("failed to open file"));
    agent->ping();
}

TEST_F(guest_agent_test, exec_polls_until_exited_and_decodes_the_output) {
    json::object exec;
    auto script = start([&](fake_qmp_server& s) {
        sync(s);
        exec = s.expect_command("guest-exec");
        s.reply(nullptr, json::object{{"pid", 42}});
        auto status = s.expect_command("guest-exec-status");
        EXPECT_EQ(status.at("arguments").at("pid"), 42);
        s.reply(nullptr, json::object{{"exited", false}});
        s.expect_command("guest-exec-status");
        s.reply(nullptr, json::object{{"exited", true},
                                      {"exitcode", 3},
                                      {"out-data", "b3V0CmxpbmUy"}, // "out\nline2"
                                      {"err-data", "ZXJyIMO8Cg=="}, // "err ü\n"
                                      {"out-truncated", false}});
    });
    auto r = agent->exec({.path = "/bin/sh", .args = {"-c", "echo out; exit 3"}, .input = "in"});
    server.join();
    EXPECT_TRUE(r.exited);
    EXPECT_EQ(r.exit_code, 3);
    EXPECT_FALSE(r.signal);
    EXPECT_EQ(r.out, "out\nline2");
    EXPECT_EQ(r.err, "err \xc3\xbc\n");
    const auto& args = exec.at("arguments").as_object();
    EXPECT_EQ(args.at("path"), "/bin/sh");
    EXPECT_EQ(args.at("arg"), (json::array{"-c", "echo out; exit 3"}));
    EXPECT_EQ(args.at("capture-output"), true);
    EXPECT_EQ(args.at("input-data"), "aW4=");
    EXPECT_FALSE(args.contains("env"));
}

TEST_F(guest_agent_test, exec_reports_a_signal_and_times_out_on_a_command_that_runs_on) {
    auto script = start([&](fake_qmp_server& s) {
        sync(s);
        s.expect_command("guest-exec");
        s.reply(nullptr, json::object{{"pid", 7}});
        s.expect_command("guest-exec-status");
        s.reply(nullptr, json::object{{"exited", true}, {"signal", 9}});
        s.expect_command("guest-exec");
        s.reply(nullptr, json::object{{"pid", 8}});
        for (;;) {
            try {
                s.expect_command("guest-exec-status");
            } catch (const fake_qmp_server::failure&) {
                return; // the client gave up and closed
            }
            s.reply(nullptr, json::object{{"exited", false}});
        }
    });
    auto killed = agent->exec({.path = "sleep", .args = {"100"}});
    EXPECT_FALSE(killed.exit_code);
    EXPECT_EQ(killed.signal, 9);
    EXPECT_EQ(killed.out, "");

    auto e = expect_error([&] { agent->exec({.path = "sleep", .args = {"100"}}, 300ms); });
    EXPECT_EQ(e.code(), errc::timeout);
    EXPECT_THAT(e.what(), HasSubstr("pid 8"));
}

TEST_F(guest_agent_test, file_calls_encode_and_decode_base64) {
    auto script = start([&](fake_qmp_server& s) {
        sync(s);
        auto open = s.expect_command("guest-file-open");
        EXPECT_EQ(open.at("arguments").at("mode"), "w");
        s.reply(nullptr, 1000);
        auto write = s.expect_command("guest-file-write");
        EXPECT_EQ(write.at("arguments").at("handle"), 1000);
        EXPECT_EQ(write.at("arguments").at("buf-b64"), "aGVsbG8AIQ==");
        s.reply(nullptr, json::object{{"count", 7}, {"eof", false}});
        auto read = s.expect_command("guest-file-read");
        EXPECT_EQ(read.at("arguments").at("count"), 16);
        s.reply(nullptr, json::object{{"count", 2}, {"buf-b64", "aGk="}, {"eof", true}});
        s.expect_command("guest-file-close");
        s.reply(nullptr, json::object{});
    });
    const auto handle = agent->file_open("/mnt/f", "w");
    EXPECT_EQ(handle, 1000);
    EXPECT_EQ(agent->file_write(handle, std::string("hello\0!", 7)), 7u);
    auto chunk = agent->file_read(handle, 16);
    EXPECT_EQ(chunk.data, "hi");
    EXPECT_TRUE(chunk.eof);
    agent->file_close(handle);
}

TEST_F(guest_agent_test, bad_base64_from_the_agent_is_a_protocol_error) {
    auto script = start([&](fake_qmp_server& s) {
        sync(s);
        s.expect_command("guest-file-read");
        s.reply(nullptr, json::object{{"count", 2}, {"buf-b64", "a*k="}, {"eof", true}});
    });
    auto e = expect_error([&] { agent->file_read(1); });
    EXPECT_EQ(e.code(), errc::protocol_error);
    EXPECT_EQ(e.diag().command, "guest-file-read");
}

TEST_F(guest_agent_test, shutdown_succeeds_when_the_agent_goes_away_and_fails_on_an_error) {
    auto script = start([&](fake_qmp_server& s) {
        sync(s);
        auto first = s.expect_command("guest-shutdown");
        EXPECT_EQ(first.at("arguments").at("mode"), "reboot");
        s.error(nullptr, "GenericError", "child process has failed to shutdown");
        sync(s); // the failed shutdown leaves the stream for a resync
        s.expect_command("guest-shutdown");
        s.close(); // qemu quit with the guest
    });
    auto e = expect_error([&] { agent->shutdown("reboot"); });
    EXPECT_EQ(e.code(), errc::command_failed);
    EXPECT_THAT(e.what(), HasSubstr("failed to shutdown"));
    agent->shutdown();
    EXPECT_FALSE(agent->is_connected());
}

TEST_F(guest_agent_test, shutdown_succeeds_on_silence) {
    auto script = start([&](fake_qmp_server& s) {
        sync(s);
        s.expect_command("guest-shutdown");
        s.expect_eof();
    });
    const auto before = std::chrono::steady_clock::now();
    agent->shutdown("powerdown", 200ms);
    EXPECT_LT(std::chrono::steady_clock::now() - before, 2s);
    EXPECT_TRUE(agent->is_connected());
    agent->close();
}

TEST_F(guest_agent_test, a_closed_connection_is_reported_as_disconnected) {
    auto script = start([&](fake_qmp_server& s) {
        sync(s);
        s.expect_command("guest-ping");
        s.close();
    });
    auto e = expect_error([&] { agent->ping(); });
    EXPECT_EQ(e.code(), errc::disconnected);
    EXPECT_FALSE(agent->is_connected());
    auto again = expect_error([&] { agent->ping(); });
    EXPECT_EQ(again.code(), errc::not_connected);
}

TEST_F(guest_agent_test, connects_to_a_socket_path) {
    test::unix_listener listener;
    server.run([&](fake_qmp_server& s) {
        s.accept_from(listener.fd());
        sync(s);
        s.expect_command("guest-ping");
        s.reply(nullptr, json::object{});
    });
    guest_agent a(options);
    a.connect(listener.path());
    EXPECT_TRUE(a.is_connected());
    a.ping();
    a.close();
    test::join_script(server);

    guest_agent nowhere(options);
    auto e = expect_error([&] { nowhere.connect(listener.path().parent_path() / "none.sock"); });
    EXPECT_EQ(e.code(), errc::not_connected);
    EXPECT_THAT(e.what(), HasSubstr("none.sock"));
}

TEST(guest_agent_base64, round_trips_and_refuses_what_is_not_base64) {
    for (std::string bytes : {std::string(), std::string("a"), std::string("ab"),
                              std::string("abc"), std::string("\0\xff\x10 binary", 10)})
        EXPECT_EQ(base64_decode(base64_encode(bytes)), bytes);
    EXPECT_EQ(base64_encode("out\n"), "b3V0Cg==");
    EXPECT_EQ(base64_decode("b3V0Cg=="), "out\n");
    EXPECT_THROW(base64_decode("b3V0Cg="), error);  // length
    EXPECT_THROW(base64_decode("b3V0C*=="), error); // alphabet
    EXPECT_THROW(base64_decode("b3=0Cg=="), error); // padding in the middle
}

} // namespace
} // namespace qmpkit::qmp
