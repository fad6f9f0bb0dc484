#pragma once

// A scripted fake QMP server for unit tests: it owns one end of a socketpair(AF_UNIX,
// SOCK_STREAM), the client adopts the other, and a script runs on the server's own thread with
// blocking I/O. Every read and write has a deadline, so a client that misbehaves fails the
// script instead of hanging the test. A failing script closes its end (the client then sees a
// disconnect) and join() rethrows the failure.
//
//     fake_qmp_server server;
//     server.run([](fake_qmp_server& s) {
//         s.accept_handshake();
//         auto command = s.expect_command("query-status");
//         s.reply(command.at("id"), {{"status", "running"}, {"running", true}});
//     });
//     qmpkit::qmp::client qmp;
//     qmp.adopt(server.take_client_fd());
//     server.join();

#include <boost/json/object.hpp>
#include <boost/json/value.hpp>

#include <chrono>
#include <exception>
#include <functional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace qmpkit::qmp::test {

class fake_qmp_server {
public:
    // A script step that did not go as expected (wrong command, deadline passed, ...).
    struct failure : std::runtime_error {
        using std::runtime_error::runtime_error;
    };

    explicit fake_qmp_server(std::chrono::milliseconds deadline = std::chrono::seconds(5));
    ~fake_qmp_server();
    fake_qmp_server(const fake_qmp_server&) = delete;
    fake_qmp_server& operator=(const fake_qmp_server&) = delete;

    // The client's end of the socketpair; ownership passes to the caller (once).
    int take_client_fd();

    // Starts the script on the server thread.
    void run(std::function<void(fake_qmp_server&)> script);
    // Waits for the script to end and rethrows its failure, if any.
    void join();

    // --- script steps (server thread) ----------------------------------------------------------

    // Accepts one connection on a listening UNIX socket and serves it instead of the
    // socketpair (for clients that connect to a path).
    void accept_from(int listening_fd);
    void send_raw(std::string_view bytes);
    // {"QMP": {"version": qemu 7.2.0, "capabilities": caps}}
    void send_greeting(std::vector<std::string> capabilities = {});
    // Greeting, then the client's qmp_capabilities and an empty reply. Returns that command.
    boost::json::object accept_handshake(std::vector<std::string> capabilities = {});
    // Reads the next command line and checks that it executes `name` ("execute" or
    // "exec-oob"). Returns the whole command so the script can take its id and arguments.
    boost::json::object expect_command(std::string_view name);
    // Reads exactly these bytes next (e.g. the 0xFF a guest agent client sends before
    // guest-sync-delimited).
    void expect_bytes(std::string_view bytes);
    // Fails if any byte arrives within `quiet` (e.g. a command the client should hold back).
    void expect_silence(std::chrono::milliseconds quiet);
    // Waits for the client to close its end.
    void expect_eof();
    // {"return": value, "id": id}; a null id is left out.
    void reply(const boost::json::value& id, boost::json::value value);
    // {"error": {"class": error_class, "desc": description}, "id": id}; a null id is left out.
    void error(const boost::json::value& id, std::string_view error_class,
               std::string_view description);
    // {"event": name, "data": data, "timestamp": {...}}
    void event(std::string_view name, boost::json::object data = {});
    // Descriptors received (SCM_RIGHTS) with the commands read so far and not yet taken; the
    // caller owns them.
    std::vector<int> receive_fds();
    // Closes the server's end: the client sees the connection end.
    void close();

private:
    void write_all(std::string_view bytes);
    // Reads whatever arrives next into buffer_ (taking any descriptors); false on EOF.
    bool read_some(std::chrono::milliseconds timeout);
    std::string read_line();

    std::chrono::milliseconds deadline_;
    int server_fd_ = -1;
    int client_fd_ = -1;
    std::string buffer_;
    std::vector<int> fds_;
    std::thread thread_;
    std::exception_ptr failure_;
    bool failure_seen_ = false;
};

} // namespace qmpkit::qmp::test
