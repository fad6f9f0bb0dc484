#pragma once

// The guest agent (qemu-ga) of a VM that qmpkit started with guest_agent: true, reached on
// <state>/agent.sock. The caller holds the VM's lock (vm_lock or a vm_connection): the agent's
// port serves one client at a time.

#include <qmpkit/launcher/state_directory.hpp>
#include <qmpkit/launcher/vm_definition.hpp>
#include <qmpkit/qmp/guest_agent.hpp>

#include <chrono>

namespace qmpkit::launcher {

// Connects (without waiting for an agent: the first command does). Throws launcher::error when
// the definition has no guest_agent: true or the VM's agent socket cannot be reached (not
// running).
qmp::guest_agent open_guest_agent(const state_directory& dir, const vm_definition& def,
                                  qmp::guest_agent_options options = {});

// Asks the agent to power the guest off (guest-shutdown). False, having changed nothing, when
// the definition has no agent or it does not answer within `answer_within`.
bool request_agent_shutdown(const state_directory& dir, const vm_definition& def,
                            std::chrono::milliseconds answer_within,
                            const std::shared_ptr<spdlog::logger>& logger = {});

} // namespace qmpkit::launcher
