#pragma once

// clone_request::new_identity: a clone is a copy of its origin's RAM, so it starts with the
// origin's machine-id, SSH host keys and host name. This gives a running clone its own, through
// its guest agent.

#include <qmpkit/launcher/state_directory.hpp>
#include <qmpkit/launcher/vm_definition.hpp>

#include <memory>

namespace spdlog {
class logger;
}

namespace qmpkit::snapshot::detail {

// New SSH host keys of the types the guest has, made on the host (an RSA key takes seconds in
// a TCG guest) and unpacked in the guest from a tar on the agent's stdin; in the same guest
// command, a new /etc/machine-id, sshd restarted, and the VM's name as host name where it is a
// valid one. Each part only where the guest has it (the tiny guest has no machine-id and no
// sshd). The clone's known_hosts is emptied: it held the origin's keys. Throws
// snapshot::error when the guest refuses.
void give_new_identity(const launcher::state_directory& dir, const launcher::vm_definition& def,
                       const std::shared_ptr<spdlog::logger>& logger);

} // namespace qmpkit::snapshot::detail
