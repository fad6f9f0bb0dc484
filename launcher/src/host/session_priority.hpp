#pragma once

// Private. How much CPU time qmpkit's background work may take from the rest of the machine.
//
// Every background process (supervisors, standby preparers) starts a session of its own
// (detach_from_caller), and with the kernel's autogroup scheduling — on by default
// (/proc/sys/kernel/sched_autogroup_enabled) — each session is one scheduling group: the
// group's nice value, not its threads', decides how CPU time is shared with other sessions, such
// as the harness calling `qmpkit reset`. Unlike a thread's nice value, a group's may be put back
// to 0 by an unprivileged user, so a standby prepared at the lowest priority can run its guest at
// the normal one once promoted. Two limits shape the uses:
// - without CAP_SYS_ADMIN the kernel takes one write to any /proc/PID/autogroup per 100 ms on
//   the whole machine and refuses the others (EAGAIN): a standby is lowered only where putting
//   it back cannot be refused (session_nice_unlimited), else a promoted guest could stay low;
// - a session is lowered only when it is qmpkit's own (a qemu under `qmpkit run` is in its
//   caller's session: a terminal or a CI job).
// Where autogroups are off the writes change nothing: priority is an optimisation, never a
// condition.

#include <cstdint>
#include <fcntl.h>
#include <fstream>
#include <string>
#include <sys/types.h>
#include <unistd.h>

namespace qmpkit::launcher::detail {

inline std::string autogroup_file(pid_t pid) {
    return "/proc/" + (pid == 0 ? std::string("self") : std::to_string(pid)) + "/autogroup";
}

// The session (autogroup) of `pid` (0: this process) at nice value `nice`, 0 to 19; false when
// the kernel refused or there is no such process.
inline bool set_session_nice(pid_t pid, int nice) {
    const int fd = ::open(autogroup_file(pid).c_str(), O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return false;
    const auto text = std::to_string(nice);
    const bool written = ::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size());
    ::close(fd);
    return written;
}

// The nice value of `pid`'s session ("/autogroup-N nice V"); 0 when unknown.
inline int session_nice(pid_t pid) {
    std::ifstream in(autogroup_file(pid));
    std::string group, word;
    int nice = 0;
    in >> group >> word >> nice;
    return word == "nice" ? nice : 0;
}

// Whether this process may write autogroup nice values without the kernel's rate limit
// (CAP_SYS_ADMIN in its effective set).
inline bool session_nice_unlimited() {
    std::ifstream in("/proc/self/status");
    for (std::string line; std::getline(in, line);)
        if (line.rfind("CapEff:", 0) == 0)
            return (std::stoull(line.substr(7), nullptr, 16) >> 21) & 1; // CAP_SYS_ADMIN
    return false;
}

// A lowered session back to normal; nothing to do (and no write spent) when it is not lowered.
inline void raise_session_to_normal(pid_t pid) {
    if (session_nice(pid) > 0)
        set_session_nice(pid, 0);
}

// Background work that nobody waits for yields to everything else.
inline constexpr int background_nice = 19;

} // namespace qmpkit::launcher::detail
