#include "bare_qemu.hpp"

#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdlib>
#include <fcntl.h>
#include <stdexcept>
#include <sys/socket.h>
#include <sys/wait.h>
#include <system_error>
#include <thread>
#include <unistd.h>

namespace qmpkit::test {

bool qemu_available() {
    return std::system("command -v qemu-system-x86_64 >/dev/null 2>&1") == 0;
}

bare_qemu::bare_qemu(std::vector<std::string> extra_args, std::filesystem::path socket_path)
    : socket_path_(std::move(socket_path)) {
    int fds[2];
    if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) != 0)
        throw std::system_error(errno, std::generic_category(), "socketpair");

    std::vector<std::string> args{"qemu-system-x86_64",
                                  "-S",
                                  "-nodefaults",
                                  "-no-user-config",
                                  "-display",
                                  "none",
                                  "-machine",
                                  "pc",
                                  "-accel",
                                  "tcg",
                                  "-chardev",
                                  "socket,id=mon,fd=" + std::to_string(fds[1]),
                                  "-mon",
                                  "chardev=mon,mode=control"};
    if (!socket_path_.empty()) {
        args.insert(args.end(),
                    {"-chardev",
                     "socket,id=mon2,path=" + socket_path_.string() + ",server=on,wait=off", "-mon",
                     "chardev=mon2,mode=control"});
    }
    args.insert(args.end(), extra_args.begin(), extra_args.end());

    // Built before fork: the child of a threaded process may not allocate.
    std::vector<char*> argv;
    for (auto& a : args)
        argv.push_back(a.data());
    argv.push_back(nullptr);
    pid_ = ::fork();
    if (pid_ < 0)
        throw std::system_error(errno, std::generic_category(), "fork");
    if (pid_ == 0) {
        // qemu's end must survive exec; everything else is close-on-exec already.
        ::fcntl(fds[1], F_SETFD, 0);
        int devnull = ::open("/dev/null", O_RDWR);
        ::dup2(devnull, STDIN_FILENO);
        ::execvp(argv[0], argv.data());
        ::_exit(127);
    }
    ::close(fds[1]);
    monitor_fd_ = fds[0];

    // The socket path appears a moment after start; wait for it so tests can connect at once.
    if (!socket_path_.empty()) {
        for (int i = 0; i < 500 && !std::filesystem::exists(socket_path_); ++i)
            std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
}

bare_qemu::~bare_qemu() {
    if (monitor_fd_ >= 0)
        ::close(monitor_fd_);
    if (!reaped_ && pid_ > 0) {
        ::kill(pid_, SIGKILL);
        ::waitpid(pid_, nullptr, 0);
    }
    if (!socket_path_.empty()) {
        std::error_code ignored;
        std::filesystem::remove(socket_path_, ignored);
    }
}

int bare_qemu::take_monitor_fd() {
    int fd = monitor_fd_;
    monitor_fd_ = -1;
    return fd;
}

void bare_qemu::signal(int sig) {
    ::kill(pid_, sig);
}

int bare_qemu::wait_exit(int timeout_ms) {
    if (reaped_)
        return 0;
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
    while (std::chrono::steady_clock::now() < deadline) {
        int status = 0;
        if (::waitpid(pid_, &status, WNOHANG) == pid_) {
            reaped_ = true;
            return status;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    return -1;
}

} // namespace qmpkit::test
