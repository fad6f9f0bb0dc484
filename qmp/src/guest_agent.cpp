#include "completion.hpp"

#include <qmpkit/qmp/guest_agent.hpp>

#include <boost/beast/core/detail/base64.hpp>
#include <boost/json/serialize.hpp>
#include <spdlog/logger.h>

#include <cerrno>
#include <cstring>
#include <poll.h>
#include <random>
#include <sys/socket.h>
#include <sys/un.h>
#include <thread>
#include <unistd.h>
#include <variant>

namespace qmpkit::qmp {

namespace json = boost::json;
using std::chrono::milliseconds;
using clock_type = std::chrono::steady_clock;

namespace {

constexpr char sync_delimiter = '\xff';

[[noreturn]] void fail(errc code, std::string command, std::string description) {
    throw error(make_error_code(code), {std::move(command), "", std::move(description)});
}

std::string system_error_text(const char* what, int err) {
    return std::string(what) + ": " + std::strerror(err);
}

int remaining_ms(clock_type::time_point deadline) {
    // Rounded up, so a wait never ends before its deadline.
    const auto left = std::chrono::ceil<milliseconds>(deadline - clock_type::now());
    return left.count() > 0 ? static_cast<int>(std::min<long long>(left.count(), 1 << 30)) : 0;
}

std::string encode_agent_command(std::string_view name, const json::object& arguments) {
    json::object command{{"execute", name}};
    if (!arguments.empty())
        command["arguments"] = arguments;
    auto text = json::serialize(command);
    text.push_back('\n');
    return text;
}

const json::object& as_object(const json::value& v, std::string_view command) {
    if (!v.is_object())
        fail(errc::protocol_error, std::string(command),
             "unexpected answer from the guest agent: " + json::serialize(v));
    return v.get_object();
}

std::int64_t int_at(const json::object& o, std::string_view key, std::string_view command) {
    const auto* v = o.if_contains(key);
    if (!v || !v->is_int64())
        fail(errc::protocol_error, std::string(command),
             "the guest agent's answer has no integer '" + std::string(key) +
                 "': " + json::serialize(o));
    return v->get_int64();
}

bool bool_at(const json::object& o, std::string_view key) {
    const auto* v = o.if_contains(key);
    return v && v->is_bool() && v->get_bool();
}

std::string string_at(const json::object& o, std::string_view key) {
    const auto* v = o.if_contains(key);
    return v && v->is_string() ? std::string(v->get_string()) : std::string();
}

std::int64_t as_int(const json::value& v, std::string_view command) {
    if (!v.is_int64())
        fail(errc::protocol_error, std::string(command),
             "expected an integer from the guest agent, got " + json::serialize(v));
    return v.get_int64();
}

} // namespace

std::string base64_encode(std::string_view bytes) {
    namespace b64 = boost::beast::detail::base64;
    std::string out(b64::encoded_size(bytes.size()), '\0');
    out.resize(b64::encode(out.data(), bytes.data(), bytes.size()));
    return out;
}

std::string base64_decode(std::string_view text) {
    namespace b64 = boost::beast::detail::base64;
    std::size_t padding = 0;
    while (padding < 2 && padding < text.size() && text[text.size() - 1 - padding] == '=')
        ++padding;
    if (text.size() % 4 != 0)
        fail(errc::protocol_error, "", "invalid base64: its length is not a multiple of 4");
    std::string out(b64::decoded_size(text.size()), '\0');
    const auto [written, read] = b64::decode(out.data(), text.data(), text.size());
    if (read != text.size() - padding)
        fail(errc::protocol_error, "",
             "invalid base64: unexpected character at offset " + std::to_string(read));
    out.resize(written);
    return out;
}

struct guest_agent::impl {
    explicit impl(guest_agent_options o)
        : options(std::move(o))
        , log(detail::logger_or_null(options.logger))
        , input(options.max_message_size)
        , random(std::random_device{}()) {}

    ~impl() { close(); }

    void close() {
        if (fd >= 0)
            ::close(fd);
        fd = -1;
        input.reset();
        need_sync = true;
    }

    void require_connected(std::string_view command) const {
        if (fd < 0)
            fail(errc::not_connected, std::string(command),
                 "the guest agent client is not connected");
    }

    // Writes everything before the deadline. A guest with no agent reading lets the socket fill
    // up, so the write must not block past it.
    void send_all(std::string_view bytes, clock_type::time_point deadline,
                  std::string_view command) {
        while (!bytes.empty()) {
            const auto n = ::send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
            if (n >= 0) {
                bytes.remove_prefix(static_cast<std::size_t>(n));
                continue;
            }
            if (errno == EINTR)
                continue;
            if (errno != EAGAIN && errno != EWOULDBLOCK) {
                const int err = errno;
                close();
                fail(errc::disconnected, std::string(command),
                     system_error_text("writing to the guest agent", err));
            }
            pollfd p{fd, POLLOUT, 0};
            const int ready = ::poll(&p, 1, remaining_ms(deadline));
            if (ready == 0) {
                need_sync = true;
                fail(errc::timeout, std::string(command),
                     "the guest agent does not read its input (is qemu-ga running in the guest?)");
            }
            if (ready < 0 && errno != EINTR)
                fail(errc::disconnected, std::string(command), system_error_text("poll", errno));
        }
    }

    enum class read_status { data, eof, timeout };

    read_status read_more(clock_type::time_point deadline) {
        for (;;) {
            pollfd p{fd, POLLIN, 0};
            const int ready = ::poll(&p, 1, remaining_ms(deadline));
            if (ready == 0)
                return read_status::timeout;
            if (ready < 0) {
                if (errno == EINTR)
                    continue;
                fail(errc::disconnected, "", system_error_text("poll", errno));
            }
            char chunk[16 * 1024];
            const auto n = ::recv(fd, chunk, sizeof chunk, MSG_DONTWAIT);
            if (n > 0) {
                input.feed(std::string_view(chunk, static_cast<std::size_t>(n)));
                return read_status::data;
            }
            if (n == 0)
                return read_status::eof;
            if (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK)
                continue;
            if (errno == ECONNRESET)
                return read_status::eof;
            fail(errc::disconnected, "", system_error_text("reading from the guest agent", errno));
        }
    }

    // The next decoded line, or why there is none.
    std::variant<decode_result, read_status> next_message(clock_type::time_point deadline) {
        for (;;) {
            if (auto r = input.next())
                return std::move(*r);
            if (auto s = read_more(deadline); s != read_status::data)
                return s;
        }
    }

    void log_message(const decode_result& r) const {
        if (!log->should_log(spdlog::level::trace))
            return;
        if (r.error)
            log->trace("agent <- undecodable: {}", r.detail);
        else if (const auto* rep = std::get_if<reply>(&r.msg))
            log->trace("agent <- {{\"return\": {}}}", json::serialize(rep->value));
        else if (const auto* err = std::get_if<error_reply>(&r.msg))
            log->trace("agent <- error {}: {}", err->error_class, err->description);
        else
            log->trace("agent <- another kind of message");
    }

    [[noreturn]] void lost(std::string_view command, read_status why, milliseconds timeout) {
        if (why == read_status::eof) {
            close();
            fail(errc::disconnected, std::string(command),
                 "the guest agent's connection closed (qemu quit or the VM stopped)");
        }
        need_sync = true;
        fail(errc::timeout, std::string(command),
             "no answer from the guest agent within " + std::to_string(timeout.count()) +
                 " ms (is qemu-ga running in the guest?)");
    }

    void sync(milliseconds timeout) {
        constexpr std::string_view command = "guest-sync-delimited";
        require_connected(command);
        const auto deadline = clock_type::now() + timeout;
        // JSON numbers above 2^53 would not survive every parser on the way.
        const auto id = static_cast<std::int64_t>(random() & ((std::uint64_t{1} << 53) - 1));
        // Whatever was buffered is stale; 0xFF makes the agent drop any partial input of ours.
        input.reset();
        const auto line = std::string(1, sync_delimiter) +
                          encode_agent_command(command, json::object{{"id", id}});
        log->trace("agent -> 0xFF {}", std::string_view(line).substr(1, line.size() - 2));
        send_all(line, deadline, command);
        for (;;) {
            for (;;) {
                const auto held = input.pending_bytes();
                const bool found = input.discard_until(sync_delimiter);
                if (const auto skipped = held - input.pending_bytes() - (found ? 1 : 0))
                    log->debug("guest agent: {} stale byte(s) skipped while resynchronising",
                               skipped);
                if (found)
                    break;
                if (auto s = read_more(deadline); s != read_status::data)
                    lost(command, s, timeout);
            }
            auto next = next_message(deadline);
            if (auto* s = std::get_if<read_status>(&next))
                lost(command, *s, timeout);
            const auto& r = std::get<decode_result>(next);
            log_message(r);
            const auto* rep = r.error ? nullptr : std::get_if<reply>(&r.msg);
            if (rep && rep->value.is_int64() && rep->value.get_int64() == id) {
                need_sync = false;
                return;
            }
            log->debug("guest agent: stale answer dropped while resynchronising");
        }
    }

    json::value execute(std::string_view name, const json::object& arguments,
                        milliseconds timeout) {
        require_connected(name);
        if (need_sync)
            sync(options.sync_timeout);
        const auto deadline = clock_type::now() + timeout;
        const auto line = encode_agent_command(name, arguments);
        if (log->should_log(spdlog::level::trace))
            log->trace("agent -> {}", std::string_view(line).substr(0, line.size() - 1));
        send_all(line, deadline, name);
        for (;;) {
            auto next = next_message(deadline);
            if (auto* s = std::get_if<read_status>(&next))
                lost(name, *s, timeout);
            auto& r = std::get<decode_result>(next);
            log_message(r);
            if (r.error) {
                need_sync = true;
                fail(errc::protocol_error, std::string(name),
                     "the guest agent sent something that is not a reply: " + r.detail);
            }
            if (auto* rep = std::get_if<reply>(&r.msg))
                return std::move(rep->value);
            if (auto* err = std::get_if<error_reply>(&r.msg))
                throw error(make_error_code(errc::command_failed),
                            {std::string(name), err->error_class, err->description});
            log->warn("guest agent: unexpected message ignored");
        }
    }

    guest_agent_options options;
    std::shared_ptr<spdlog::logger> log;
    int fd = -1;
    decoder input;
    bool need_sync = true;
    std::mt19937_64 random;
};

guest_agent::guest_agent(guest_agent_options options)
    : impl_(std::make_unique<impl>(std::move(options))) {}
guest_agent::~guest_agent() = default;
guest_agent::guest_agent(guest_agent&&) noexcept = default;
guest_agent& guest_agent::operator=(guest_agent&&) noexcept = default;

void guest_agent::connect(const std::filesystem::path& socket_path) {
    impl_->close();
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    if (socket_path.native().size() >= sizeof addr.sun_path)
        fail(errc::not_connected, "",
             "guest agent socket path is too long: " + socket_path.string());
    std::memcpy(addr.sun_path, socket_path.c_str(), socket_path.native().size() + 1);
    const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        fail(errc::not_connected, "", system_error_text("socket", errno));
    if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
        const int err = errno;
        ::close(fd);
        fail(errc::not_connected, "",
             "cannot connect to the guest agent socket " + socket_path.string() + ": " +
                 std::strerror(err));
    }
    adopt(fd);
}

void guest_agent::adopt(int connected_fd) {
    impl_->close();
    impl_->fd = connected_fd;
    impl_->need_sync = true;
}

bool guest_agent::is_connected() const noexcept {
    return impl_->fd >= 0;
}

void guest_agent::close() {
    impl_->close();
}

void guest_agent::resync_needed() noexcept {
    impl_->need_sync = true;
}

void guest_agent::sync(std::optional<milliseconds> timeout) {
    impl_->sync(timeout && timeout->count() > 0 ? *timeout : impl_->options.sync_timeout);
}

json::value guest_agent::execute(std::string_view name, json::object arguments,
                                 std::optional<milliseconds> timeout) {
    return impl_->execute(name, arguments,
                          timeout && timeout->count() > 0 ? *timeout
                                                          : impl_->options.command_timeout);
}

void guest_agent::ping(std::optional<milliseconds> timeout) {
    if (timeout && impl_->need_sync)
        sync(timeout);
    execute("guest-ping", {}, timeout);
}

guest_info guest_agent::info() {
    const auto value = execute("guest-info");
    const auto& o = as_object(value, "guest-info");
    guest_info result;
    result.version = string_at(o, "version");
    if (const auto* commands = o.if_contains("supported_commands");
        commands && commands->is_array())
        for (const auto& c : commands->get_array())
            if (c.is_object() && bool_at(c.get_object(), "enabled"))
                result.enabled_commands.push_back(string_at(c.get_object(), "name"));
    return result;
}

std::int64_t guest_agent::exec_start(const guest_exec_request& request) {
    json::object args{{"path", request.path}, {"capture-output", request.capture_output}};
    if (!request.args.empty()) {
        json::array a;
        for (const auto& s : request.args)
            a.emplace_back(s);
        args["arg"] = std::move(a);
    }
    if (!request.env.empty()) {
        json::array e;
        for (const auto& s : request.env)
            e.emplace_back(s);
        args["env"] = std::move(e);
    }
    if (request.input)
        args["input-data"] = base64_encode(*request.input);
    const auto value = execute("guest-exec", std::move(args));
    return int_at(as_object(value, "guest-exec"), "pid", "guest-exec");
}

guest_exec_status guest_agent::exec_status(std::int64_t pid) {
    const auto value = execute("guest-exec-status", {{"pid", pid}});
    const auto& o = as_object(value, "guest-exec-status");
    guest_exec_status status;
    status.exited = bool_at(o, "exited");
    if (const auto* v = o.if_contains("exitcode"); v && v->is_int64())
        status.exit_code = static_cast<int>(v->get_int64());
    if (const auto* v = o.if_contains("signal"); v && v->is_int64())
        status.signal = static_cast<int>(v->get_int64());
    try {
        status.out = base64_decode(string_at(o, "out-data"));
        status.err = base64_decode(string_at(o, "err-data"));
    } catch (const error& e) {
        fail(errc::protocol_error, "guest-exec-status", e.diag().description);
    }
    status.out_truncated = bool_at(o, "out-truncated");
    status.err_truncated = bool_at(o, "err-truncated");
    return status;
}

guest_exec_status guest_agent::exec(const guest_exec_request& request, milliseconds timeout) {
    const auto deadline = clock_type::now() + timeout;
    const auto pid = exec_start(request);
    // Short commands end within a round trip or two; long ones are polled less often.
    milliseconds pause{10};
    for (;;) {
        auto status = exec_status(pid);
        if (status.exited)
            return status;
        if (clock_type::now() + pause >= deadline)
            fail(errc::timeout, "guest-exec",
                 "`" + request.path + "` did not finish within " + std::to_string(timeout.count()) +
                     " ms (it keeps running in the guest, pid " + std::to_string(pid) + ")");
        std::this_thread::sleep_for(pause);
        pause = std::min(pause * 2, milliseconds{200});
    }
}

std::int64_t guest_agent::file_open(const std::string& path, std::string_view mode) {
    return as_int(execute("guest-file-open", {{"path", path}, {"mode", mode}}), "guest-file-open");
}

guest_file_chunk guest_agent::file_read(std::int64_t handle, std::size_t count) {
    const auto value = execute("guest-file-read",
                               {{"handle", handle}, {"count", static_cast<std::int64_t>(count)}});
    const auto& o = as_object(value, "guest-file-read");
    guest_file_chunk chunk;
    try {
        chunk.data = base64_decode(string_at(o, "buf-b64"));
    } catch (const error& e) {
        fail(errc::protocol_error, "guest-file-read", e.diag().description);
    }
    chunk.eof = bool_at(o, "eof");
    return chunk;
}

std::size_t guest_agent::file_write(std::int64_t handle, std::string_view data) {
    const auto value =
        execute("guest-file-write", {{"handle", handle}, {"buf-b64", base64_encode(data)}});
    return static_cast<std::size_t>(
        int_at(as_object(value, "guest-file-write"), "count", "guest-file-write"));
}

void guest_agent::file_close(std::int64_t handle) {
    execute("guest-file-close", {{"handle", handle}});
}

int guest_agent::fsfreeze_freeze() {
    return static_cast<int>(as_int(execute("guest-fsfreeze-freeze"), "guest-fsfreeze-freeze"));
}

int guest_agent::fsfreeze_thaw() {
    return static_cast<int>(as_int(execute("guest-fsfreeze-thaw"), "guest-fsfreeze-thaw"));
}

std::string guest_agent::fsfreeze_status() {
    const auto value = execute("guest-fsfreeze-status");
    if (!value.is_string())
        fail(errc::protocol_error, "guest-fsfreeze-status",
             "expected a string from the guest agent, got " + json::serialize(value));
    return std::string(value.get_string());
}

void guest_agent::shutdown(std::string_view mode, milliseconds error_window) {
    constexpr std::string_view command = "guest-shutdown";
    auto& d = *impl_;
    d.require_connected(command);
    if (d.need_sync)
        d.sync(d.options.sync_timeout);
    const auto line = encode_agent_command(command, {{"mode", mode}});
    d.log->trace("agent -> {}", std::string_view(line).substr(0, line.size() - 1));
    const auto deadline = clock_type::now() + error_window;
    d.send_all(line, clock_type::now() + d.options.command_timeout, command);
    // Whatever happens next, the agent is going away: later commands must resync.
    d.need_sync = true;
    for (;;) {
        auto next = d.next_message(deadline);
        if (auto* s = std::get_if<impl::read_status>(&next)) {
            if (*s == impl::read_status::eof)
                d.close();
            return;
        }
        const auto& r = std::get<decode_result>(next);
        d.log_message(r);
        if (!r.error)
            if (const auto* err = std::get_if<error_reply>(&r.msg))
                throw error(make_error_code(errc::command_failed),
                            {std::string(command), err->error_class, err->description});
    }
}

std::string guest_exec_status::failure() const {
    auto text = err.empty() ? out : err;
    while (!text.empty() && (text.back() == '\n' || text.back() == '\r'))
        text.pop_back();
    if (!text.empty())
        return text;
    if (exit_code)
        return "exit code " + std::to_string(*exit_code);
    return signal ? "killed by signal " + std::to_string(*signal) : "killed";
}

} // namespace qmpkit::qmp
