// shell (the tiny guest's command channel), console (the serial console, live or its log)

#include "context.hpp"
#include "exit_codes.hpp"
#include "vm_lookup.hpp"

#include <qmpkit/launcher/error.hpp>
#include <qmpkit/launcher/guest_shell.hpp>
#include <qmpkit/launcher/runtime_info.hpp>
#include <qmpkit/launcher/vm_lock.hpp>

#include <boost/json.hpp>

#include <cerrno>
#include <cstring>
#include <iostream>
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
    auto dir = find_vm(ctx, o.vm);
    if (!std::filesystem::exists(dir.shell_socket()))
        throw launcher::error("VM '" + o.vm +
                              "' has no command channel (command_channel: true) or is not running");
    // The channel serves one client at a time, like QMP: take the VM's lock.
    auto lock = launcher::vm_lock::acquire(
        dir.lock_file(), "running a guest command",
        std::chrono::milliseconds(static_cast<long>(ctx.lock_timeout * 1000)));
    std::string line;
    for (const auto& word : o.command)
        line += (line.empty() ? "" : " ") + word;
    launcher::guest_shell shell(dir.shell_socket());
    auto result = shell.run(line, std::chrono::milliseconds(static_cast<long>(o.timeout * 1000)));
    if (ctx.json) {
        std::cout << boost::json::serialize(boost::json::object{{"exit_code", result.exit_code},
                                                                {"output", result.output}})
                  << "\n";
    } else {
        std::cout << result.output;
    }
    return result.exit_code;
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
    shell->add_option("--timeout", s->timeout, "seconds")->capture_default_str();
    shell->callback([&ctx, s] { ctx.action = [&ctx, s] { return run_shell(ctx, *s); }; });

    auto c = std::make_shared<std::tuple<std::string, bool, std::size_t>>("", false, 50);
    auto* console = app.add_subcommand(
        "console", "Attach to the serial console (Ctrl-] leaves), or print its log");
    console->add_option("vm", std::get<0>(*c), "VM name")->required();
    console->add_flag("--log", std::get<1>(*c), "print the end of the console log instead");
    console->add_option("--lines", std::get<2>(*c), "lines of log to print")->capture_default_str();
    console->callback([&ctx, c] {
        ctx.action = [&ctx, c] {
            auto dir = find_vm(ctx, std::get<0>(*c));
            if (std::get<1>(*c)) {
                for (const auto& line : launcher::tail_lines(dir.serial_log(), std::get<2>(*c)))
                    std::cout << line << "\n";
                return exit_code::ok;
            }
            return run_console(dir.console_socket());
        };
    });
}

} // namespace qmpkit::cli
