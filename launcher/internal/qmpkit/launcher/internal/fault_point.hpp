#pragma once

// TEST HOOK, for fault-injection tests only: a named step of an operation where a test can make
// qmpkit or qemu die, to prove that a crash at that exact point leaves images and metadata
// consistent (tests/cli/fault_injection_test.cpp). Not part of the installed API: the layers above
// reach it through the build-only target qmpkit::launcher_internal.
//
// Nothing happens unless the environment variable QMPKIT_FAULT_AT names the step:
//
//   QMPKIT_FAULT_AT=STEP         SIGKILL this process when it reaches STEP
//   QMPKIT_FAULT_AT=STEP:qemu    SIGKILL the VM's qemu when this process reaches STEP, wait until
//                                it is gone, and carry on (the next QMP command finds it dead)
//
// The variable is read once per process; a fault point whose step is not named costs a string
// comparison. Each step fires at most once per process.
//
// Usage (a step is "<operation>.<where>", lower case, '-' between words):
//
//   #include <qmpkit/launcher/internal/fault_point.hpp>
//   launcher::fault_point("reset.template.after-stop", ctx.dir);   // qemu's pid from runtime.json
//   launcher::fault_point("reset.template.after-stop", qemu_pid);  // or given directly
//
// The steps the snapshot layer has are listed in snapshot/src/snapshot_manager.cpp's fault
// points; `grep -rn fault_point snapshot launcher` finds them all.

#include <qmpkit/launcher/state_directory.hpp>

#include <string_view>
#include <sys/types.h>

namespace qmpkit::launcher {

// qemu_pid: the VM's qemu, needed only for STEP:qemu (-1: there is none to kill, the step then
// does nothing).
void fault_point(std::string_view step, pid_t qemu_pid = -1);

// The same, with qemu's pid read from the VM's runtime.json when the step fires.
void fault_point(std::string_view step, const state_directory& dir);

// Whether QMPKIT_FAULT_AT is set at all (to skip work that only feeds fault points).
bool fault_injection_enabled() noexcept;

} // namespace qmpkit::launcher
