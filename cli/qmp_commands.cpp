// qmpkit qmp SOCKET COMMAND [ARGS]   — one QMP command, the reply as JSON
// qmpkit events SOCKET [NAME...]    — events as they arrive, one JSON object per line

#include "command_arguments.hpp"
#include "context.hpp"
#include "exit_codes.hpp"
#include "json_output.hpp"
#include "vm_lookup.hpp"

#include <qmpkit/launcher/vm_connection.hpp>
#include <qmpkit/qmp/client.hpp>

#include <boost/json/serialize.hpp>
#include <spdlog/logger.h>

#include <iostream>
#include <optional>

namespace qmpkit::cli {
namespace {

namespace json = boost::json;

struct qmp_options {
    std::string socket;
    std::string command;
    std::vector<std::string> arguments;
    double timeout = 30;
    bool compact = false;
};

struct events_options {
    std::string socket;
    std::vector<std::string> names;
    int count = 0;
    double timeout = 0;
};

// A socket path names a QMP socket; anything else is a VM's name.
bool is_socket_path(const std::string& target) {
    return target.find('/') != std::string::npos;
}

qmp::client connect(const context& ctx, const std::string& socket, double timeout_seconds) {
    qmp::client_options options;
    options.logger = ctx.logger;
    if (timeout_seconds > 0)
        options.command_timeout = milliseconds_of(timeout_seconds);
    qmp::client client(options);
    client.connect(socket);
    return client;
}

int run_qmp(const context& ctx, const qmp_options& o) {
    const auto arguments = parse_command_arguments(o.arguments);
    std::optional<launcher::vm_connection> vm;
    std::optional<qmp::client> socket_client;
    qmp::client* client = nullptr;
    if (is_socket_path(o.socket)) {
        socket_client.emplace(connect(ctx, o.socket, o.timeout));
        client = &*socket_client;
    } else {
        auto options = connect_options_for(ctx);
        if (o.timeout > 0)
            options.qmp_timeout = milliseconds_of(o.timeout);
        vm.emplace(
            launcher::vm_connection::open(find_vm(ctx, o.socket), "qmp " + o.command, options));
        client = &vm->qmp();
    }
    auto reply = client->execute(o.command, arguments);
    std::cout << format_json(reply, o.compact || ctx.json) << "\n";
    return exit_code::ok;
}

json::object event_to_json(const qmp::event& e) {
    return {{"event", e.name},
            {"data", e.data},
            {"timestamp", {{"seconds", e.seconds}, {"microseconds", e.microseconds}}}};
}

int run_events(const context& ctx, const events_options& o) {
    // A VM has a monitor of its own for event streams, so they never block its commands.
    const auto socket = is_socket_path(o.socket)
                            ? o.socket
                            : find_running_vm(ctx, o.socket).events_socket().string();
    auto client = connect(ctx, socket, 0);
    auto listener = client.listen(o.names);
    const auto wait = milliseconds_of(o.timeout);
    bool saw_shutdown = false;
    for (int seen = 0; o.count == 0 || seen < o.count; ++seen) {
        std::optional<qmp::event> e;
        try {
            e = client.wait_event(listener, wait);
        } catch (const qmp::error& err) {
            if (err.code() != qmp::errc::disconnected)
                throw;
            if (saw_shutdown) {
                std::cerr << "qmpkit: qemu shut down and closed the connection\n";
                return exit_code::ok;
            }
            throw;
        }
        if (!e) {
            std::cerr << "qmpkit: no event within " << o.timeout << " s\n";
            return exit_code::timeout;
        }
        saw_shutdown = saw_shutdown || e->name == "SHUTDOWN";
        std::cout << json::serialize(event_to_json(*e)) << std::endl;
    }
    return exit_code::ok;
}

} // namespace

void register_qmp_commands(CLI::App& app, context& ctx) {
    auto q = std::make_shared<qmp_options>();
    auto* qmp = app.add_subcommand("qmp", "Send one QMP command and print the reply as JSON");
    qmp->add_option("target", q->socket, "a VM's name, or a QMP socket path (containing '/')")
        ->required();
    qmp->add_option("command", q->command, "QMP command, e.g. query-status")->required();
    qmp->add_option(
        "arguments", q->arguments,
        "arguments: one JSON object, or key=value words (values parsed as JSON when they are)");
    qmp->add_option("--timeout", q->timeout, "seconds to wait for the reply (0: no limit)")
        ->capture_default_str()
        ->check(non_negative_number());
    qmp->add_flag("--compact", q->compact, "print the reply on one line");
    qmp->callback([&ctx, q] { ctx.action = [&ctx, q] { return run_qmp(ctx, *q); }; });

    auto e = std::make_shared<events_options>();
    auto* events =
        app.add_subcommand("events", "Print QMP events as they arrive, one JSON object per line");
    events->add_option("target", e->socket, "a VM's name, or a QMP socket path (containing '/')")
        ->required();
    events->add_option("names", e->names, "only these events (default: all)");
    events->add_option("--count", e->count, "stop after this many events (0: no limit)")
        ->check(non_negative_number());
    events
        ->add_option("--timeout", e->timeout,
                     "give up when no event comes for this many seconds (0: never)")
        ->check(non_negative_number());
    events->callback([&ctx, e] { ctx.action = [&ctx, e] { return run_events(ctx, *e); }; });
}

} // namespace qmpkit::cli
