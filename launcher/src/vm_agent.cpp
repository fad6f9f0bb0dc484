#include <qmpkit/launcher/error.hpp>
#include <qmpkit/launcher/vm_agent.hpp>

#include <spdlog/logger.h>

namespace qmpkit::launcher {

qmp::guest_agent open_guest_agent(const state_directory& dir, const vm_definition& def,
                                  qmp::guest_agent_options options) {
    if (!def.guest_agent)
        throw error("VM '" + dir.vm_name() +
                    "' has no guest agent (set guest_agent: true in its definition and restart "
                    "it)");
    qmp::guest_agent agent(std::move(options));
    try {
        agent.connect(dir.agent_socket());
    } catch (const qmp::error& e) {
        throw error("VM '" + dir.vm_name() + "': " + e.diag().description +
                    " (is the VM running?)");
    }
    return agent;
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
        auto agent = open_guest_agent(dir, def, options);
        agent.sync();
        agent.shutdown("powerdown");
        return true;
    } catch (const std::exception& e) {
        if (logger)
            logger->debug("guest agent shutdown of '{}' not possible: {}", dir.vm_name(), e.what());
        return false;
    }
}

} // namespace qmpkit::launcher
