#pragma once

// Private. How much CPU time qmpkit's background work may take from the rest of the machine.
//
// Every background process (supervisors, standby preparers) starts a session of its own
// (detach_from_caller), and with the kernel's autogroup scheduling — on by default
// (/proc/sys/kernel/sched_autogroup_enabled) — each session is one scheduling group: the
// group's nice value, not its threads', decides how CPU time is shared with other sessions, such
// as the harness calling `qmpkit reset`. Unlike a thread's nice value, a group's may be put back
// to 0 by an unprivileged user, so a standby prepared at the lowest priority runs its guest at
// the normal one once promoted. Where autogroups are off the call changes nothing, and fails
// silently: priority is an optimisation, never a condition.

#include <fcntl.h>
#include <string>
#include <sys/types.h>
#include <unistd.h>

namespace qmpkit::launcher::detail {

// The session (autogroup) of `pid` (0: this process) at nice value `nice`, 0 to 19.
inline void set_session_nice(pid_t pid, int nice) {
    const auto path =
        "/proc/" + (pid == 0 ? std::string("self") : std::to_string(pid)) + "/autogroup";
    const int fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return;
    const auto text = std::to_string(nice);
    (void)!::write(fd, text.data(), text.size());
    ::close(fd);
}

// Background work that nobody waits for yields to everything else.
inline constexpr int background_nice = 19;

} // namespace qmpkit::launcher::detail
