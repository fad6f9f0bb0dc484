#include <qmpkit/launcher/error.hpp>
#include <qmpkit/launcher/vm_agent.hpp>

#include <spdlog/logger.h>

namespace qmpkit::launcher {

vm_lock lock_guest(const state_directory& dir, std::chrono::milliseconds wait) {
    return vm_lock::acquire(dir.guest_lock(), "talking to the guest", wait);
}

namespace {

void require_guest_agent(const state_directory& dir, const vm_definition& def) {
    if (!def.guest_agent)
        throw error("VM '" + dir.vm_name() +
                    "' has no guest agent (set guest_agent: true in its definition and restart "
                    "it)");
}

} // namespace

guest_agent_session open_guest_agent(const state_directory& dir, const vm_definition& def,
                                     qmp::guest_agent_options options, vm_lock lock) {
    require_guest_agent(dir, def);
    qmp::guest_agent agent(std::move(options));
    try {
        agent.connect(dir.agent_socket());
    } catch (const qmp::error& e) {
        throw error("VM '" + dir.vm_name() + "': " + e.diag().description +
                    " (is the VM running?)");
    }
    return {std::move(lock), std::move(agent)};
}

guest_agent_session open_guest_agent(const state_directory& dir, const vm_definition& def,
                                     qmp::guest_agent_options options) {
    require_guest_agent(dir, def); // before waiting for the lock
    return open_guest_agent(dir, def, std::move(options),
                            lock_guest(dir, std::chrono::seconds(30)));
}

bool request_agent_shutdown(const state_directory& dir, const vm_definition& def,
                            std::chrono::milliseconds answer_within,
                            const std::shared_ptr<spdlog::logger>& logger) {
    if (!def.guest_agent)
        return false;
    try {
        qmp::guest_agent_options options;
        options.sync_timeout = answer_within;
        options.command_timeout = answer_within;
        options.logger = logger;
        auto session = open_guest_agent(dir, def, options);
        session.agent.sync();
        session.agent.shutdown("powerdown");
        return true;
    } catch (const std::exception& e) {
        if (logger)
            logger->debug("guest agent shutdown of '{}' not possible: {}", dir.vm_name(), e.what());
        return false;
    }
}

} // namespace qmpkit::launcher
