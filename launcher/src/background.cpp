#include <qmpkit/launcher/error.hpp>
#include <qmpkit/launcher/launch.hpp>
#include <qmpkit/launcher/supervisor.hpp>

#include <cerrno>
#include <cstring>
#include <ctime>
#include <fcntl.h>
#include <iostream>
#include <linux/close_range.h>
#include <unistd.h>

namespace qmpkit::launcher {
namespace {

std::string timestamp() {
    std::time_t now = std::time(nullptr);
    char text[32];
    std::strftime(text, sizeof text, "%Y-%m-%d %H:%M:%S", std::localtime(&now));
    return text;
}

[[noreturn]] void become_supervisor(const vm_definition& definition, const launch_options& options,
                                    const supervise_options& supervision,
                                    const state_directory& dir, int report) {
    ::setsid();
    // Nothing of the caller's may live on in the supervisor: an inherited lock descriptor would
    // hold the VM's lock for as long as the VM runs.
    if (report > 3)
        ::close_range(3, static_cast<unsigned>(report) - 1, 0);
    ::close_range(static_cast<unsigned>(report) + 1, ~0U, 0);
    const int log =
        ::open(dir.supervisor_log().c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    const int null = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
    ::dup2(null, STDIN_FILENO);
    ::dup2(log, STDOUT_FILENO);
    ::dup2(log, STDERR_FILENO);
    block_termination_signals();
    int code = 1;
    try {
        auto vm = launch(definition, options);
        (void)!::write(report, "OK", 2);
        ::close(report);
        std::cerr << timestamp() << " supervising qemu pid " << vm.process().pid() << std::endl;
        auto logged = supervision;
        logged.report = [](const std::string& text) {
            std::cerr << timestamp() << " " << text << std::endl;
        };
        const auto record = supervise(vm, logged);
        code = record.state == "crashed" ? 5 : record.forced ? 6 : 0;
    } catch (const std::exception& e) {
        const std::string failure = std::string("ERR") + e.what();
        (void)!::write(report, failure.data(), failure.size());
        std::cerr << timestamp() << " " << e.what() << std::endl;
    }
    std::cout.flush();
    std::cerr.flush();
    ::_exit(code);
}

} // namespace

void start_in_background(const vm_definition& definition, const launch_options& options,
                         const supervise_options& supervision) {
    const auto root = options.state_root.empty() ? default_state_root() : options.state_root;
    state_directory dir(root, definition.name);
    dir.create();

    int report[2];
    if (::pipe2(report, O_CLOEXEC) != 0)
        throw error(std::string("pipe: ") + std::strerror(errno));
    std::cout.flush();
    std::cerr.flush();
    const pid_t child = ::fork();
    if (child < 0)
        throw error(std::string("fork: ") + std::strerror(errno));
    if (child == 0) {
        ::close(report[0]);
        become_supervisor(definition, options, supervision, dir, report[1]);
    }
    ::close(report[1]);
    std::string answer;
    char chunk[4096];
    for (;;) {
        const auto n = ::read(report[0], chunk, sizeof chunk);
        if (n > 0)
            answer.append(chunk, static_cast<std::size_t>(n));
        else if (n == 0 || errno != EINTR)
            break;
    }
    ::close(report[0]);
    if (answer.rfind("OK", 0) != 0)
        throw error(answer.size() > 3
                        ? answer.substr(3)
                        : "the VM's supervisor failed (see " + dir.supervisor_log().string() + ")");
}

} // namespace qmpkit::launcher
