#pragma once

// Private. glibc 2.36's <sys/pidfd.h> declares pidfd_open without extern "C", so C++ code
// cannot link against it: go through the system call.

#include <sys/syscall.h>
#include <sys/types.h>
#include <unistd.h>

namespace qmpkit::launcher::detail {

// A descriptor that becomes readable when the process exits (even one that is not our child),
// or -1.
inline int open_pidfd(pid_t pid) {
    return static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
}

} // namespace qmpkit::launcher::detail
