#pragma once

// Logging in to a guest with ssh: the VM's own key (cloud_init.hpp), its forwarded port 22 as
// this qemu has it (runtime_info::forwards, so it follows the VM through resets and clones), and
// a known_hosts of its own.

#include <qmpkit/launcher/state_directory.hpp>

#include <chrono>
#include <string>
#include <vector>

namespace qmpkit::launcher {

struct ssh_target {
    std::string user;                 // empty: the definition's cloud_init.user
    std::vector<std::string> command; // empty: an interactive login
};

// The ssh argv (binary first) for a running VM. It never asks for a password (BatchMode) and
// accepts the guest's host key the first time, then insists on it; the known_hosts entry is
// named after the VM, not the port, which changes from qemu to qemu. Throws launcher::error,
// saying what to add, for a VM without a key (no cloud_init) or without a forward to port 22.
std::vector<std::string> ssh_command(const state_directory& dir, const ssh_target& target);

// Waits until the guest's sshd greets on the VM's forwarded port (its "SSH-2.0-..." line), or
// `timeout` passes (launcher::error, kind timed_out). The greeting, not a login: a login costs
// seconds of key exchange in a guest under TCG, and the caller logs in next anyway. With
// cloud-init the key is in place by then: its init stage runs before sshd starts.
void wait_for_ssh(const state_directory& dir, std::chrono::milliseconds timeout);

} // namespace qmpkit::launcher
