#pragma once

// Blocking QMP client for simple programs and the CLI. It drives its own io_context on the
// calling thread during each call, so no thread is started and no Asio header is needed here.
// Failures throw qmp::error carrying the command sent and qemu's error class and description.
//
//     qmpkit::qmp::client qmp;
//     qmp.connect("/run/vm/qmp.sock");
//     auto status = qmp.execute("query-status");
//     auto stopped = qmp.listen({"STOP"});
//     qmp.execute("stop");
//     qmp.wait_event(stopped, std::chrono::seconds(5));

#include <qmpkit/qmp/client_options.hpp>
#include <qmpkit/qmp/error.hpp>
#include <qmpkit/qmp/event_listener.hpp>
#include <qmpkit/qmp/message.hpp>

#include <boost/json/object.hpp>
#include <boost/json/value.hpp>

#include <chrono>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace qmpkit::qmp {

class async_client;

class client {
public:
    explicit client(client_options options = {});
    ~client();
    client(client&&) noexcept;
    client& operator=(client&&) noexcept;

    // Connects and negotiates capabilities.
    void connect(const std::filesystem::path& socket_path);
    // Takes ownership of a connected socket (our end of a socketpair given to qemu) and
    // negotiates.
    void adopt(int connected_fd);

    const greeting& server_greeting() const;
    bool is_ready() const;

    boost::json::value execute(std::string_view name, boost::json::object arguments = {},
                               execute_options options = {});
    // human-monitor-command; "Error: ..." answers throw with errc::hmp_error.
    std::string hmp(std::string_view command_line);

    // getfd: qemu keeps the descriptor under `name` (e.g. for migrate "fd:name").
    void send_fd(std::string_view name, int fd);
    // add-fd: returns {fdset-id, fd} as qemu reports them.
    boost::json::object add_fd(int fd, std::optional<std::int64_t> fdset_id = std::nullopt,
                               std::string_view opaque = {});

    bool has_command(std::string_view name);

    event_listener listen(std::vector<std::string> names = {});
    // The next event for the listener; nullopt on timeout (zero: wait forever). Throws when the
    // connection is gone and nothing is queued.
    std::optional<event> wait_event(event_listener& listener, std::chrono::milliseconds timeout);

    void close();

    // The asynchronous client underneath, for code that needs both styles.
    async_client& async();

private:
    struct impl;
    std::unique_ptr<impl> impl_;
};

} // namespace qmpkit::qmp
