#include "host/pidfd.hpp"
#include "vm/instance_files.hpp"

#include <qmpkit/launcher/error.hpp>
#include <qmpkit/launcher/launch.hpp>
#include <qmpkit/launcher/qemu_process.hpp>
#include <qmpkit/launcher/standby.hpp>
#include <qmpkit/launcher/supervisor.hpp>
#include <qmpkit/launcher/vm_control.hpp>
#include <qmpkit/launcher/vm_lock.hpp>

#include <csignal>
#include <cstring>
#include <optional>
#include <poll.h>
#include <sys/signalfd.h>
#include <unistd.h>
#include <vector>

namespace qmpkit::launcher {
namespace {

using namespace std::chrono_literals;
using clock_type = std::chrono::steady_clock;

sigset_t termination_signals() {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    return set;
}

std::int64_t now_seconds() {
    return std::chrono::duration_cast<std::chrono::seconds>(
               std::chrono::system_clock::now().time_since_epoch())
        .count();
}

class supervisor {
public:
    supervisor(launched_vm& vm, const supervise_options& options)
        : vm_(vm)
        , options_(options) {
        auto set = termination_signals();
        signal_fd_ = ::signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
        if (signal_fd_ < 0)
            throw error(std::string("signalfd: ") + std::strerror(errno));
    }
    ~supervisor() { ::close(signal_fd_); }

    exit_record run() {
        // A standby's guest runs only once a reset has promoted it: RESUME wakes this to
        // prepare the next standbys at once.
        auto events = vm_.monitor().listen(vm_.instance().standby
                                               ? std::vector<std::string>{"SHUTDOWN", "RESUME"}
                                               : std::vector<std::string>{"SHUTDOWN"});
        bool monitor_open = true;
        for (;;) {
            if (auto status = vm_.process().try_wait())
                return finish(*status);
            take_signals();
            quit_if_replaced();
            quit_if_orphaned();
            refill_if_promoted();
            step_shutdown();

            if (monitor_open) {
                try {
                    // Short waits keep signals and deadlines responsive; qemu's end closes the
                    // monitor, which wakes this at once.
                    if (auto e = vm_.monitor().wait_event(events, 200ms);
                        e && e->name == "SHUTDOWN") {
                        shutdown_reason_ = e->data.contains("reason")
                                               ? std::string(e->data.at("reason").as_string())
                                               : std::string("shutdown");
                        say("qemu reports shutdown: " + shutdown_reason_);
                    }
                } catch (const qmp::error&) {
                    monitor_open = false;
                }
            } else {
                // Only the pidfd is left to wait on (besides signals).
                pollfd fds[2] = {{vm_.process().pidfd(), POLLIN, 0}, {signal_fd_, POLLIN, 0}};
                ::poll(fds, 2, 200);
            }
        }
    }

private:
    // A reset that promoted a standby over this qemu tells it to quit; should that reset have
    // died first, the VM's runtime record, which names another qemu now, says it all the same.
    void quit_if_replaced() {
        if (quit_sent_)
            return;
        const auto& instance = vm_.instance();
        if (instance.standby && std::filesystem::exists(instance.dir / standby_marker_name))
            return; // not the VM's (yet)
        const auto version = version_of(vm_.state().runtime_file());
        if (version == runtime_version_)
            return;
        runtime_version_ = version;
        try {
            const auto current = read_runtime_info(vm_.state());
            if (current && current->qemu_pid != vm_.process().pid()) {
                say("replaced by another qemu: stopping this one");
                replaced_ = true;
                send_quit();
            }
        } catch (const error&) {
            // Being rewritten; look again next round.
            runtime_version_ = {};
        }
    }

    // A qemu whose VM's state directory was removed while it ran (a harness that deleted its
    // scratch directory while a standby was being prepared, or without stopping the VM) can be
    // reached by nobody: its sockets and records are gone. It is stopped, not left running for
    // good. A stat a round.
    void quit_if_orphaned() {
        if (quit_sent_)
            return;
        std::error_code ec;
        if (std::filesystem::exists(vm_.state().path(), ec) || ec)
            return;
        say("the VM's state directory " + vm_.state().path().string() +
            " was removed: stopping this qemu, which nothing can reach any more");
        orphaned_ = true;
        send_quit();
    }

    // A reset that promoted this standby forked nothing for the next ones: they are prepared
    // from here, once (supervise_options::on_promoted). The marker the promotion left for
    // standby_being_prepared goes once the preparation has its place (on_promoted returns then).
    void refill_if_promoted() {
        if (promotion_seen_ || quit_sent_ || !vm_.instance().standby)
            return;
        if (std::filesystem::exists(vm_.instance().dir / standby_marker_name))
            return; // still a standby
        try {
            const auto current = read_runtime_info(vm_.state());
            if (!current || current->qemu_pid != vm_.process().pid())
                return; // promotion under way, or replaced already (quit_if_replaced)
        } catch (const error&) {
            return; // being rewritten; look again next round
        }
        promotion_seen_ = true;
        if (options_.on_promoted) {
            try {
                options_.on_promoted();
            } catch (const std::exception& e) {
                say(std::string("preparing the next standbys: ") + e.what());
            }
        }
        forget_refill();
    }

    void forget_refill() {
        std::error_code ignored;
        std::filesystem::remove(vm_.state().standby_refill(::getpid()), ignored);
    }

    void say(const std::string& text) {
        if (options_.report)
            options_.report(text);
    }

    void take_signals() {
        signalfd_siginfo info;
        while (::read(signal_fd_, &info, sizeof info) == static_cast<ssize_t>(sizeof info)) {
            const auto name = ::strsignal(static_cast<int>(info.ssi_signo));
            if (!shutdown_started_) {
                say(std::string("received ") + name +
                    ": shutting the guest down (ACPI power button)");
                shutdown_started_ = clock_type::now();
                execute_quietly("system_powerdown");
            } else if (!quit_sent_) {
                say(std::string("received ") + name + " again: stopping qemu now");
                send_quit();
            }
        }
    }

    void step_shutdown() {
        if (!shutdown_started_)
            return;
        const auto elapsed = clock_type::now() - *shutdown_started_;
        if (!quit_sent_ && elapsed > options_.shutdown_timeout) {
            say("the guest did not power off in time: stopping qemu");
            forced_ = true;
            send_quit();
        }
        if (quit_sent_ && clock_type::now() - *quit_sent_ > 5s && !killed_) {
            say("qemu did not quit: killing it");
            forced_ = true;
            killed_ = true;
            vm_.process().kill(SIGKILL);
        }
    }

    void send_quit() {
        quit_sent_ = clock_type::now();
        if (!shutdown_started_)
            shutdown_started_ = quit_sent_;
        execute_quietly("quit");
    }

    void execute_quietly(const char* command) {
        try {
            qmp::execute_options o;
            o.timeout = 5s;
            vm_.monitor().execute(command, {}, o);
        } catch (const qmp::error&) {
            // qemu may already be going; its exit is what counts.
        }
    }

    exit_record finish(const exit_status& status) {
        forget_refill(); // should the qemu have ended before this saw its promotion
        exit_record record;
        record.exit = status.describe();
        record.forced = forced_;
        record.ended_at = now_seconds();
        const bool asked = !shutdown_reason_.empty();
        if ((status.clean() && asked) || (forced_ && killed_)) {
            record.state = "shutoff";
            record.reason = asked ? shutdown_reason_ : "killed after the shutdown timeout";
        } else if (status.clean()) {
            record.state = "shutoff";
            record.reason = "qemu exited";
        } else {
            record.state = "crashed";
            record.reason = "qemu " + status.describe();
        }
        const auto& instance = vm_.instance();
        std::error_code ignored;
        if (orphaned_) {
            for (const auto& file : instance.owned_files)
                std::filesystem::remove(file, ignored);
            std::filesystem::remove_all(instance.dir, ignored);
            say("qemu of a removed VM ended (" + record.exit + ")");
            return record;
        }
        if (instance.standby && std::filesystem::exists(instance.dir / standby_marker_name)) {
            // A standby that never became the VM: nothing of the VM's is this qemu's.
            std::filesystem::remove_all(instance.dir, ignored);
            for (const auto& file : instance.owned_files)
                std::filesystem::remove(file, ignored);
            say("standby qemu ended (" + record.exit + ")");
            return record;
        }
        std::filesystem::remove_all(instance.dir, ignored);
        if (instance.ram_inode != 0 && inode_of(vm_.state().ram_file()) == instance.ram_inode)
            std::filesystem::remove(vm_.state().ram_file(), ignored);
        // A standby promoted in this qemu's place owns the VM's sockets and records now. No
        // record at all means a start is under way (it removes the old one first): that is a
        // successor's too.
        const auto current = read_runtime_info(vm_.state());
        if (replaced_ || !current || current->qemu_pid != vm_.process().pid()) {
            say("qemu replaced by a reset ended (" + record.exit + ")");
            return record;
        }
        // Clean up before recording the end: whoever restarts the VM waits for the record, and
        // must not have its new sockets removed by us afterwards. Standbys serve a running VM
        // only.
        discard_standbys(vm_.state());
        // That may have waited: look again before touching what may be a successor's.
        if (const auto now = read_runtime_info(vm_.state());
            !now || now->qemu_pid != vm_.process().pid()) {
            say("qemu replaced while it ended (" + record.exit + ")");
            return record;
        }
        for (const auto& socket : vm_.state().sockets())
            std::filesystem::remove(socket, ignored);
        write_exit_record(vm_.state(), record);
        say("VM " + record.state + " (" + record.reason + "; " + record.exit + ")");
        return record;
    }

    launched_vm& vm_;
    const supervise_options& options_;
    int signal_fd_ = -1;
    std::string shutdown_reason_;
    std::optional<clock_type::time_point> shutdown_started_;
    std::optional<clock_type::time_point> quit_sent_;
    bool replaced_ = false;       // the VM's runtime record named another qemu
    bool promotion_seen_ = false; // a standby's: a reset made its qemu the VM's
    bool orphaned_ = false;       // the VM's state directory was removed
    bool forced_ = false;
    bool killed_ = false;
    file_version runtime_version_; // of the VM's runtime record at the last look
};

} // namespace

exit_record follow_vm(const state_directory& dir, const supervise_options& options) {
    auto say = [&](const std::string& text) {
        if (options.report)
            options.report(text);
    };
    auto set = termination_signals();
    const int signal_fd = ::signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
    if (signal_fd < 0)
        throw error(std::string("signalfd: ") + std::strerror(errno));
    struct closer {
        int fd;
        ~closer() { ::close(fd); }
    } close_signal_fd{signal_fd};

    bool shutdown_asked = false;
    pid_t followed = -1;
    for (;;) {
        signalfd_siginfo info;
        while (::read(signal_fd, &info, sizeof info) == static_cast<ssize_t>(sizeof info)) {
            if (shutdown_asked)
                continue; // shutdown_vm escalates by itself after the timeout
            shutdown_asked = true;
            say(std::string("received ") + ::strsignal(static_cast<int>(info.ssi_signo)) +
                ": shutting the VM down");
            try {
                connect_options o;
                o.lock_timeout = options.shutdown_timeout;
                say("VM " + shutdown_vm(dir, options.shutdown_timeout, o));
            } catch (const error& e) {
                say(e.what());
            }
        }

        std::optional<runtime_info> runtime;
        try {
            runtime = read_runtime_info(dir);
        } catch (const error&) {
            // Being rewritten: look again.
        }
        // The qemu, and until it has recorded the end its supervisor (not this process: after
        // supervise() returns, its qemu is gone).
        std::vector<pollfd> waits;
        if (runtime) {
            for (const pid_t pid : {runtime->qemu_pid, runtime->supervisor_pid})
                if (pid > 0 && pid != ::getpid() && process_alive(pid))
                    if (const int fd = detail::open_pidfd(pid); fd >= 0)
                        waits.push_back({fd, POLLIN, 0});
            if (!waits.empty() && runtime->qemu_pid != followed &&
                process_alive(runtime->qemu_pid)) {
                if (followed != -1 || runtime->supervisor_pid != ::getpid())
                    say("qemu replaced by a reset: following the VM's qemu pid " +
                        std::to_string(runtime->qemu_pid));
                followed = runtime->qemu_pid;
            }
        }
        if (!waits.empty()) {
            waits.push_back({signal_fd, POLLIN, 0});
            ::poll(waits.data(), waits.size(), 1000);
            for (std::size_t i = 0; i + 1 < waits.size(); ++i)
                ::close(waits[i].fd);
            continue;
        }
        // No qemu: the VM has ended, or an operation holds it between two qemus.
        try {
            auto lock = vm_lock::acquire(dir.lock_file(), "following the VM", {});
            if (is_running(dir))
                continue;
            if (auto record = read_exit_record(dir))
                return *record;
            exit_record lost;
            lost.state = "crashed";
            lost.reason = "the VM's qemu and its supervisor are gone, and nothing recorded how it "
                          "ended";
            lost.exit = "unknown";
            return lost;
        } catch (const error&) {
            pollfd wait{signal_fd, POLLIN, 0};
            ::poll(&wait, 1, 50);
        }
    }
}

void block_termination_signals() {
    auto set = termination_signals();
    ::sigprocmask(SIG_BLOCK, &set, nullptr);
}

exit_record supervise(launched_vm& vm, const supervise_options& options) {
    return supervisor(vm, options).run();
}

} // namespace qmpkit::launcher
