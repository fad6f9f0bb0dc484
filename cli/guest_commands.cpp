// shell (the tiny guest's command channel), console (the serial console, live or its log),
// exec, guest-ping and cp (the guest agent), ssh (cloud_init's key and the forwarded port 22)

#include "command_arguments.hpp"
#include "context.hpp"
#include "exit_codes.hpp"
#include "vm_lookup.hpp"

#include <qmpkit/launcher/definition_loader.hpp>
#include <qmpkit/launcher/error.hpp>
#include <qmpkit/launcher/guest_files.hpp>
#include <qmpkit/launcher/guest_shell.hpp>
#include <qmpkit/launcher/guest_ssh.hpp>
#include <qmpkit/launcher/runtime_info.hpp>
#include <qmpkit/launcher/subprocess.hpp>
#include <qmpkit/launcher/vm_agent.hpp>
#include <qmpkit/launcher/vm_lock.hpp>

#include <boost/json.hpp>
#include <spdlog/logger.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <optional>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <termios.h>
#include <unistd.h>

namespace qmpkit::cli {
namespace {

struct shell_options {
    std::string vm;
    std::vector<std::string> command;
    double timeout = 60;
};

int run_shell(const context& ctx, const shell_options& o) {
    auto dir = find_running_vm(ctx, o.vm);
    if (!std::filesystem::exists(dir.shell_socket()))
        throw launcher::error("VM '" + o.vm +
                              "' has no command channel (set command_channel: true in its "
                              "definition and restart it)");
    // A command in the guest is an operation on the VM like any other: take the VM's lock (the
    // channel takes the guest's).
    auto lock =
        launcher::vm_lock::acquire(dir.lock_file(), "running a guest command", ctx.lock_wait());
    std::string line;
    for (const auto& word : o.command)
        line += (line.empty() ? "" : " ") + word;
    launcher::guest_shell shell(dir, ctx.lock_wait());
    auto result = shell.run(line, milliseconds_of(o.timeout));
    if (ctx.json) {
        std::cout << boost::json::serialize(boost::json::object{{"exit_code", result.exit_code},
                                                                {"output", result.output}})
                  << "\n";
    } else {
        std::cout << result.output;
    }
    return result.exit_code;
}

// The guest agent of a VM, with the VM's lock held while it is in use (a command through the
// agent is an operation on the VM like any other), and the agent's own lock (open_guest_agent).
struct agent_session {
    launcher::vm_lock lock;
    launcher::guest_agent_session guest;
};

agent_session open_agent(const context& ctx, const std::string& vm, std::string_view purpose,
                         double answer_within) {
    auto dir = find_vm(ctx, vm);
    auto def = launcher::load_definition(dir.definition_copy());
    auto lock = launcher::vm_lock::acquire(dir.lock_file(), purpose, ctx.lock_wait());
    qmp::guest_agent_options options;
    options.sync_timeout = milliseconds_of(answer_within);
    options.logger = ctx.logger;
    auto session = launcher::open_guest_agent(dir, def, std::move(options),
                                              launcher::lock_guest(dir, ctx.lock_wait()));
    return {std::move(lock), std::move(session)};
}

struct exec_options {
    std::string vm;
    std::vector<std::string> command;
    std::vector<std::string> env;
    double timeout = 60;
    double agent_timeout = 5;
};

int run_exec(const context& ctx, const exec_options& o) {
    auto session =
        open_agent(ctx, o.vm, "running a command through the guest agent", o.agent_timeout);
    qmp::guest_exec_request request;
    request.path = o.command.front();
    request.args.assign(o.command.begin() + 1, o.command.end());
    request.env = o.env;
    const auto status = session.guest.agent.exec(request, milliseconds_of(o.timeout));
    // Like a shell: 128 + the signal that ended it.
    const int code = status.exit_code ? *status.exit_code : 128 + status.signal.value_or(0);
    if (ctx.json) {
        boost::json::object out{
            {"exit_code", code}, {"stdout", status.out}, {"stderr", status.err}};
        if (status.signal)
            out["signal"] = *status.signal;
        std::cout << boost::json::serialize(out) << "\n";
        return code;
    }
    std::cout << status.out << std::flush;
    std::cerr << status.err;
    if (status.out_truncated || status.err_truncated)
        std::cerr << "qmpkit: warning: the guest agent truncated the command's output\n";
    if (status.signal)
        std::cerr << "qmpkit: `" << request.path << "` was killed by signal " << *status.signal
                  << "\n";
    return code;
}

int run_guest_ping(const context& ctx, const std::string& vm, double timeout) {
    auto session = open_agent(ctx, vm, "pinging the guest agent", timeout);
    const auto start = std::chrono::steady_clock::now();
    session.guest.agent.ping(milliseconds_of(timeout));
    const auto took = std::chrono::duration_cast<std::chrono::milliseconds>(
                          std::chrono::steady_clock::now() - start)
                          .count();
    const auto info = session.guest.agent.info();
    if (ctx.json)
        std::cout << boost::json::serialize(boost::json::object{
                         {"vm", vm}, {"version", info.version}, {"milliseconds", took}})
                  << "\n";
    else
        std::cout << "VM " << vm << ": the guest agent answered in " << took << " ms (qemu-ga "
                  << info.version << ")\n";
    return exit_code::ok;
}

struct ssh_options {
    std::string vm;
    std::string user;
    std::vector<std::string> command;
    double wait = 0;
};

// ssh replaces this process, so the terminal, signals and the exit code are ssh's own.
int run_ssh(const context& ctx, const ssh_options& o) {
    auto dir = find_running_vm(ctx, o.vm);
    if (o.wait > 0)
        launcher::wait_for_ssh(dir, milliseconds_of(o.wait));
    const auto argv = launcher::ssh_command(dir, {o.user, o.command});
    if (ctx.logger)
        ctx.logger->debug("running {}", launcher::describe(argv));
    std::vector<char*> args;
    for (const auto& a : argv)
        args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    std::cout.flush();
    ::execvp(args[0], args.data());
    throw launcher::error(launcher::error_kind::program_not_found,
                          std::string("cannot run ssh: ") + std::strerror(errno) +
                              " (install Debian's openssh-client package)");
}

struct copy_options {
    std::string from;
    std::string to;
    double agent_timeout = 5;
};

// "VM:PATH" names a guest file; a path starting with '/' or '.', or without ':', a host file.
std::optional<std::pair<std::string, std::string>> guest_side(const std::string& arg) {
    const auto colon = arg.find(':');
    if (arg.starts_with('/') || arg.starts_with('.') || colon == std::string::npos || colon == 0)
        return std::nullopt;
    return std::pair{arg.substr(0, colon), arg.substr(colon + 1)};
}

int run_copy(const context& ctx, const copy_options& o) {
    const auto from = guest_side(o.from);
    const auto to = guest_side(o.to);
    if (bool(from) == bool(to))
        throw std::invalid_argument("exactly one of SOURCE and DESTINATION must be VM:PATH (a "
                                    "host path with ':' in it can be written ./" +
                                    (from ? o.from : o.to) + ")");
    const auto& vm = from ? from->first : to->first;
    auto session = open_agent(ctx, vm, "copying a file through the guest agent", o.agent_timeout);
    const bool show = !ctx.json && ::isatty(STDERR_FILENO);
    auto last = std::chrono::steady_clock::time_point{};
    launcher::copy_progress progress = [&](std::uint64_t done, std::uint64_t total) {
        const auto now = std::chrono::steady_clock::now();
        if (!show || (now - last < std::chrono::milliseconds(200) && done != total))
            return;
        last = now;
        std::fprintf(stderr, "\r%.1f of %.1f MiB (%d%%)", done / 1048576.0, total / 1048576.0,
                     total ? static_cast<int>(done * 100 / total) : 100);
    };
    const auto bytes =
        from ? launcher::copy_from_guest(session.guest.agent, from->second, o.to, progress)
             : launcher::copy_to_guest(session.guest.agent, o.from, to->second, progress);
    if (show)
        std::fprintf(stderr, "\n");
    if (ctx.json)
        std::cout << boost::json::serialize(
                         boost::json::object{{"from", o.from}, {"to", o.to}, {"bytes", bytes}})
                  << "\n";
    return exit_code::ok;
}

// A live console: bytes both ways until Ctrl-] (like virsh console).
int run_console(const std::filesystem::path& socket) {
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::strncpy(addr.sun_path, socket.c_str(), sizeof addr.sun_path - 1);
    const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0)
        throw launcher::error("cannot connect to the console " + socket.string() + ": " +
                              std::strerror(errno));

    termios saved{};
    const bool tty = ::isatty(STDIN_FILENO);
    if (tty) {
        ::tcgetattr(STDIN_FILENO, &saved);
        termios raw = saved;
        ::cfmakeraw(&raw);
        ::tcsetattr(STDIN_FILENO, TCSANOW, &raw);
        std::cerr << "Connected to the console; escape character is ^]\r\n";
    }
    pollfd fds[2] = {{STDIN_FILENO, POLLIN, 0}, {fd, POLLIN, 0}};
    char buf[4096];
    bool open = true;
    while (open) {
        if (::poll(fds, 2, -1) < 0 && errno != EINTR)
            break;
        if (fds[0].revents & (POLLIN | POLLHUP)) {
            const auto n = ::read(STDIN_FILENO, buf, sizeof buf);
            if (n <= 0)
                break;
            const auto len = static_cast<std::size_t>(n);
            if (tty && std::memchr(buf, 0x1d, len))
                break;
            if (::send(fd, buf, len, MSG_NOSIGNAL) < 0)
                break;
        }
        if (fds[1].revents & (POLLIN | POLLHUP)) {
            const auto n = ::recv(fd, buf, sizeof buf, 0);
            if (n <= 0)
                open = false;
            else if (::write(STDOUT_FILENO, buf, static_cast<std::size_t>(n)) < 0)
                break;
        }
    }
    if (tty) {
        ::tcsetattr(STDIN_FILENO, TCSANOW, &saved);
        std::cerr << "\n";
    }
    ::close(fd);
    return exit_code::ok;
}

} // namespace

void register_guest_commands(CLI::App& app, context& ctx) {
    auto s = std::make_shared<shell_options>();
    auto* shell = app.add_subcommand(
        "shell",
        "Run a command in the guest through its command channel; exits with its exit code");
    shell->add_option("vm", s->vm, "VM name")->required();
    shell->add_option("command", s->command, "command line (after --)")->required();
    shell->add_option("--timeout", s->timeout, "seconds")
        ->capture_default_str()
        ->check(non_negative_number());
    shell->callback([&ctx, s] { ctx.action = [&ctx, s] { return run_shell(ctx, *s); }; });

    auto x = std::make_shared<exec_options>();
    auto* exec = app.add_subcommand(
        "exec", "Run a program in the guest through its guest agent (no shell: exec VM -- sh -c "
                "'...' for one); prints its output and exits with its exit code");
    exec->add_option("vm", x->vm, "VM name")->required();
    exec->add_option("command", x->command, "program and arguments (after --)")->required();
    exec->add_option("--env", x->env, "NAME=VALUE for the program's environment (repeatable)")
        ->allow_extra_args(false);
    exec->add_option("--timeout", x->timeout, "seconds the program may run")
        ->capture_default_str()
        ->check(non_negative_number());
    exec->add_option("--agent-timeout", x->agent_timeout,
                     "seconds to wait for the guest agent to answer at all")
        ->capture_default_str()
        ->check(non_negative_number());
    exec->callback([&ctx, x] { ctx.action = [&ctx, x] { return run_exec(ctx, *x); }; });

    auto p = std::make_shared<std::pair<std::string, double>>("", 5);
    auto* ping = app.add_subcommand("guest-ping", "Check that the guest agent answers");
    ping->add_option("vm", p->first, "VM name")->required();
    ping->add_option("--timeout", p->second, "seconds to wait for an answer")
        ->capture_default_str()
        ->check(non_negative_number());
    ping->callback(
        [&ctx, p] { ctx.action = [&ctx, p] { return run_guest_ping(ctx, p->first, p->second); }; });

    auto h = std::make_shared<ssh_options>();
    auto* ssh = app.add_subcommand(
        "ssh", "Log in to the guest with ssh, or run a command there (after --), as the "
               "cloud_init user with the VM's own key; exits with ssh's exit code");
    ssh->add_option("vm", h->vm, "VM name")->required();
    ssh->add_option("command", h->command, "command and arguments (after --)");
    ssh->add_option("-l,--user", h->user, "guest user (default: cloud_init.user)");
    ssh->add_option("--wait", h->wait,
                    "seconds to wait for the guest's sshd to answer (default: no wait)")
        ->check(non_negative_number());
    ssh->callback([&ctx, h] { ctx.action = [&ctx, h] { return run_ssh(ctx, *h); }; });

    auto f = std::make_shared<copy_options>();
    auto* cp = app.add_subcommand(
        "cp", "Copy a file between the host and the guest through the guest agent: "
              "cp FILE VM:PATH, or cp VM:PATH FILE (mode bits kept; a directory takes the "
              "file under its own name)");
    cp->add_option("source", f->from, "host file, or VM:PATH")->required();
    cp->add_option("destination", f->to, "VM:PATH, or host file or directory")->required();
    cp->add_option("--agent-timeout", f->agent_timeout,
                   "seconds to wait for the guest agent to answer at all")
        ->capture_default_str()
        ->check(non_negative_number());
    cp->callback([&ctx, f] { ctx.action = [&ctx, f] { return run_copy(ctx, *f); }; });

    auto c = std::make_shared<std::tuple<std::string, bool, std::size_t>>("", false, 50);
    auto* console = app.add_subcommand(
        "console", "Attach to the serial console (Ctrl-] leaves), or print its log");
    console->add_option("vm", std::get<0>(*c), "VM name")->required();
    console->add_flag("--log", std::get<1>(*c), "print the end of the console log instead");
    console->add_option("--lines", std::get<2>(*c), "lines of log to print")
        ->capture_default_str()
        ->check(non_negative_number());
    console->callback([&ctx, c] {
        ctx.action = [&ctx, c] {
            if (std::get<1>(*c)) {
                const auto log = find_vm(ctx, std::get<0>(*c)).serial_log();
                for (const auto& line : launcher::tail_lines(log, std::get<2>(*c)))
                    std::cout << line << "\n";
                return exit_code::ok;
            }
            return run_console(find_running_vm(ctx, std::get<0>(*c)).console_socket());
        };
    });
}

} // namespace qmpkit::cli
