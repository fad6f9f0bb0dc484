// Fuzzes qmp::async_client against a fake qemu that the input scripts, in-process: the client
// adopts one end of a socketpair, the fuzzer writes into the other, and one io_context on this
// thread runs everything (no threads, no real waits except the "let time pass" action).
//
// Input: the front holds bytes the fake qemu sends as they are (a real qemu transcript makes a
// good seed: the client numbers its commands 1, 2, 3, ... as the capture did); the back, read
// backwards one byte at a time, holds the script: a configuration byte, how the conversation ends,
// then actions (see `action`). tests/fuzz/make-seeds writes seeds in this layout.
//
// Invariants:
//   - every operation (handshake, execute, hmp, has_command, wait_event) completes exactly once,
//     whatever qemu sends, whenever it disconnects, whatever the caller cancels;
//   - once the conversation ends, the io_context runs out of work (nothing hangs) and nothing
//     leaks (LeakSanitizer);
//   - a command that succeeds got a reply qemu sent for its id (or without id) and its value; a
//     command that fails with command_failed got such an error; other failures are the QMP
//     layer's own error codes;
//   - a listener hands out the events qemu sent, in order, only those it asked for;
//   - a successful handshake reports the greeting qemu sent first.

#include "fuzz_check.hpp"

#include <qmpkit/qmp/async_client.hpp>
#include <qmpkit/qmp/decoder.hpp>

#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/error.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/json.hpp>
#include <spdlog/logger.h>
#include <spdlog/sinks/null_sink.h>

#include <array>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fcntl.h>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <sys/socket.h>
#include <thread>
#include <unistd.h>
#include <vector>

namespace {

namespace asio = boost::asio;
namespace json = boost::json;
namespace qmp = qmpkit::qmp;
using boost::system::error_code;
using qmpkit::fuzz::check;
using namespace std::chrono_literals;

// The input read from both ends: bytes for the wire from the front, script bytes from the back.
class two_ended_input {
public:
    two_ended_input(const std::uint8_t* data, std::size_t size)
        : begin_(data)
        , end_(data + size) {}

    bool empty() const { return begin_ == end_; }

    // One script byte from the back; 0 once the input is used up.
    std::uint8_t byte() { return empty() ? 0 : *--end_; }
    std::size_t pick(std::size_t n) { return n == 0 ? 0 : byte() % n; }

    // Wire bytes from the front: up to and including the next newline, at most max bytes.
    std::string_view line(std::size_t max) {
        std::size_t n = 0;
        while (begin_ + n != end_ && n < max && begin_[n] != '\n')
            ++n;
        if (begin_ + n != end_ && n < max)
            ++n;
        return take(n);
    }
    std::string_view bytes(std::size_t n) {
        return take(std::min<std::size_t>(n, static_cast<std::size_t>(end_ - begin_)));
    }

private:
    std::string_view take(std::size_t n) {
        std::string_view out(reinterpret_cast<const char*>(begin_), n);
        begin_ += n;
        return out;
    }

    const std::uint8_t* begin_;
    const std::uint8_t* end_;
};

// The script's actions; the numbers are the input format (make-seeds writes them).
enum action : std::uint8_t {
    send_line,       // qemu sends the next line of the front bytes
    send_bytes,      // qemu sends the next 1..64 front bytes (a line torn anywhere)
    send_return,     // qemu answers a command it read, with a value
    send_error,      // qemu answers a command it read, with an error
    send_odd_answer, // an answer with no id, a foreign id, an unknown id
    send_event,      // qemu sends an event
    send_greeting,   // qemu sends a greeting (again)
    server_close,    // qemu closes its end (or only its sending half)
    do_execute,      // the caller sends a command
    do_cancel,       // the caller cancels an operation
    do_hmp,          // human-monitor-command
    do_has_command,  // query-commands (cached after the first answer)
    do_listen,       // the caller registers a listener
    do_wait_event,   // the caller waits on a listener
    do_drop_listener,
    do_handshake,
    do_close,      // the caller closes the client
    let_time_pass, // 1 ms, so that the 1 ms deadlines can pass (at most twice per input)
    action_count
};

constexpr std::array<std::string_view, 8> command_names = {
    "query-status", "stop",        "cont",          "no-such-command",
    "query-jobs",   "job-dismiss", "snapshot-save", "quit"};
constexpr std::array<std::string_view, 5> event_names = {"STOP", "RESUME", "JOB_STATUS_CHANGE",
                                                         "SHUTDOWN", "BLOCK_JOB_READY"};

enum class op_kind { handshake, execute, hmp, has_command, wait_event };

// One operation the caller started, and how it completed.
struct operation {
    op_kind kind;
    std::string name; // execute: the command
    std::size_t listener = 0;
    asio::cancellation_signal cancel;
    int completions = 0;
    error_code ec;
    json::value value;
    std::string text;
    qmp::greeting greeting;
};

struct sent_answer {
    json::value id;
    bool is_error;
    json::value value; // the return value, or {"class", "desc"}
};

struct listener_slot {
    std::unique_ptr<qmp::event_listener> listener;
    std::vector<std::string> names;
    // What the listener handed out so far matched sent_events_ up to here: it hands out a
    // subsequence of what was sent (the full queue drops the oldest).
    std::size_t cursor = 0;
};

bool is_qmp_error(const error_code& ec) {
    return ec.category() == qmp::qmp_category();
}

std::shared_ptr<spdlog::logger> trace_logger() {
    // Every QMP message is logged at trace level: the formatting runs, the text goes nowhere.
    static const auto logger = [] {
        auto l = std::make_shared<spdlog::logger>("fuzz",
                                                  std::make_shared<spdlog::sinks::null_sink_st>());
        l->set_level(spdlog::level::trace);
        return l;
    }();
    return logger;
}

int dev_null() {
    static const int fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
    return fd;
}

class harness {
public:
    explicit harness(two_ended_input& in)
        : in_(in) {
        const auto config = in_.byte();
        qmp::client_options options;
        options.max_in_flight = std::array<std::size_t, 4>{8, 1, 2, 3}[config & 3];
        if (config & 4)
            options.logger = trace_logger();
        options.connect_timeout = (config & 8) ? 1ms : 10s;
        options.listener_queue_limit = std::array<std::size_t, 4>{4096, 1, 2, 3}[(config >> 4) & 3];
        options.max_message_size = std::array<std::size_t, 4>{
            qmp::decoder::default_max_message_size, 64, 512, 4096}[(config >> 6) & 3];
        mirror_ = qmp::decoder(options.max_message_size);
        ending_ = in_.byte();

        int fds[2];
        check(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) == 0, "socketpair");
        server_fd_ = fds[0];
        ::fcntl(server_fd_, F_SETFL, O_NONBLOCK);
        client_ = std::make_unique<qmp::async_client>(io_.get_executor(), options);
        client_->adopt(fds[1]);
    }

    ~harness() {
        listeners_.clear();
        client_.reset();
        if (server_fd_ >= 0)
            ::close(server_fd_);
    }

    void run() {
        for (int steps = 0; !in_.empty() && steps < 256; ++steps) {
            step(static_cast<action>(in_.byte() % action_count));
            pump();
        }
        finish();
        check_outcomes();
    }

private:
    void step(action a) {
        switch (a) {
        case send_line:
            send(in_.line(1 << 16));
            break;
        case send_bytes:
            send(in_.bytes(1 + in_.pick(64)));
            break;
        case send_return:
        case send_error:
            if (!read_commands_.empty()) {
                // A copy: answering lets the client run, which may add to read_commands_.
                const auto [id, name] = read_commands_[in_.pick(read_commands_.size())];
                answer(json::value(id), name, a == send_error);
            }
            break;
        case send_odd_answer: {
            static const std::array<json::value, 7> ids = {
                json::value(nullptr),       json::value(-1),      json::value("1"),
                json::value(1.0),           json::value(1000000), json::value(std::uint64_t(-1)),
                json::value(json::object{})};
            const auto& id = ids[in_.pick(ids.size())];
            const bool error = in_.byte() & 1;
            answer(id, "", error);
            break;
        }
        case send_event: {
            const auto name = event_names[in_.pick(event_names.size())];
            json::object data;
            if (name == "JOB_STATUS_CHANGE")
                data = {{"id", "job0"}, {"status", "concluded"}};
            json::object e{{"event", name},
                           {"data", data},
                           {"timestamp", {{"seconds", 1700000000 + tag_}, {"microseconds", 1}}}};
            ++tag_;
            send(json::serialize(e) + "\r\n");
            break;
        }
        case send_greeting: {
            json::array caps;
            if (in_.byte() & 1)
                caps.push_back("oob");
            json::object g{
                {"QMP",
                 {{"version", {{"qemu", {{"major", 7}, {"minor", 2}, {"micro", tag_++}}}}},
                  {"capabilities", caps}}}};
            send(json::serialize(g) + "\r\n");
            break;
        }
        case server_close:
            close_server(in_.byte() & 1);
            break;
        case do_execute: {
            auto& op = start(op_kind::execute);
            op.name = command_names[in_.pick(command_names.size())];
            const auto flags = in_.byte();
            qmp::execute_options options;
            if ((flags & 3) == 1)
                options.timeout = 0ms;
            else if ((flags & 3) == 2)
                options.timeout = 1ms;
            options.out_of_band = flags & 4;
            if (flags & 8)
                options.fds.push_back(dev_null());
            json::object args;
            if (flags & 16)
                args["tag"] = tag_++;
            client_->async_execute(
                op.name, std::move(args), std::move(options),
                asio::bind_cancellation_slot(op.cancel.slot(), [&op](error_code ec, json::value v) {
                    ++op.completions;
                    op.ec = ec;
                    op.value = std::move(v);
                }));
            break;
        }
        case do_cancel:
            if (!ops_.empty()) {
                static constexpr std::array<asio::cancellation_type, 3> types = {
                    asio::cancellation_type::terminal, asio::cancellation_type::partial,
                    asio::cancellation_type::total};
                ops_[in_.pick(ops_.size())]->cancel.emit(types[in_.pick(types.size())]);
            }
            break;
        case do_hmp: {
            auto& op = start(op_kind::hmp);
            client_->async_hmp(
                in_.byte() & 1 ? "info status" : "savevm s1",
                asio::bind_cancellation_slot(op.cancel.slot(), [&op](error_code ec, std::string t) {
                    ++op.completions;
                    op.ec = ec;
                    op.text = std::move(t);
                }));
            break;
        }
        case do_has_command: {
            auto& op = start(op_kind::has_command);
            client_->async_has_command(
                in_.byte() & 1 ? "snapshot-save" : "query-status",
                asio::bind_cancellation_slot(op.cancel.slot(), [&op](error_code ec, bool) {
                    ++op.completions;
                    op.ec = ec;
                }));
            break;
        }
        case do_listen: {
            static const std::array<std::vector<std::string>, 4> filters = {
                std::vector<std::string>{}, std::vector<std::string>{"STOP"},
                std::vector<std::string>{"RESUME", "STOP"},
                std::vector<std::string>{"JOB_STATUS_CHANGE"}};
            const auto& names = filters[in_.pick(filters.size())];
            listeners_.push_back(
                {std::make_unique<qmp::event_listener>(client_->listen(names)), names, 0});
            break;
        }
        case do_wait_event:
            if (!listeners_.empty()) {
                const auto which = in_.pick(listeners_.size());
                auto& op = start(op_kind::wait_event);
                op.listener = which;
                // A dropped listener stays in listeners_ as null; waiting on an empty one is an
                // operation on a listener that was never registered.
                auto& slot = listeners_[which];
                if (!slot.listener)
                    slot.listener = std::make_unique<qmp::event_listener>();
                client_->async_wait_event(
                    *slot.listener, in_.byte() & 1 ? 1ms : 0ms,
                    asio::bind_cancellation_slot(op.cancel.slot(),
                                                 [this, &op, which](error_code ec, qmp::event e) {
                                                     ++op.completions;
                                                     op.ec = ec;
                                                     if (!ec)
                                                         check_listener_event(listeners_[which], e);
                                                 }));
            }
            break;
        case do_drop_listener:
            if (!listeners_.empty()) {
                auto& slot = listeners_[in_.pick(listeners_.size())];
                if (slot.listener && (in_.byte() & 1)) {
                    while (auto e = slot.listener->try_pop())
                        check_listener_event(slot, *e);
                }
                slot.listener.reset();
            }
            break;
        case do_handshake: {
            auto& op = start(op_kind::handshake);
            client_->async_handshake(asio::bind_cancellation_slot(
                op.cancel.slot(), [&op](error_code ec, qmp::greeting g) {
                    ++op.completions;
                    op.ec = ec;
                    op.greeting = std::move(g);
                }));
            break;
        }
        case do_close:
            client_->close();
            break;
        case let_time_pass:
            if (waits_++ < 2)
                std::this_thread::sleep_for(1ms);
            break;
        case action_count:
            break;
        }
    }

    operation& start(op_kind kind) {
        ops_.push_back(std::make_unique<operation>());
        ops_.back()->kind = kind;
        return *ops_.back();
    }

    void answer(const json::value& id, std::string_view command, bool error) {
        json::object a;
        if (error) {
            a["error"] = {{"class", in_.byte() & 1 ? "GenericError" : "CommandNotFound"},
                          {"desc", "fuzz error " + std::to_string(tag_++)}};
        } else if (command == "human-monitor-command") {
            static constexpr std::array<std::string_view, 3> texts = {"", "Error: no such tag\r\n",
                                                                      "running\r\n"};
            a["return"] = texts[in_.pick(texts.size())];
        } else if (command == "query-commands") {
            json::array list{{{"name", "query-status"}}, {{"name", "stop"}}};
            if (in_.byte() & 1)
                list.push_back({{"name", "snapshot-save"}});
            a["return"] = std::move(list);
        } else {
            a["return"] = {{"tag", tag_++}};
        }
        if (!id.is_null() || (in_.byte() & 1) == 0)
            a["id"] = id;
        send(json::serialize(a) + "\r\n");
    }

    // Writes as qemu would, and decodes the same bytes the way the client will see them.
    void send(std::string_view bytes) {
        if (server_fd_ < 0 || server_shut_ || bytes.empty())
            return;
        std::size_t written = 0;
        for (int tries = 0; written < bytes.size() && tries < 64; ++tries) {
            const auto n = ::send(server_fd_, bytes.data() + written, bytes.size() - written,
                                  MSG_NOSIGNAL | MSG_DONTWAIT);
            if (n > 0) {
                written += static_cast<std::size_t>(n);
            } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
                pump(); // the socket is full: let the client read
            } else {
                break; // the client closed its end
            }
        }
        mirror_.feed(bytes.substr(0, written));
        while (auto r = mirror_.next()) {
            if (r->error)
                mirror_broken_ = true; // the client stops reading here
            if (mirror_broken_)
                continue;
            if (auto* g = std::get_if<qmp::greeting>(&r->msg)) {
                if (!first_greeting_)
                    first_greeting_ = std::move(*g);
            } else if (auto* rep = std::get_if<qmp::reply>(&r->msg)) {
                sent_answers_.push_back({rep->id, false, rep->value});
            } else if (auto* err = std::get_if<qmp::error_reply>(&r->msg)) {
                sent_answers_.push_back(
                    {err->id, true,
                     json::object{{"class", err->error_class}, {"desc", err->description}}});
            } else {
                sent_events_.push_back(std::get<qmp::event>(r->msg));
            }
        }
    }

    void close_server(bool write_half_only) {
        if (server_fd_ < 0)
            return;
        if (write_half_only) {
            ::shutdown(server_fd_, SHUT_WR);
            server_shut_ = true;
        } else {
            ::close(server_fd_);
            server_fd_ = -1;
        }
    }

    // Runs whatever is ready, and reads what the client wrote, until both are quiet.
    void pump() {
        for (int round = 0; round < 64; ++round) {
            io_.restart();
            const auto ran = io_.poll();
            if (ran == 0 && !read_from_client())
                break;
        }
    }

    bool read_from_client() {
        if (server_fd_ < 0)
            return false;
        bool got = false;
        char buffer[4096];
        for (;;) {
            const auto n = ::read(server_fd_, buffer, sizeof buffer);
            if (n <= 0)
                break;
            got = true;
            from_client_.append(buffer, static_cast<std::size_t>(n));
        }
        for (auto nl = from_client_.find('\n'); nl != std::string::npos;
             nl = from_client_.find('\n')) {
            error_code ec;
            const auto command = json::parse(std::string_view(from_client_).substr(0, nl), ec);
            from_client_.erase(0, nl + 1);
            check(!ec && command.is_object(), "the client wrote something that is not JSON");
            const auto& o = command.get_object();
            const auto* name = o.if_contains("execute");
            if (!name)
                name = o.if_contains("exec-oob");
            const auto* id = o.if_contains("id");
            const auto number = id ? qmp::numeric_id(*id) : std::nullopt;
            check(name && name->is_string() && number,
                  "the client wrote a command without name or numeric id");
            check(wire_names_.emplace(*number, std::string(name->get_string())).second,
                  "the client used an id twice");
            read_commands_.emplace_back(*number, std::string(name->get_string()));
        }
        return got;
    }

    void finish() {
        switch (ending_ % 4) {
        case 0:
            close_server(false);
            break;
        case 1:
            client_->close();
            break;
        case 2:
            client_.reset();
            break;
        default:
            close_server(true);
            break;
        }
        pump();
        // Everything must complete now: the client learns of the end and fails what is left.
        io_.restart();
        io_.run_for(2s);
        check(io_.stopped(), "work left in the io_context after the conversation ended");
        // Dropping the listeners afterwards wakes no one.
        for (auto& slot : listeners_)
            slot.listener.reset();
        io_.restart();
        io_.run_for(2s);
        check(io_.stopped(), "work left after dropping the listeners");
    }

    bool justified(const operation& op, bool is_error) const {
        for (const auto& a : sent_answers_) {
            if (a.is_error != is_error || a.value != op.value)
                continue;
            if (a.id.is_null())
                return true; // qemu could not parse a command: the oldest in-band one gets it
            if (auto n = qmp::numeric_id(a.id)) {
                auto it = wire_names_.find(*n);
                if (it != wire_names_.end() && it->second == op.name)
                    return true;
            }
        }
        return false;
    }

    void check_listener_event(listener_slot& slot, const qmp::event& e) {
        while (slot.cursor < sent_events_.size()) {
            const auto& sent = sent_events_[slot.cursor++];
            const bool wanted =
                slot.names.empty() ||
                std::find(slot.names.begin(), slot.names.end(), sent.name) != slot.names.end();
            if (wanted && sent.name == e.name && sent.data == e.data && sent.seconds == e.seconds)
                return;
        }
        check(false, "a listener handed out an event that was not sent, or out of order");
    }

    // QMPKIT_FUZZ_TRACE=1 prints how each operation ended, to read what an input does.
    void trace() const {
        static const bool on = std::getenv("QMPKIT_FUZZ_TRACE") != nullptr;
        if (!on)
            return;
        static constexpr const char* kinds[] = {"handshake", "execute", "hmp", "has_command",
                                                "wait_event"};
        for (const auto& op : ops_)
            std::fprintf(stderr, "%s %s: %d completion(s), %s %s\n",
                         kinds[static_cast<int>(op->kind)], op->name.c_str(), op->completions,
                         op->ec ? op->ec.message().c_str() : "ok",
                         json::serialize(op->value).substr(0, 100).c_str());
    }

    void check_outcomes() {
        trace();
        for (const auto& op_ptr : ops_) {
            const auto& op = *op_ptr;
            check(op.completions == 1, "an operation did not complete exactly once");
            switch (op.kind) {
            case op_kind::execute:
                if (!op.ec)
                    check(justified(op, false), "a command succeeded with a value never sent");
                else if (op.ec == qmp::errc::command_failed)
                    check(justified(op, true), "a command failed with an error never sent");
                else
                    check(is_qmp_error(op.ec), "a command failed with a foreign error code");
                break;
            case op_kind::hmp:
                check(!op.ec || is_qmp_error(op.ec), "hmp failed with a foreign error code");
                if (op.ec == qmp::errc::hmp_error)
                    check(op.text.rfind("Error:", 0) == 0, "hmp_error without \"Error:\"");
                break;
            case op_kind::has_command:
                check(!op.ec || is_qmp_error(op.ec), "has_command: a foreign error code");
                break;
            case op_kind::handshake:
                if (!op.ec) {
                    check(first_greeting_.has_value(), "a handshake without greeting succeeded");
                    check(op.greeting.capabilities == first_greeting_->capabilities &&
                              op.greeting.version == first_greeting_->version,
                          "a handshake reported another greeting than the first one");
                } else {
                    check(is_qmp_error(op.ec) || op.ec == boost::asio::error::already_connected ||
                              op.ec == boost::system::errc::operation_in_progress,
                          "a handshake failed with a foreign error code");
                }
                break;
            case op_kind::wait_event:
                check(!op.ec || is_qmp_error(op.ec) ||
                          op.ec == boost::system::errc::operation_in_progress,
                      "wait_event failed with a foreign error code");
                break;
            }
        }
    }

    two_ended_input& in_;
    asio::io_context io_;
    std::unique_ptr<qmp::async_client> client_;
    int server_fd_ = -1;
    bool server_shut_ = false;
    std::uint8_t ending_ = 0;
    int waits_ = 0;
    std::int64_t tag_ = 0;

    std::vector<std::unique_ptr<operation>> ops_;
    std::vector<listener_slot> listeners_;

    std::string from_client_;
    std::vector<std::pair<std::uint64_t, std::string>> read_commands_;
    std::map<std::uint64_t, std::string> wire_names_;

    qmp::decoder mirror_;
    bool mirror_broken_ = false;
    std::optional<qmp::greeting> first_greeting_;
    std::vector<sent_answer> sent_answers_;
    std::vector<qmp::event> sent_events_;
};

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    two_ended_input in(data, size);
    harness h(in);
    h.run();
    return 0;
}
