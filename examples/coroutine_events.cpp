// The asynchronous client with C++20 coroutines: negotiate, register for STOP/RESUME before
// the commands that cause them, run several commands at once, and wait for events with a
// deadline.
//
//   qemu-system-x86_64 -S -display none -qmp unix:/tmp/qmp.sock,server=on,wait=off &
//   ./coroutine_events /tmp/qmp.sock

#include <qmpkit/qmp/async_client.hpp>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/json/serialize.hpp>

#include <iostream>

namespace asio = boost::asio;
using namespace std::chrono_literals;

asio::awaitable<void> session(qmpkit::qmp::async_client& qmp, std::string socket) {
    co_await qmp.async_connect(socket, asio::use_awaitable);
    auto greeting = co_await qmp.async_handshake(asio::use_awaitable);
    std::cout << "connected to qemu " << greeting.version_string() << "\n";

    // Registered before "cont" and "stop", so neither event can be missed.
    auto run_state = qmp.listen({"STOP", "RESUME"});
    co_await qmp.async_execute("cont", {}, asio::use_awaitable);
    co_await qmp.async_execute("stop", {}, asio::use_awaitable);
    for (int i = 0; i < 2; ++i) {
        auto e = co_await qmp.async_wait_event(run_state, 5s, asio::use_awaitable);
        std::cout << "event " << e.name << " at " << e.seconds << "." << e.microseconds << "\n";
    }

    // Errors arrive as error codes when the token asks for them.
    auto [ec, reply] =
        co_await qmp.async_execute("no-such-command", {}, asio::as_tuple(asio::use_awaitable));
    std::cout << "no-such-command: " << ec.message() << " " << boost::json::serialize(reply)
              << "\n";

    auto status = co_await qmp.async_execute("query-status", {}, asio::use_awaitable);
    std::cout << "status: " << boost::json::serialize(status) << "\n";
    qmp.close();
}

int main(int argc, char** argv) {
    if (argc != 2) {
        std::cerr << "usage: coroutine_events QMP-SOCKET\n";
        return 2;
    }
    asio::io_context io;
    qmpkit::qmp::async_client qmp(io.get_executor());
    int status = 0;
    asio::co_spawn(io, session(qmp, argv[1]), [&](std::exception_ptr e) {
        if (!e)
            return;
        try {
            std::rethrow_exception(e);
        } catch (const std::exception& ex) {
            std::cerr << "error: " << ex.what() << "\n";
            status = 1;
        }
    });
    io.run();
    return status;
}
