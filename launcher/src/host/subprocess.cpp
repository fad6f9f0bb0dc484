#include "host/environment.hpp"

#include <qmpkit/launcher/error.hpp>
#include <qmpkit/launcher/subprocess.hpp>

#include <algorithm>
#include <array>
#include <cerrno>
#include <csignal>
#include <cstring>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <spawn.h>
#include <string_view>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

namespace qmpkit::launcher {

namespace {

using detail::build_environment;
using detail::c_strings;
using clock = std::chrono::steady_clock;

[[noreturn]] void throw_errno(std::string_view what, int err) {
    throw error(std::string(what) + ": " + std::strerror(err));
}

class unique_fd {
public:
    unique_fd() = default;
    explicit unique_fd(int fd)
        : fd_(fd) {}
    unique_fd(unique_fd&& other) noexcept
        : fd_(std::exchange(other.fd_, -1)) {}
    unique_fd& operator=(unique_fd&& other) noexcept {
        reset(std::exchange(other.fd_, -1));
        return *this;
    }
    ~unique_fd() { reset(); }

    int get() const noexcept { return fd_; }
    explicit operator bool() const noexcept { return fd_ >= 0; }
    void reset(int fd = -1) noexcept {
        if (fd_ >= 0)
            ::close(fd_);
        fd_ = fd;
    }

private:
    int fd_ = -1;
};

// A pipe end that landed on 0, 1 or 2 (this process had closed its own stdio) would be
// clobbered by the child's dup2 sequence; move it out of the way.
unique_fd above_stdio(unique_fd fd) {
    if (fd.get() > STDERR_FILENO)
        return fd;
    int moved = ::fcntl(fd.get(), F_DUPFD_CLOEXEC, STDERR_FILENO + 1);
    if (moved < 0)
        throw_errno("fcntl(F_DUPFD_CLOEXEC)", errno);
    return unique_fd(moved);
}

struct pipe_ends {
    unique_fd read;
    unique_fd write;
};

// Close-on-exec from birth, so a concurrent spawn elsewhere in the process cannot inherit it.
pipe_ends make_pipe() {
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC) != 0)
        throw_errno("pipe2", errno);
    pipe_ends ends{unique_fd(fds[0]), unique_fd(fds[1])};
    ends.read = above_stdio(std::move(ends.read));
    ends.write = above_stdio(std::move(ends.write));
    return ends;
}

void set_nonblocking(int fd) {
    int flags = ::fcntl(fd, F_GETFL);
    if (flags < 0 || ::fcntl(fd, F_SETFL, flags | O_NONBLOCK) != 0)
        throw_errno("fcntl(O_NONBLOCK)", errno);
}

class spawn_file_actions {
public:
    spawn_file_actions() {
        if (int rc = ::posix_spawn_file_actions_init(&actions_); rc != 0)
            throw_errno("posix_spawn_file_actions_init", rc);
    }
    ~spawn_file_actions() { ::posix_spawn_file_actions_destroy(&actions_); }
    spawn_file_actions(const spawn_file_actions&) = delete;
    spawn_file_actions& operator=(const spawn_file_actions&) = delete;

    void dup2(int fd, int target) {
        check(::posix_spawn_file_actions_adddup2(&actions_, fd, target));
    }
    void open(int target, const char* path, int flags) {
        check(::posix_spawn_file_actions_addopen(&actions_, target, path, flags, 0));
    }
    // O_CLOEXEC covers the fds this file opens; this also covers fds that other code in the
    // process opened without it, which would otherwise leak into every child.
    void close_from(int lowest) {
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 34))
        check(::posix_spawn_file_actions_addclosefrom_np(&actions_, lowest));
#else
        (void)lowest;
#endif
    }
    const posix_spawn_file_actions_t* get() const noexcept {
        return &actions_;
    }

private:
    static void check(int rc) {
        if (rc != 0)
            throw_errno("posix_spawn_file_actions", rc);
    }
    posix_spawn_file_actions_t actions_;
};

class spawn_attributes {
public:
    // The child starts with an empty signal mask and SIGPIPE at its default, whatever this
    // process blocks or ignores: an ignored SIGPIPE would survive exec and change how a child
    // writing into a closed pipe behaves.
    spawn_attributes() {
        if (int rc = ::posix_spawnattr_init(&attr_); rc != 0)
            throw_errno("posix_spawnattr_init", rc);
        sigset_t empty;
        sigset_t defaults;
        ::sigemptyset(&empty);
        ::sigemptyset(&defaults);
        ::sigaddset(&defaults, SIGPIPE);
        int rc = ::posix_spawnattr_setsigmask(&attr_, &empty);
        if (rc == 0)
            rc = ::posix_spawnattr_setsigdefault(&attr_, &defaults);
        if (rc == 0)
            rc = ::posix_spawnattr_setflags(&attr_, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
        if (rc != 0) {
            ::posix_spawnattr_destroy(&attr_);
            throw_errno("posix_spawnattr", rc);
        }
    }
    ~spawn_attributes() { ::posix_spawnattr_destroy(&attr_); }
    spawn_attributes(const spawn_attributes&) = delete;
    spawn_attributes& operator=(const spawn_attributes&) = delete;

    const posix_spawnattr_t* get() const noexcept { return &attr_; }

private:
    posix_spawnattr_t attr_;
};

// Writing to the stdin of a child that has exited raises SIGPIPE, which would kill this whole
// process unless the application happens to ignore it. Blocking it in this thread for the
// duration turns it into EPIPE; a SIGPIPE we caused is then taken off the pending set again, so
// it is not delivered later, while one that was pending before is left alone.
class sigpipe_blocker {
public:
    sigpipe_blocker() {
        ::sigemptyset(&pipe_only_);
        ::sigaddset(&pipe_only_, SIGPIPE);
        ::pthread_sigmask(SIG_BLOCK, &pipe_only_, &saved_);
        sigset_t pending;
        ::sigpending(&pending);
        was_pending_ = ::sigismember(&pending, SIGPIPE) == 1;
    }
    ~sigpipe_blocker() {
        if (raised_ && !was_pending_) {
            timespec zero{};
            while (::sigtimedwait(&pipe_only_, nullptr, &zero) < 0 && errno == EINTR) {
            }
        }
        ::pthread_sigmask(SIG_SETMASK, &saved_, nullptr);
    }
    sigpipe_blocker(const sigpipe_blocker&) = delete;
    sigpipe_blocker& operator=(const sigpipe_blocker&) = delete;

    void note_epipe() noexcept { raised_ = true; }

private:
    sigset_t pipe_only_;
    sigset_t saved_;
    bool was_pending_ = false;
    bool raised_ = false;
};

// Kills and reaps the child if run leaves early through an exception, so that no zombie and no
// orphan outlives the call.
class child_reaper {
public:
    explicit child_reaper(pid_t pid)
        : pid_(pid) {}
    ~child_reaper() {
        if (reaped_)
            return;
        ::kill(pid_, SIGKILL);
        while (::waitpid(pid_, nullptr, 0) < 0 && errno == EINTR) {
        }
    }
    child_reaper(const child_reaper&) = delete;
    child_reaper& operator=(const child_reaper&) = delete;

    // Reaps the child if it has exited; true when it has (or someone else reaped it).
    bool try_reap(subprocess_result& result) {
        if (reaped_)
            return true;
        int status = 0;
        pid_t rc;
        do {
            rc = ::waitpid(pid_, &status, WNOHANG);
        } while (rc < 0 && errno == EINTR);
        if (rc == 0)
            return false;
        reaped_ = true;
        if (rc < 0) {
            // ECHILD: another part of the process reaped it (waitpid(-1) or SIGCHLD ignored);
            // its exit status is lost.
            result.exit_code = -1;
        } else if (WIFSIGNALED(status)) {
            result.signal = WTERMSIG(status);
        } else {
            result.exit_code = WEXITSTATUS(status);
        }
        return true;
    }

    void kill() noexcept { ::kill(pid_, SIGKILL); }

private:
    pid_t pid_;
    bool reaped_ = false;
};

unique_fd open_pidfd(pid_t pid) {
#ifdef SYS_pidfd_open
    // Close-on-exec by definition.
    return unique_fd(static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)));
#else
    (void)pid;
    return unique_fd();
#endif
}

// Reads what is there without blocking; false at end of file.
bool drain(int fd, std::string& into) {
    std::array<char, 65536> buffer;
    for (;;) {
        ssize_t n = ::read(fd, buffer.data(), buffer.size());
        if (n > 0) {
            into.append(buffer.data(), static_cast<std::size_t>(n));
            continue;
        }
        if (n == 0)
            return false;
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            return true;
        return false; // EIO and the like: treat as the end of the stream
    }
}

std::string signal_name(int sig) {
    std::string name = "signal " + std::to_string(sig);
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 32))
    if (const char* abbrev = ::sigabbrev_np(sig))
        name += std::string(" (SIG") + abbrev + ")";
#endif
    return name;
}

// The last part of stderr, without its trailing newline: qemu-img puts the reason last.
std::string stderr_excerpt(std::string_view err) {
    constexpr std::size_t limit = 4000;
    while (!err.empty() && (err.back() == '\n' || err.back() == ' ' || err.back() == '\r'))
        err.remove_suffix(1);
    if (err.size() > limit)
        return "..." + std::string(err.substr(err.size() - limit));
    return std::string(err);
}

bool is_shell_safe(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           std::string_view("@%+=:,./_-").find(c) != std::string_view::npos;
}

} // namespace

std::string describe(const std::vector<std::string>& argv) {
    std::string out;
    for (const auto& arg : argv) {
        if (!out.empty())
            out += ' ';
        if (!arg.empty() && std::all_of(arg.begin(), arg.end(), is_shell_safe)) {
            out += arg;
            continue;
        }
        out += '\'';
        for (char c : arg) {
            if (c == '\'')
                out += "'\\''";
            else
                out += c;
        }
        out += '\'';
    }
    return out;
}

subprocess_result run(const std::vector<std::string>& argv, const subprocess_options& options) {
    if (argv.empty() || argv.front().empty())
        throw error(error_kind::invalid_argument, "run: no program given");

    auto out_pipe = make_pipe();
    auto err_pipe = make_pipe();
    std::optional<pipe_ends> in_pipe;
    if (options.input)
        in_pipe = make_pipe();

    spawn_file_actions actions;
    if (in_pipe)
        actions.dup2(in_pipe->read.get(), STDIN_FILENO);
    else
        actions.open(STDIN_FILENO, "/dev/null", O_RDONLY);
    actions.dup2(out_pipe.write.get(), STDOUT_FILENO);
    actions.dup2(err_pipe.write.get(), STDERR_FILENO);
    actions.close_from(STDERR_FILENO + 1);
    spawn_attributes attributes;

    auto args = argv;
    auto env = build_environment(options.env);
    auto c_args = c_strings(args);
    auto c_env = c_strings(env);

    subprocess_result result;
    pid_t pid = -1;
    // glibc reports a failed exec here (it spawns with CLONE_VFORK and waits for the exec), so
    // a missing program never becomes a child to reap.
    if (int rc = ::posix_spawnp(&pid, c_args[0], actions.get(), attributes.get(), c_args.data(),
                                c_env.data());
        rc != 0) {
        result.spawn_error = rc;
        result.exit_code = rc == ENOENT ? 127 : 126;
        result.err = argv.front() + ": " + std::strerror(rc);
        return result;
    }
    child_reaper child(pid);

    // Our copies of the child's ends must go, or we would never see end of file.
    out_pipe.write.reset();
    err_pipe.write.reset();
    unique_fd out_fd = std::move(out_pipe.read);
    unique_fd err_fd = std::move(err_pipe.read);
    unique_fd in_fd;
    if (in_pipe) {
        in_pipe->read.reset();
        in_fd = std::move(in_pipe->write);
    }
    set_nonblocking(out_fd.get());
    set_nonblocking(err_fd.get());
    if (in_fd)
        set_nonblocking(in_fd.get());

    std::string_view input = options.input ? std::string_view(*options.input) : std::string_view{};
    if (in_fd && input.empty())
        in_fd.reset();

    sigpipe_blocker sigpipe;
    unique_fd pidfd = open_pidfd(pid);
    // A plain time point and a flag rather than std::optional: GCC 12 at -O2 falsely warns that
    // the optional's value may be used uninitialized.
    bool has_deadline = options.timeout.has_value();
    const clock::time_point deadline =
        has_deadline ? clock::now() + *options.timeout : clock::time_point{};
    bool exited = false;

    // Until the child has exited and its output is drained. Once it has exited, whatever it
    // wrote is already in the pipes, so a pipe that is still open but empty is held by a
    // grandchild that inherited it: stop there instead of waiting for that one too.
    for (;;) {
        if (!exited)
            exited = child.try_reap(result);
        if (exited)
            in_fd.reset();
        if (exited && !out_fd && !err_fd)
            break;

        int wait_ms = -1;
        if (exited) {
            wait_ms = 0;
        } else {
            if (has_deadline) {
                auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - clock::now());
                if (left.count() <= 0) {
                    child.kill();
                    result.timed_out = true;
                    has_deadline = false;
                    continue;
                }
                wait_ms = static_cast<int>(std::min<long long>(left.count(), 1 << 30));
            }
            // Without a pidfd the only way to notice the exit is to ask now and then.
            if (!pidfd)
                wait_ms = wait_ms < 0 ? 20 : std::min(wait_ms, 20);
        }

        std::array<pollfd, 4> fds{};
        nfds_t count = 0;
        auto watch = [&](const unique_fd& fd, short events) -> pollfd* {
            if (!fd)
                return nullptr;
            fds[count] = pollfd{fd.get(), events, 0};
            return &fds[count++];
        };
        pollfd* out_poll = watch(out_fd, POLLIN);
        pollfd* err_poll = watch(err_fd, POLLIN);
        pollfd* in_poll = watch(in_fd, POLLOUT);
        if (!exited)
            watch(pidfd, POLLIN);

        int n = ::poll(fds.data(), count, wait_ms);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            throw_errno("poll", errno);
        }
        if (n == 0 && exited)
            break;

        if (out_poll && out_poll->revents && !drain(out_fd.get(), result.out))
            out_fd.reset();
        if (err_poll && err_poll->revents && !drain(err_fd.get(), result.err))
            err_fd.reset();
        if (in_poll && in_poll->revents) {
            std::size_t chunk = std::min<std::size_t>(input.size(), 65536);
            ssize_t written = ::write(in_fd.get(), input.data(), chunk);
            if (written > 0) {
                input.remove_prefix(static_cast<std::size_t>(written));
                if (input.empty())
                    in_fd.reset();
            } else if (written < 0 && errno != EINTR && errno != EAGAIN) {
                // EPIPE: the child closed its stdin without reading everything; that is its
                // business, not an error of ours.
                if (errno == EPIPE)
                    sigpipe.note_epipe();
                in_fd.reset();
            }
        }
    }
    return result;
}

subprocess_result run_checked(const std::vector<std::string>& argv,
                              const subprocess_options& options) {
    auto result = run(argv, options);
    if (result.ok())
        return result;

    std::string hint = options.not_found_hint.empty() ? "" : ": " + options.not_found_hint;
    if (result.spawn_error == ENOENT)
        throw error(error_kind::program_not_found, argv.front() + " not found" + hint);
    if (result.spawn_error != 0)
        throw error(error_kind::program_not_found, argv.front() + " cannot be executed (" +
                                                       std::strerror(result.spawn_error) + ")" +
                                                       hint);

    std::string command = describe(argv);
    std::string err = stderr_excerpt(result.err);
    std::string detail = err.empty() ? "" : ": " + err;
    if (result.timed_out)
        throw error(error_kind::timed_out, command + " timed out after " +
                                               std::to_string(options.timeout->count()) +
                                               " ms and was killed" + detail);
    if (result.signal != 0)
        throw error(error_kind::command_failed,
                    command + " was killed by " + signal_name(result.signal) + detail);
    // 127 from a wrapper script or env(1) means the same as ENOENT from posix_spawnp.
    if (result.exit_code == 127)
        throw error(error_kind::program_not_found,
                    command + " failed (exit code 127: a program was not found" +
                        (hint.empty() ? "" : "; " + options.not_found_hint) + ")" + detail);
    throw error(error_kind::command_failed,
                command + " failed (exit code " + std::to_string(result.exit_code) + ")" + detail);
}

} // namespace qmpkit::launcher
