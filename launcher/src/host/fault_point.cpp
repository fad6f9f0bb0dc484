#include <qmpkit/launcher/internal/fault_point.hpp>
#include <qmpkit/launcher/qemu_process.hpp>
#include <qmpkit/launcher/runtime_info.hpp>

#include <atomic>
#include <csignal>
#include <cstdlib>
#include <exception>
#include <string>
#include <unistd.h>

namespace qmpkit::launcher {
namespace {

using namespace std::chrono_literals;

struct fault_spec {
    std::string step; // empty: fault injection is off
    bool kill_qemu = false;
};

const fault_spec& spec() {
    static const fault_spec s = [] {
        fault_spec r;
        const char* value = std::getenv("QMPKIT_FAULT_AT");
        if (!value || !*value)
            return r;
        r.step = value;
        if (r.step.ends_with(":qemu")) {
            r.step.resize(r.step.size() - 5);
            r.kill_qemu = true;
        }
        return r;
    }();
    return s;
}

// Straight to stderr, unbuffered: the process may be gone a moment later.
void say(const std::string& text) {
    const auto line = "qmpkit: fault injection: " + text + "\n";
    [[maybe_unused]] const auto n = ::write(STDERR_FILENO, line.data(), line.size());
}

// Whether `step` is the one to fail at, and it has not fired yet.
bool fires(std::string_view step) {
    static std::atomic<bool> fired{false};
    const auto& s = spec();
    if (s.step.empty() || s.step != step)
        return false;
    return !fired.exchange(true);
}

void kill_qemu(std::string_view step, pid_t pid) {
    if (pid <= 0) {
        say(std::string(step) + ": no qemu to kill");
        return;
    }
    say(std::string(step) + ": killing qemu (pid " + std::to_string(pid) + ")");
    ::kill(pid, SIGKILL);
    // The operation must go on against a qemu that is really gone, not one still dying.
    if (!wait_for_exit(pid, 10s))
        say("qemu (pid " + std::to_string(pid) + ") did not die within 10 s");
}

[[noreturn]] void kill_self(std::string_view step) {
    say(std::string(step) + ": killing qmpkit (pid " + std::to_string(::getpid()) + ")");
    ::kill(::getpid(), SIGKILL);
    std::abort(); // not reached: SIGKILL cannot be caught
}

} // namespace

bool fault_injection_enabled() noexcept {
    try {
        return !spec().step.empty();
    } catch (const std::exception&) {
        return false;
    }
}

void fault_point(std::string_view step, pid_t qemu_pid) {
    if (!fires(step))
        return;
    if (spec().kill_qemu)
        kill_qemu(step, qemu_pid);
    else
        kill_self(step);
}

void fault_point(std::string_view step, const state_directory& dir) {
    if (!fires(step))
        return;
    if (!spec().kill_qemu)
        kill_self(step);
    pid_t pid = -1;
    try {
        if (auto runtime = read_runtime_info(dir))
            pid = runtime->qemu_pid;
    } catch (const std::exception& e) {
        say(std::string("cannot read qemu's pid: ") + e.what());
    }
    kill_qemu(step, pid);
}

} // namespace qmpkit::launcher
