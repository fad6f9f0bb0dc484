#include "listener_state.hpp"

#include <qmpkit/qmp/async_client.hpp>
#include <qmpkit/qmp/client.hpp>

#include <boost/asio/io_context.hpp>
#include <boost/json/value_to.hpp>

namespace qmpkit::qmp {

namespace asio = boost::asio;
namespace json = boost::json;
using boost::system::error_code;

struct client::impl {
    explicit impl(client_options options)
        : io(1) // only ever run from the calling thread: lets Asio skip its locking
        , async(io.get_executor(), std::move(options)) {}

    // Runs the io_context until the operation started by `start` completes.
    template <typename Result, typename Start>
    std::pair<error_code, Result> run(Start&& start) {
        std::optional<std::pair<error_code, Result>> outcome;
        io.restart();
        start([&](error_code ec, Result r) { outcome.emplace(ec, std::move(r)); });
        while (!outcome) {
            if (io.run_one() == 0)
                throw error(make_error_code(errc::closed),
                            {"", "", "internal: the client's loop ran dry"});
        }
        return std::move(*outcome);
    }

    void handshake(std::string_view what) {
        auto [ec, g] = run<greeting>([&](auto done) { async.async_handshake(done); });
        if (ec)
            throw error(ec, {"qmp_capabilities", "", std::string(what) + ": " + ec.message()});
    }

    asio::io_context io;
    async_client async;
};

namespace {

[[noreturn]] void throw_command_error(std::string_view name, error_code ec,
                                      const json::value& value) {
    diagnostics diag{std::string(name), "", ""};
    if (ec == errc::command_failed && value.is_object()) {
        const auto& body = value.get_object();
        if (const auto* c = body.if_contains("class"); c && c->is_string())
            diag.error_class = c->get_string();
        if (const auto* d = body.if_contains("desc"); d && d->is_string())
            diag.description = d->get_string();
    }
    throw error(ec, std::move(diag));
}

} // namespace

client::client(client_options options)
    : impl_(std::make_unique<impl>(std::move(options))) {}
client::~client() = default;
client::client(client&&) noexcept = default;
client& client::operator=(client&&) noexcept = default;

void client::connect(const std::filesystem::path& socket_path) {
    auto [ec, unused] = impl_->run<int>([&](auto done) {
        impl_->async.async_connect(socket_path, [done](error_code e) mutable { done(e, 0); });
    });
    if (ec)
        throw error(ec, {"", "", "connecting to " + socket_path.string() + ": " + ec.message()});
    impl_->handshake("negotiating with " + socket_path.string());
}

void client::adopt(int connected_fd) {
    impl_->async.adopt(connected_fd);
    impl_->handshake("negotiating on an inherited socket");
}

const greeting& client::server_greeting() const {
    const auto& g = impl_->async.server_greeting();
    if (!g)
        throw error(make_error_code(errc::not_connected), {});
    return *g;
}

bool client::is_ready() const {
    return impl_->async.is_ready();
}

json::value client::execute(std::string_view name, json::object arguments,
                            execute_options options) {
    auto [ec, value] = impl_->run<json::value>([&](auto done) {
        impl_->async.async_execute(std::string(name), std::move(arguments), std::move(options),
                                   done);
    });
    if (ec)
        throw_command_error(name, ec, value);
    return value;
}

std::string client::hmp(std::string_view command_line) {
    auto [ec, text] = impl_->run<std::string>(
        [&](auto done) { impl_->async.async_hmp(std::string(command_line), done); });
    if (ec)
        throw error(ec, {"human-monitor-command " + std::string(command_line), "",
                         text.empty() ? ec.message() : text});
    return text;
}

void client::send_fd(std::string_view name, int fd) {
    execute_options options;
    options.fds = {fd};
    execute("getfd", {{"fdname", name}}, std::move(options));
}

json::object client::add_fd(int fd, std::optional<std::int64_t> fdset_id, std::string_view opaque) {
    json::object args;
    if (fdset_id)
        args["fdset-id"] = *fdset_id;
    if (!opaque.empty())
        args["opaque"] = opaque;
    execute_options options;
    options.fds = {fd};
    auto value = execute("add-fd", std::move(args), std::move(options));
    return value.is_object() ? value.get_object() : json::object{};
}

bool client::has_command(std::string_view name) {
    auto [ec, found] = impl_->run<bool>(
        [&](auto done) { impl_->async.async_has_command(std::string(name), done); });
    if (ec)
        throw_command_error("query-commands", ec, json::value{});
    return found;
}

event_listener client::listen(std::vector<std::string> names) {
    return impl_->async.listen(std::move(names));
}

std::optional<event> client::wait_event(event_listener& listener,
                                        std::chrono::milliseconds timeout) {
    // Before a connection nothing runs the loop, and the wait would outlive this call.
    if (const auto* state = listener.state();
        state && state->queue.empty() && !state->closed_reason && !impl_->async.is_open())
        throw error(make_error_code(errc::not_connected), {"", "", "waiting for an event"});
    auto [ec, e] = impl_->run<event>(
        [&](auto done) { impl_->async.async_wait_event(listener, timeout, done); });
    if (ec == errc::timeout)
        return std::nullopt;
    if (ec)
        throw error(ec, {"", "", "waiting for an event: " + ec.message()});
    return e;
}

void client::close() {
    impl_->async.close();
    // Let the posted completions of failed operations run so nothing is left queued.
    impl_->io.restart();
    impl_->io.poll();
}

async_client& client::async() {
    return impl_->async;
}

} // namespace qmpkit::qmp
