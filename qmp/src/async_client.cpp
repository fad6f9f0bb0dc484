#include "completion.hpp"
#include "listener_state.hpp"

#include <qmpkit/qmp/async_client.hpp>
#include <qmpkit/qmp/command_router.hpp>
#include <qmpkit/qmp/decoder.hpp>
#include <qmpkit/qmp/encoder.hpp>

#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>
#include <boost/json/serialize.hpp>
#include <spdlog/logger.h>

#include <array>
#include <cstring>
#include <deque>
#include <set>
#include <sys/socket.h>
#include <unordered_map>
#include <unordered_set>

namespace qmpkit::qmp {

namespace asio = boost::asio;
namespace json = boost::json;
using boost::system::error_code;
using stream_protocol = asio::local::stream_protocol;

struct async_client::impl : std::enable_shared_from_this<impl> {
    using clock = asio::steady_timer::clock_type;

    struct pending_command {
        std::string name;
        asio::any_completion_handler<execute_signature> handler;
        std::optional<clock::time_point> deadline;
        std::string wire; // the encoded command until it is handed to the writer
        std::vector<int> fds;
    };

    struct write_item {
        std::string bytes;
        std::vector<int> fds;
    };

    impl(executor_type ex, client_options opts)
        : executor(std::move(ex))
        , options(std::move(opts))
        , log(detail::logger_or_null(options.logger))
        , socket(executor)
        , decode(options.max_message_size)
        , router(options.max_in_flight)
        , deadline_timer(executor) {}

    executor_type executor;
    client_options options;
    std::shared_ptr<spdlog::logger> log;
    stream_protocol::socket socket;
    decoder decode;
    command_router router;
    std::array<char, 64 * 1024> read_buffer{};

    std::unordered_map<std::uint64_t, pending_command> commands;
    // One timer for every command deadline: arming a timer per command costs system calls on
    // every round trip, and with equal timeouts a new deadline is never the earliest.
    std::set<std::pair<clock::time_point, std::uint64_t>> deadlines;
    asio::steady_timer deadline_timer;
    std::optional<clock::time_point> timer_armed_for;
    std::deque<write_item> writes;
    bool writing = false;
    bool reading = false;
    bool ready = false;
    error_code closed_reason; // set once the connection has ended
    // Counts connections: completions of an earlier connection's reads and writes (aborted when
    // it ended, but maybe still queued) must not act on a socket adopted since.
    std::uint64_t generation = 0;

    std::optional<greeting> server_greeting;
    std::optional<asio::any_completion_handler<handshake_signature>> handshake_handler;
    std::unique_ptr<asio::steady_timer> handshake_timer;

    std::optional<std::unordered_set<std::string>> command_names;
    std::vector<std::weak_ptr<detail::listener_state>> listeners;

    // --- connection -------------------------------------------------------------------------

    void on_connected() {
        ++generation;
        reading = writing = false;
        closed_reason = {};
        server_greeting.reset();
        command_names.reset();
        decode.reset();
        start_read();
    }

    void start_read() {
        if (reading)
            return;
        reading = true;
        socket.async_read_some(
            asio::buffer(read_buffer),
            [self = shared_from_this(), gen = generation](error_code ec, std::size_t n) {
                if (gen != self->generation)
                    return;
                self->reading = false;
                self->on_read(ec, n);
            });
    }

    void on_read(error_code ec, std::size_t n) {
        if (closed_reason)
            return;
        if (ec) {
            if (ec != asio::error::eof)
                log->debug("QMP read failed: {}", ec.message());
            shut_down(make_error_code(errc::disconnected));
            return;
        }
        decode.feed(std::string_view(read_buffer.data(), n));
        while (auto result = decode.next()) {
            if (result->error) {
                log->error("QMP protocol error: {}", result->detail);
                shut_down(result->error);
                return;
            }
            std::visit([this](auto& m) { on_message(m); }, result->msg);
            if (closed_reason)
                return;
        }
        start_read();
    }

    // Ends the connection: every waiter learns why, at once.
    void shut_down(error_code reason) {
        if (closed_reason)
            return;
        closed_reason = reason;
        ready = false;
        error_code ignored;
        socket.close(ignored);
        writes.clear();

        for (auto id : router.fail_all()) {
            if (auto it = commands.find(id); it != commands.end())
                finish_command(it, reason, json::value{});
        }
        // Commands abandoned after being sent have no waiter left; drop their bookkeeping.
        commands.clear();
        deadlines.clear();
        deadline_timer.cancel();
        timer_armed_for.reset();

        if (handshake_handler)
            finish_handshake(reason);
        for (auto& weak : listeners)
            if (auto l = weak.lock())
                l->close(reason);
        listeners.clear();
        if (reason != errc::closed)
            log->info("QMP connection ended: {}", reason.message());
    }

    // --- writing ----------------------------------------------------------------------------

    void pump_writes() {
        for (auto id : router.take_sendable()) {
            auto it = commands.find(id);
            if (it == commands.end())
                continue;
            if (log->should_log(spdlog::level::trace))
                log->trace("-> {}",
                           std::string_view(it->second.wire).substr(0, it->second.wire.size() - 1));
            writes.push_back({std::move(it->second.wire), std::move(it->second.fds)});
        }
        if (!writing && !writes.empty())
            start_write();
    }

    void start_write() {
        writing = true;
        auto& item = writes.front();
        if (!item.fds.empty()) {
            socket.async_wait(stream_protocol::socket::wait_write,
                              [self = shared_from_this(), gen = generation](error_code ec) {
                                  if (gen == self->generation)
                                      self->send_with_fds(ec);
                              });
            return;
        }
        asio::async_write(
            socket, asio::buffer(item.bytes),
            [self = shared_from_this(), gen = generation](error_code ec, std::size_t) {
                if (gen == self->generation)
                    self->on_written(ec);
            });
    }

    // Ancillary data rides on the first byte of the command; the rest goes the usual way.
    void send_with_fds(error_code ec) {
        if (ec)
            return on_written(ec);
        auto& item = writes.front();
        std::vector<char> control(CMSG_SPACE(sizeof(int) * item.fds.size()), 0);
        iovec iov{item.bytes.data(), 1};
        msghdr msg{};
        msg.msg_iov = &iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.data();
        msg.msg_controllen = control.size();
        cmsghdr* cmsg = CMSG_FIRSTHDR(&msg);
        cmsg->cmsg_level = SOL_SOCKET;
        cmsg->cmsg_type = SCM_RIGHTS;
        cmsg->cmsg_len = CMSG_LEN(sizeof(int) * item.fds.size());
        std::memcpy(CMSG_DATA(cmsg), item.fds.data(), sizeof(int) * item.fds.size());

        const auto sent = ::sendmsg(socket.native_handle(), &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (sent < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) {
                start_write();
                return;
            }
            log->error("sendmsg with SCM_RIGHTS failed: {}", std::strerror(errno));
            return on_written(make_error_code(errc::fd_passing_failed));
        }
        item.fds.clear();
        item.bytes.erase(0, 1);
        if (item.bytes.empty())
            return on_written({});
        start_write();
    }

    void on_written(error_code ec) {
        writing = false;
        if (closed_reason)
            return;
        if (ec) {
            log->debug("QMP write failed: {}", ec.message());
            shut_down(ec == errc::fd_passing_failed ? ec : make_error_code(errc::disconnected));
            return;
        }
        writes.pop_front();
        if (!writes.empty())
            start_write();
    }

    // --- commands ---------------------------------------------------------------------------

    void submit(std::string name, json::object arguments, execute_options opts,
                asio::any_completion_handler<execute_signature> handler, bool before_ready) {
        if (closed_reason || !socket.is_open() || (!ready && !before_ready)) {
            auto reason = closed_reason ? closed_reason : make_error_code(errc::not_connected);
            detail::post_completion(executor, std::move(handler), reason, json::value{});
            return;
        }
        const auto id = router.submit(opts.out_of_band);
        auto wire = encode_command(name, arguments, id, opts.out_of_band);
        // Built by move construction only: Boost 1.81's any_completion_handler move assignment
        // wraps the handler in itself without end.
        pending_command command{std::move(name), std::move(handler), std::nullopt, std::move(wire),
                                std::move(opts.fds)};

        const auto timeout = opts.timeout.value_or(options.command_timeout);
        std::weak_ptr<impl> weak = shared_from_this();
        if (timeout.count() > 0) {
            command.deadline = clock::now() + timeout;
            deadlines.emplace(*command.deadline, id);
            arm_deadline_timer();
        }
        auto slot = asio::get_associated_cancellation_slot(command.handler);
        if (slot.is_connected()) {
            slot.assign([weak, id](asio::cancellation_type) {
                if (auto self = weak.lock())
                    self->give_up(id, make_error_code(errc::cancelled));
            });
        }
        commands.emplace(id, std::move(command));
        pump_writes();
    }

    void arm_deadline_timer() {
        if (deadlines.empty())
            return;
        const auto earliest = deadlines.begin()->first;
        if (timer_armed_for && *timer_armed_for <= earliest)
            return;
        timer_armed_for = earliest;
        deadline_timer.expires_at(earliest);
        deadline_timer.async_wait([weak = weak_from_this()](error_code ec) {
            auto self = weak.lock();
            if (!self || ec == asio::error::operation_aborted)
                return;
            self->on_deadline();
        });
    }

    void on_deadline() {
        timer_armed_for.reset();
        const auto now = clock::now();
        while (!deadlines.empty() && deadlines.begin()->first <= now)
            give_up(deadlines.begin()->second, make_error_code(errc::timeout));
        arm_deadline_timer();
    }

    void give_up(std::uint64_t id, error_code reason) {
        auto it = commands.find(id);
        if (it == commands.end())
            return;
        log->debug("QMP command {} (id {}): {}", it->second.name, id, reason.message());
        router.abandon(id);
        finish_command(it, reason, json::value{});
        pump_writes();
    }

    void finish_command(std::unordered_map<std::uint64_t, pending_command>::iterator it,
                        error_code ec, json::value value) {
        const auto id = it->first;
        auto command = std::move(it->second);
        commands.erase(it);
        if (command.deadline)
            deadlines.erase({*command.deadline, id});
        detail::post_completion(executor, std::move(command.handler), ec, std::move(value));
    }

    void on_answer(const json::value& id, error_code ec, json::value value) {
        std::optional<std::uint64_t> numeric;
        if (!id.is_null()) {
            numeric = numeric_id(id);
            if (!numeric) {
                log->warn("QMP reply with a foreign id {} dropped", json::serialize(id));
                return;
            }
        }
        auto [match, which] = router.on_reply(numeric);
        switch (match) {
        case command_router::match::completes:
            if (auto it = commands.find(which); it != commands.end())
                finish_command(it, ec, std::move(value));
            break;
        case command_router::match::abandoned:
            log->debug("late QMP reply for id {} dropped: its caller gave up", which);
            break;
        case command_router::match::unknown:
            log->warn("QMP reply with unknown id {} dropped", json::serialize(id));
            break;
        }
        pump_writes();
    }

    // --- incoming messages ------------------------------------------------------------------

    void on_message(greeting& g) {
        if (log->should_log(spdlog::level::trace))
            log->trace("<- greeting: qemu {} capabilities [{}]", g.version_string(),
                       fmt::join(g.capabilities, ","));
        if (server_greeting) {
            log->warn("second QMP greeting ignored");
            return;
        }
        server_greeting = std::move(g);
        if (handshake_handler)
            negotiate();
    }

    void on_message(reply& r) {
        if (log->should_log(spdlog::level::trace))
            log->trace("<- {{\"return\": {}, \"id\": {}}}", json::serialize(r.value),
                       json::serialize(r.id));
        on_answer(r.id, {}, std::move(r.value));
    }

    void on_message(error_reply& e) {
        if (log->should_log(spdlog::level::trace))
            log->trace("<- error {}: {} (id {})", e.error_class, e.description,
                       json::serialize(e.id));
        json::object body{{"class", e.error_class}, {"desc", e.description}};
        if (e.id.is_null())
            log->warn("QMP error without id (qemu could not parse a command): {}", e.description);
        on_answer(e.id, make_error_code(errc::command_failed), std::move(body));
    }

    void on_message(event& e) {
        if (log->should_log(spdlog::level::trace))
            log->trace("<- event {} {}", e.name, json::serialize(e.data));
        std::erase_if(listeners, [](const auto& weak) {
            auto l = weak.lock();
            return !l || !l->registered;
        });
        for (auto& weak : listeners)
            if (auto l = weak.lock(); l && l->matches(e.name))
                l->deliver(e);
    }

    // --- handshake --------------------------------------------------------------------------

    void negotiate() {
        json::object args;
        const bool oob = server_greeting->offers("oob");
        if (oob)
            args["enable"] = json::array{"oob"};
        auto done = [self = shared_from_this()](error_code ec, json::value value) {
            if (!self->handshake_handler)
                return;
            if (ec == errc::command_failed) {
                self->log->error("qmp_capabilities refused: {}", json::serialize(value));
                ec = make_error_code(errc::negotiation_failed);
            }
            if (!ec)
                self->ready = true;
            self->finish_handshake(ec);
        };
        execute_options opts;
        opts.timeout = std::chrono::milliseconds(0); // the handshake timer covers it
        submit("qmp_capabilities", std::move(args), std::move(opts),
               asio::any_completion_handler<execute_signature>(std::move(done)), true);
    }

    void finish_handshake(error_code ec) {
        auto handler = std::move(*handshake_handler);
        handshake_handler.reset();
        if (handshake_timer)
            handshake_timer->cancel();
        auto g = server_greeting.value_or(greeting{});
        detail::post_completion(executor, std::move(handler), ec, std::move(g));
        if (ec && ec != errc::closed && !closed_reason)
            shut_down(ec);
    }
};

// --- async_client ----------------------------------------------------------------------------

async_client::async_client(executor_type executor, client_options options)
    : impl_(std::make_shared<impl>(std::move(executor), std::move(options))) {}

async_client::~async_client() {
    close();
}

async_client::executor_type async_client::get_executor() const {
    return impl_->executor;
}
const client_options& async_client::options() const {
    return impl_->options;
}
bool async_client::is_open() const {
    return impl_->socket.is_open() && !impl_->closed_reason;
}
bool async_client::is_ready() const {
    return is_open() && impl_->ready;
}
const std::optional<greeting>& async_client::server_greeting() const {
    return impl_->server_greeting;
}

void async_client::close() {
    if (impl_->socket.is_open() || !impl_->closed_reason)
        impl_->shut_down(make_error_code(errc::closed));
}

void async_client::adopt(int connected_fd) {
    if (impl_->socket.is_open())
        throw error(make_error_code(boost::asio::error::already_connected), {});
    impl_->socket.assign(stream_protocol(), connected_fd);
    impl_->on_connected();
}

void async_client::start_connect(std::filesystem::path path,
                                 asio::any_completion_handler<connect_signature> handler) {
    auto& self = *impl_;
    if (self.socket.is_open()) {
        detail::post_completion(self.executor, std::move(handler),
                                make_error_code(asio::error::already_connected));
        return;
    }
    stream_protocol::endpoint endpoint;
    try {
        endpoint = stream_protocol::endpoint(path.string());
    } catch (const boost::system::system_error& e) {
        detail::post_completion(self.executor, std::move(handler), e.code());
        return;
    }
    auto timer = std::make_shared<asio::steady_timer>(self.executor, self.options.connect_timeout);
    auto state = impl_;
    timer->async_wait([state](error_code ec) {
        if (!ec) {
            error_code ignored;
            state->socket.close(ignored);
        }
    });
    self.socket.async_connect(
        endpoint, [state, timer, handler = std::move(handler)](error_code ec) mutable {
            const bool timed_out = timer->expiry() <= asio::steady_timer::clock_type::now();
            timer->cancel();
            if (ec && timed_out)
                ec = make_error_code(errc::timeout);
            if (!ec)
                state->on_connected();
            else {
                error_code ignored;
                state->socket.close(ignored);
            }
            detail::post_completion(state->executor, std::move(handler), ec);
        });
}

void async_client::start_handshake(asio::any_completion_handler<handshake_signature> handler) {
    auto& self = *impl_;
    if (!is_open() || self.handshake_handler || self.ready) {
        auto ec = self.ready ? make_error_code(asio::error::already_connected)
                  : self.handshake_handler
                      ? make_error_code(boost::system::errc::operation_in_progress)
                      : make_error_code(errc::not_connected);
        detail::post_completion(self.executor, std::move(handler), ec, greeting{});
        return;
    }
    auto slot = asio::get_associated_cancellation_slot(handler);
    self.handshake_handler.emplace(std::move(handler));
    self.handshake_timer =
        std::make_unique<asio::steady_timer>(self.executor, self.options.connect_timeout);
    std::weak_ptr<impl> weak = impl_;
    if (slot.is_connected()) {
        slot.assign([weak](asio::cancellation_type) {
            if (auto state = weak.lock(); state && state->handshake_handler)
                state->finish_handshake(make_error_code(errc::cancelled));
        });
    }
    self.handshake_timer->async_wait([weak](error_code ec) {
        auto state = weak.lock();
        if (ec || !state || !state->handshake_handler)
            return;
        state->log->error("QMP handshake timed out (greeting {})",
                          state->server_greeting ? "received" : "never came");
        state->finish_handshake(make_error_code(errc::timeout));
    });
    if (self.server_greeting)
        self.negotiate();
}

void async_client::start_execute(std::string name, json::object arguments, execute_options options,
                                 asio::any_completion_handler<execute_signature> handler) {
    impl_->submit(std::move(name), std::move(arguments), std::move(options), std::move(handler),
                  false);
}

void async_client::start_hmp(std::string command_line,
                             asio::any_completion_handler<hmp_signature> handler) {
    // The wrapper carries the caller's cancellation slot, so cancelling reaches the command.
    auto slot = asio::get_associated_cancellation_slot(handler);
    auto done = [ex = impl_->executor, handler = std::move(handler)](error_code ec,
                                                                     json::value value) mutable {
        std::string text;
        if (!ec && value.is_string())
            text = value.get_string();
        else if (ec == errc::command_failed && value.is_object())
            if (const auto* desc = value.get_object().if_contains("desc");
                desc && desc->is_string())
                text = desc->get_string();
        if (!ec && text.rfind("Error:", 0) == 0)
            ec = make_error_code(errc::hmp_error);
        detail::post_completion(ex, std::move(handler), ec, std::move(text));
    };
    impl_->submit("human-monitor-command", json::object{{"command-line", command_line}}, {},
                  asio::any_completion_handler<execute_signature>(
                      asio::bind_cancellation_slot(slot, std::move(done))),
                  false);
}

void async_client::start_has_command(std::string name,
                                     asio::any_completion_handler<has_command_signature> handler) {
    auto& self = *impl_;
    if (self.command_names) {
        detail::post_completion(self.executor, std::move(handler), error_code{},
                                self.command_names->count(name) > 0);
        return;
    }
    auto slot = asio::get_associated_cancellation_slot(handler);
    auto done = [state = impl_, name = std::move(name),
                 handler = std::move(handler)](error_code ec, json::value value) mutable {
        bool found = false;
        if (!ec && value.is_array()) {
            std::unordered_set<std::string> names;
            for (const auto& entry : value.get_array())
                if (const auto* n =
                        entry.is_object() ? entry.get_object().if_contains("name") : nullptr;
                    n && n->is_string())
                    names.emplace(n->get_string());
            found = names.count(name) > 0;
            state->command_names = std::move(names);
        }
        detail::post_completion(state->executor, std::move(handler), ec, found);
    };
    self.submit("query-commands", {}, {},
                asio::any_completion_handler<execute_signature>(
                    asio::bind_cancellation_slot(slot, std::move(done))),
                false);
}

event_listener async_client::listen(std::vector<std::string> names) {
    auto state = std::make_shared<detail::listener_state>(
        impl_->executor, std::move(names), impl_->options.listener_queue_limit, impl_->log);
    if (impl_->closed_reason)
        state->close(impl_->closed_reason);
    else
        impl_->listeners.push_back(state);
    return event_listener(std::move(state));
}

void async_client::start_wait_event(event_listener& listener, std::chrono::milliseconds timeout,
                                    asio::any_completion_handler<event_signature> handler) {
    auto* state = listener.state();
    if (!state) {
        detail::post_completion(impl_->executor, std::move(handler), make_error_code(errc::closed),
                                event{});
        return;
    }
    state->wait(timeout, std::move(handler));
}

} // namespace qmpkit::qmp
