#include "host/environment.hpp"
#include "host/pidfd.hpp"

#include <qmpkit/launcher/error.hpp>
#include <qmpkit/launcher/qemu_process.hpp>

#include <cerrno>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <fstream>
#include <poll.h>
#include <sstream>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <vector>

namespace qmpkit::launcher {

std::string exit_status::describe() const {
    if (signal != 0)
        return std::string("killed by signal ") + std::to_string(signal) + " (" +
               ::strsignal(signal) + ")";
    return "exited with code " + std::to_string(code);
}

exit_status exit_status::from_wait_status(int status) {
    exit_status s;
    if (WIFEXITED(status))
        s.code = WEXITSTATUS(status);
    else if (WIFSIGNALED(status))
        s.signal = WTERMSIG(status);
    return s;
}

qemu_process qemu_process::spawn(const spawn_options& options) {
    if (options.argv.empty())
        throw error("internal: empty qemu command line");

    // Everything the child touches is prepared before fork: after it, only async-signal-safe
    // calls are allowed.
    std::vector<std::string> args = options.argv;
    auto argv = detail::c_strings(args);
    auto env = detail::build_environment(options.env);
    auto envp = detail::c_strings(env);

    const int log_fd =
        ::open(options.log_file.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    if (log_fd < 0)
        throw error("cannot open " + options.log_file.string() + ": " + std::strerror(errno));
    const int null_fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
    int exec_error[2];
    if (::pipe2(exec_error, O_CLOEXEC) != 0) {
        ::close(log_fd);
        ::close(null_fd);
        throw error(std::string("pipe: ") + std::strerror(errno));
    }
    const pid_t parent = ::getpid();

    const pid_t pid = ::fork();
    if (pid < 0) {
        const int err = errno;
        ::close(log_fd);
        ::close(null_fd);
        ::close(exec_error[0]);
        ::close(exec_error[1]);
        throw error(std::string("fork: ") + std::strerror(err));
    }
    if (pid == 0) {
        ::setpgid(0, 0);
        // What qemu creates (console and shell sockets, logs) is for the VM's owner only.
        ::umask(0077);
        ::prctl(PR_SET_PDEATHSIG, SIGTERM);
        if (::getppid() != parent) // the parent died before prctl took effect
            ::_exit(127);
        ::dup2(null_fd, STDIN_FILENO);
        ::dup2(log_fd, STDOUT_FILENO);
        ::dup2(log_fd, STDERR_FILENO);
        // Nothing of ours leaks into qemu but what it is meant to have.
        ::close_range(3, ~0U, CLOSE_RANGE_CLOEXEC);
        for (int fd : options.inherit_fds)
            ::fcntl(fd, F_SETFD, 0);
        sigset_t none;
        sigemptyset(&none);
        ::sigprocmask(SIG_SETMASK, &none, nullptr);
        ::signal(SIGPIPE, SIG_DFL);
        ::execvpe(argv[0], argv.data(), envp.data());
        const int err = errno;
        (void)!::write(exec_error[1], &err, sizeof err);
        ::_exit(127);
    }

    ::close(log_fd);
    ::close(null_fd);
    ::close(exec_error[1]);
    int err = 0;
    const auto n = ::read(exec_error[0], &err, sizeof err);
    ::close(exec_error[0]);
    if (n == static_cast<ssize_t>(sizeof err)) {
        ::waitpid(pid, nullptr, 0);
        throw error("cannot execute " + args[0] + ": " + std::strerror(err) +
                    (err == ENOENT ? " (install qemu-system-x86: scripts/setup)" : ""));
    }
    const int pidfd = detail::open_pidfd(pid);
    return qemu_process(pid, pidfd);
}

qemu_process::qemu_process(qemu_process&& other) noexcept
    : pid_(other.pid_)
    , pidfd_(other.pidfd_)
    , status_(other.status_) {
    other.pid_ = -1;
    other.pidfd_ = -1;
}

qemu_process& qemu_process::operator=(qemu_process&& other) noexcept {
    if (this != &other) {
        if (pidfd_ >= 0)
            ::close(pidfd_);
        pid_ = other.pid_;
        pidfd_ = other.pidfd_;
        status_ = other.status_;
        other.pid_ = -1;
        other.pidfd_ = -1;
    }
    return *this;
}

qemu_process::~qemu_process() {
    if (pid_ > 0)
        try_wait();
    if (pidfd_ >= 0)
        ::close(pidfd_);
}

std::optional<exit_status> qemu_process::try_wait() {
    if (status_ || pid_ <= 0)
        return status_;
    int status = 0;
    if (::waitpid(pid_, &status, WNOHANG) == pid_)
        status_ = exit_status::from_wait_status(status);
    return status_;
}

std::optional<exit_status> qemu_process::wait_for(std::chrono::milliseconds timeout) {
    if (auto s = try_wait())
        return s;
    if (pidfd_ >= 0) {
        pollfd p{pidfd_, POLLIN, 0};
        const int ms = timeout.count() < 0 ? -1 : static_cast<int>(timeout.count());
        while (::poll(&p, 1, ms) < 0 && errno == EINTR) {
        }
        return try_wait();
    }
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (timeout.count() < 0 || std::chrono::steady_clock::now() < deadline) {
        if (auto s = try_wait())
            return s;
        ::usleep(5000);
    }
    return try_wait();
}

void qemu_process::kill(int signal) {
    if (pid_ > 0 && !try_wait())
        ::kill(pid_, signal);
}

bool qemu_process::running() {
    return pid_ > 0 && !try_wait();
}

namespace {

// The fields of /proc/PID/stat after the command name (state first, flags seventh); empty once
// the process has gone. The name is skipped by its last ')': it may hold spaces and parentheses.
std::vector<std::string> stat_fields(pid_t pid) {
    std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
    std::string text;
    if (!std::getline(stat, text))
        return {};
    const auto close = text.rfind(')');
    if (close == std::string::npos)
        return {};
    std::istringstream in(text.substr(close + 1));
    std::vector<std::string> fields;
    for (std::string f; in >> f;)
        fields.push_back(std::move(f));
    return fields;
}

// kill(pid, 0) says yes to zombies, which linger here until init reaps them: the state field
// says whether it still runs.
bool alive_by_stat(const std::vector<std::string>& fields) {
    return !fields.empty() && fields[0] != "Z" && fields[0] != "X";
}

} // namespace

bool process_alive(pid_t pid) {
    return pid > 0 && alive_by_stat(stat_fields(pid));
}

namespace {

std::string read_command_line(pid_t pid) {
    std::string args;
    const int fd =
        ::open(("/proc/" + std::to_string(pid) + "/cmdline").c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return args;
    char buffer[4096];
    for (;;) {
        const auto n = ::read(fd, buffer, sizeof buffer);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            if (n < 0)
                args.clear(); // gone mid-read: it no longer runs what it ran
            break;
        }
        args.append(buffer, static_cast<std::size_t>(n));
    }
    ::close(fd);
    return args;
}

} // namespace

std::string process_command_line(pid_t pid) {
    if (pid <= 0)
        return {};
    // A process spawned with vfork semantics (posix_spawn) lets its parent run on once exec has
    // switched memory, a moment before the kernel points at the new argv: read then, a live
    // process has an empty command line. Under load that moment lasts long enough to see it.
    for (int attempt = 0;; ++attempt) {
        auto args = read_command_line(pid);
        if (!args.empty() || attempt == 100)
            return args;
        // Gone, or a kernel thread (PF_KTHREAD in the flags), which has no argv at all.
        constexpr unsigned long pf_kthread = 0x00200000;
        const auto fields = stat_fields(pid);
        if (!alive_by_stat(fields) || fields.size() < 7 ||
            (std::strtoul(fields[6].c_str(), nullptr, 10) & pf_kthread) != 0)
            return args;
        ::usleep(1000);
    }
}

bool wait_for_exit(pid_t pid, std::chrono::milliseconds timeout) {
    const int fd = detail::open_pidfd(pid);
    if (fd < 0)
        return !process_alive(pid);
    pollfd p{fd, POLLIN, 0};
    const int ready = ::poll(&p, 1, static_cast<int>(timeout.count()));
    ::close(fd);
    return ready > 0 || !process_alive(pid);
}

} // namespace qmpkit::launcher
