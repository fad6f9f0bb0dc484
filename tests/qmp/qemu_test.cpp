// The QMP client against a real qemu-system-x86_64 (-S, TCG): what the fake server cannot prove.

#include "bare_qemu.hpp"

#include <qmpkit/qmp/async_client.hpp>
#include <qmpkit/qmp/client.hpp>

#include <boost/asio/io_context.hpp>
#include <gtest/gtest.h>

#include <csignal>
#include <fcntl.h>
#include <filesystem>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>

namespace {

using namespace qmpkit;
using namespace std::chrono_literals;
namespace json = boost::json;

class qemu_test : public ::testing::Test {
protected:
    void SetUp() override {
        if (!test::qemu_available())
            GTEST_SKIP() << "qemu-system-x86_64 is not installed (scripts/setup installs it)";
        qemu_ = std::make_unique<test::bare_qemu>();
        client_.adopt(qemu_->take_monitor_fd());
    }

    std::unique_ptr<test::bare_qemu> qemu_;
    qmp::client client_;
};

TEST_F(qemu_test, negotiates_and_reports_version_and_capabilities) {
    const auto& greeting = client_.server_greeting();
    EXPECT_TRUE(greeting.offers("oob"));
    EXPECT_FALSE(greeting.version_string().empty());
    EXPECT_EQ(greeting.version_string().front(), '7') << greeting.version_string();
    EXPECT_TRUE(client_.is_ready());
}

TEST_F(qemu_test, query_status_of_a_machine_started_with_dash_s) {
    auto status = client_.execute("query-status").as_object();
    EXPECT_EQ(status.at("status").as_string(), "prelaunch");
    EXPECT_FALSE(status.at("running").as_bool());
}

TEST_F(qemu_test, stop_and_cont_emit_stop_and_resume_events) {
    auto resumed = client_.listen({"RESUME"});
    client_.execute("cont");
    auto e = client_.wait_event(resumed, 10s);
    ASSERT_TRUE(e);
    EXPECT_EQ(e->name, "RESUME");
    EXPECT_GT(e->seconds, 0);

    auto stopped = client_.listen({"STOP"});
    client_.execute("stop");
    e = client_.wait_event(stopped, 10s);
    ASSERT_TRUE(e);
    EXPECT_EQ(e->name, "STOP");
    EXPECT_EQ(client_.execute("query-status").at("status").as_string(), "paused");
}

TEST_F(qemu_test, errors_carry_class_description_and_command) {
    try {
        client_.execute("no-such-command");
        FAIL() << "expected a QMP error";
    } catch (const qmp::error& e) {
        EXPECT_EQ(e.code(), qmp::errc::command_failed);
        EXPECT_EQ(e.diag().command, "no-such-command");
        EXPECT_EQ(e.diag().error_class, "CommandNotFound");
        EXPECT_NE(e.diag().description.find("no-such-command"), std::string::npos);
    }
    try {
        client_.execute("device_del", {{"id", "nothing-here"}});
        FAIL() << "expected a QMP error";
    } catch (const qmp::error& e) {
        EXPECT_EQ(e.diag().error_class, "DeviceNotFound");
    }
    // The connection survives errors.
    EXPECT_NO_THROW(client_.execute("query-status"));
}

TEST_F(qemu_test, hmp_errors_are_errors) {
    EXPECT_NE(client_.hmp("info status").find("paused"), std::string::npos);
    try {
        client_.hmp("savevm nowhere"); // no disk can hold the VM state
        FAIL() << "expected an HMP error";
    } catch (const qmp::error& e) {
        EXPECT_EQ(e.code(), qmp::errc::hmp_error);
        EXPECT_NE(std::string(e.what()).find("Error:"), std::string::npos) << e.what();
    }
}

TEST_F(qemu_test, getfd_and_add_fd_pass_descriptors) {
    int pipe_fds[2];
    ASSERT_EQ(::pipe2(pipe_fds, O_CLOEXEC), 0);
    client_.send_fd("testfd", pipe_fds[1]);
    // qemu now holds the fd under that name: closing it by name succeeds once, then fails.
    EXPECT_NO_THROW(client_.execute("closefd", {{"fdname", "testfd"}}));
    EXPECT_THROW(client_.execute("closefd", {{"fdname", "testfd"}}), qmp::error);

    auto added = client_.add_fd(pipe_fds[0], std::nullopt, "test pipe");
    ASSERT_TRUE(added.contains("fdset-id"));
    auto fdsets = client_.execute("query-fdsets").as_array();
    ASSERT_FALSE(fdsets.empty());
    EXPECT_EQ(fdsets[0].at("fds").as_array()[0].at("opaque").as_string(), "test pipe");
    ::close(pipe_fds[0]);
    ::close(pipe_fds[1]);
}

TEST_F(qemu_test, introspection_finds_snapshot_commands_and_reads_the_large_schema) {
    EXPECT_TRUE(client_.has_command("snapshot-save"));
    EXPECT_TRUE(client_.has_command("blockdev-snapshot-sync"));
    EXPECT_FALSE(client_.has_command("no-such-command"));
    auto schema = client_.execute("query-qmp-schema").as_array();
    EXPECT_GT(schema.size(), 500u);
}

TEST_F(qemu_test, quit_emits_shutdown_then_the_connection_ends) {
    auto shutdown = client_.listen({"SHUTDOWN"});
    client_.execute("quit");
    auto e = client_.wait_event(shutdown, 10s);
    ASSERT_TRUE(e);
    EXPECT_EQ(e->data.at("reason").as_string(), "host-qmp-quit");
    EXPECT_NE(qemu_->wait_exit(10000), -1);
    try {
        client_.wait_event(shutdown, 10s);
        FAIL() << "expected the connection to be gone";
    } catch (const qmp::error& err) {
        EXPECT_EQ(err.code(), qmp::errc::disconnected);
    }
    EXPECT_THROW(client_.execute("query-status"), qmp::error);
}

TEST_F(qemu_test, killing_qemu_fails_a_pending_command_at_once) {
    // A stopped process reads nothing, so the command stays pending until the kill.
    qemu_->signal(SIGSTOP);
    std::thread killer([&] {
        std::this_thread::sleep_for(300ms);
        qemu_->signal(SIGKILL);
    });
    const auto start = std::chrono::steady_clock::now();
    try {
        qmp::execute_options patient;
        patient.timeout = 60s;
        client_.execute("query-status", {}, patient);
        FAIL() << "expected the command to fail";
    } catch (const qmp::error& e) {
        EXPECT_EQ(e.code(), qmp::errc::disconnected);
        EXPECT_EQ(e.diag().command, "query-status");
    }
    killer.join();
    EXPECT_LT(std::chrono::steady_clock::now() - start, 10s);
}

TEST_F(qemu_test, many_commands_in_flight_all_complete_in_order_of_ids) {
    boost::asio::io_context io;
    qmp::async_client async(io.get_executor());
    auto qemu = test::bare_qemu();
    async.adopt(qemu.take_monitor_fd());
    bool ready = false;
    async.async_handshake([&](boost::system::error_code ec, qmp::greeting) { ready = !ec; });
    io.run_one();
    while (!ready && io.run_one()) {
    }
    ASSERT_TRUE(ready);

    constexpr int count = 50;
    int done = 0;
    for (int i = 0; i < count; ++i) {
        async.async_execute("query-status", {}, [&](boost::system::error_code ec, json::value v) {
            EXPECT_FALSE(ec) << ec.message();
            EXPECT_EQ(v.at("status").as_string(), "prelaunch");
            ++done;
        });
    }
    while (done < count && io.run_one()) {
    }
    EXPECT_EQ(done, count);
}

TEST(qemu_socket_path, connects_by_path) {
    if (!test::qemu_available())
        GTEST_SKIP() << "qemu-system-x86_64 is not installed";
    auto path = std::filesystem::temp_directory_path() /
                ("qmpkit-test-" + std::to_string(::getpid()) + ".sock");
    test::bare_qemu qemu({}, path);
    qmp::client client;
    client.connect(path);
    EXPECT_EQ(client.execute("query-status").at("status").as_string(), "prelaunch");
}

} // namespace
