#pragma once

// Keeps a launched VM company until qemu ends, the way a service manager expects: SIGTERM,
// SIGINT or SIGHUP start a graceful shutdown (ACPI power button, then `quit` after a timeout,
// then SIGKILL); a second signal skips to `quit`. When qemu is gone it records how it ended in
// <state>/exit.json and reports it.

#include <qmpkit/launcher/launch.hpp>
#include <qmpkit/launcher/runtime_info.hpp>

#include <chrono>
#include <functional>
#include <string>

namespace qmpkit::launcher {

struct supervise_options {
    std::chrono::milliseconds shutdown_timeout{std::chrono::seconds(60)};
    // Called with what the supervisor does, for a foreground `run` to print.
    std::function<void(const std::string&)> report;
    // For a standby's supervisor: called once, when a reset has made its qemu the VM's (its
    // ready marker is gone and the VM's record names it), to prepare the next standbys off the
    // reset's path. The supervisor learns of it at `cont` (RESUME) or within a round (200 ms).
    std::function<void()> on_promoted;
};

// Blocks until qemu has ended. The caller must have blocked SIGTERM, SIGINT and SIGHUP in every
// thread (block_termination_signals) so that they are taken here.
exit_record supervise(launched_vm& vm, const supervise_options& options);

// A reset replaces the VM's qemu (a template reset starts another, a standby reset promotes
// one), each new one supervised by a process of its own; supervise() then returns. This follows
// whichever qemu is the VM's until the VM ends, and returns how it ended (exit.json), so that a
// foreground `run` lasts as long as the VM does. SIGTERM, SIGINT or SIGHUP shut the VM down as
// shutdown_vm does. An operation between two qemus holds the VM's lock: the VM has ended when
// no qemu runs while the lock is free. Returns at once, with the record, if the VM has ended.
exit_record follow_vm(const state_directory& dir, const supervise_options& options);

// Blocks the signals supervise() handles; call before starting threads.
void block_termination_signals();

} // namespace qmpkit::launcher
