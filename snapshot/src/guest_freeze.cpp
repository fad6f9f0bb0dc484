#include "guest_freeze.hpp"

#include <qmpkit/launcher/error.hpp>
#include <qmpkit/launcher/vm_agent.hpp>
#include <qmpkit/snapshot/error.hpp>

#include <spdlog/logger.h>

namespace qmpkit::snapshot::detail {
namespace {

using namespace std::chrono_literals;

launcher::guest_agent_session connect(const launcher::state_directory& dir,
                                      const launcher::vm_definition& def,
                                      const std::shared_ptr<spdlog::logger>& logger) {
    if (!def.guest_agent)
        throw error(error_kind::unsupported,
                    "--quiesce needs the guest agent: VM '" + dir.vm_name() +
                        "' has none (guest_agent: true in its definition, and qemu-ga in the "
                        "guest)");
    qmp::guest_agent_options options;
    options.sync_timeout = 5s;
    // Freezing flushes every dirty page first: give a busy guest time.
    options.command_timeout = 60s;
    options.logger = logger;
    try {
        return launcher::open_guest_agent(dir, def, options);
    } catch (const launcher::error& e) {
        throw error(error_kind::unsupported, std::string("--quiesce: ") + e.what());
    }
}

} // namespace

guest_freeze::guest_freeze(const launcher::state_directory& dir, const launcher::vm_definition& def,
                           std::shared_ptr<spdlog::logger> logger)
    : vm_(dir.vm_name())
    , socket_(dir.agent_socket())
    , logger_(std::move(logger))
    , session_(connect(dir, def, logger_)) {
    try {
        session_.agent.sync();
    } catch (const qmp::error& e) {
        throw error(error_kind::unsupported,
                    "--quiesce: the guest agent of VM '" + vm_ + "' does not answer: " + e.what());
    }
    try {
        const int frozen = session_.agent.fsfreeze_freeze();
        if (logger_)
            logger_->debug("guest agent of '{}' froze {} file system(s)", vm_, frozen);
    } catch (const qmp::error& e) {
        // qemu-ga thaws what it froze when freezing fails, but not when we merely stopped waiting.
        try {
            session_.agent.resync_needed();
            session_.agent.fsfreeze_thaw();
        } catch (const qmp::error&) {
        }
        throw error(error_kind::unsupported,
                    "--quiesce: the guest agent of VM '" + vm_ +
                        "' could not freeze the guest's file systems: " + e.what());
    }
}

guest_freeze::~guest_freeze() {
    std::string last_error;
    for (int attempt = 0; attempt < 3; ++attempt) {
        try {
            if (attempt > 0 && !session_.agent.is_connected())
                session_.agent.connect(socket_);
            if (attempt > 0)
                session_.agent.resync_needed();
            const int thawed = session_.agent.fsfreeze_thaw();
            if (logger_)
                logger_->debug("guest agent of '{}' thawed {} file system(s)", vm_, thawed);
            return;
        } catch (const std::exception& e) {
            last_error = e.what();
        }
    }
    if (logger_)
        logger_->error("the file systems of VM '{}' may still be frozen: guest-fsfreeze-thaw "
                       "failed three times: {}",
                       vm_, last_error);
}

} // namespace qmpkit::snapshot::detail
