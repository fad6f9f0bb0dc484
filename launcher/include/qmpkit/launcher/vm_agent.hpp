#pragma once

// The guest agent (qemu-ga) of a VM that qmpkit started with guest_agent: true, reached on
// <state>/agent.sock. Its port serves one client at a time, so every client holds the guest lock
// (<state>/guest.lock) while connected; so does a command through the command channel. That
// lock, not the VM's, is what setting the clock after a reset holds in the background: the next
// reset, which does not talk to the guest, does not wait for it, while the next command in the
// guest does (and sees the host's time).

#include <qmpkit/launcher/state_directory.hpp>
#include <qmpkit/launcher/vm_definition.hpp>
#include <qmpkit/launcher/vm_lock.hpp>
#include <qmpkit/qmp/guest_agent.hpp>

#include <chrono>

namespace qmpkit::launcher {

// A connection to the agent, and the hold on the guest lock that makes it the only one.
struct guest_agent_session {
    vm_lock lock;
    qmp::guest_agent agent;
};

// Takes the guest lock, waiting up to `wait` (launcher::error naming the holder after that).
vm_lock lock_guest(const state_directory& dir, std::chrono::milliseconds wait);

// Connects (without waiting for an agent: the first command does) while holding `lock`, from
// lock_guest. Throws launcher::error when the definition has no guest_agent: true or the
// VM's agent socket cannot be reached (not running).
guest_agent_session open_guest_agent(const state_directory& dir, const vm_definition& def,
                                     qmp::guest_agent_options options, vm_lock lock);

// The same, taking the guest lock first (waiting up to 30 s: a client holds it for one command or
// a clock setting).
guest_agent_session open_guest_agent(const state_directory& dir, const vm_definition& def,
                                     qmp::guest_agent_options options = {});

// Asks the agent to power the guest off (guest-shutdown). False, having changed nothing, when
// the definition has no agent or it does not answer within `answer_within`.
bool request_agent_shutdown(const state_directory& dir, const vm_definition& def,
                            std::chrono::milliseconds answer_within,
                            const std::shared_ptr<spdlog::logger>& logger = {});

} // namespace qmpkit::launcher
