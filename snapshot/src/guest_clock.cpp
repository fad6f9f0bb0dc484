#include "guest_clock.hpp"
#include "share_mounts.hpp"

#include <qmpkit/launcher/vm_agent.hpp>

#include <spdlog/logger.h>

#include <chrono>

namespace qmpkit::snapshot::detail {

using namespace std::chrono_literals;

// A guest put back to a point, or cloned from one, runs on the point's clock: seconds to days in
// the past, which breaks TLS, make and timeouts. Where the VM has a guest agent, its clock is set
// to the host's (guest-set-time; qemu-ga also writes the RTC). Best effort: a guest whose agent
// does not answer keeps its clock, and the caller is warned. `guest_lock`: the guest lock, when
// the caller took it already.
void set_guest_clock(const launcher::state_directory& dir, const launcher::vm_definition& def,
                     const std::shared_ptr<spdlog::logger>& logger,
                     std::optional<launcher::vm_lock> guest_lock) {
    if (!def.guest_agent)
        return;
    // A second, longer try: several guests resumed at once under TCG (clones of a real
    // distribution on two cores) can leave an agent silent for more than 2 s, and a guest left
    // on the point's clock is worse than a clone that takes a few seconds more.
    for (const auto timeout : {std::chrono::milliseconds(2s), std::chrono::milliseconds(6s)}) {
        try {
            qmp::guest_agent_options o;
            o.sync_timeout = timeout;
            o.command_timeout = timeout;
            o.logger = logger;
            // The caller's lock goes into the first try's session; a retry takes it anew.
            auto lock = std::exchange(guest_lock, std::nullopt);
            auto session = lock ? launcher::open_guest_agent(dir, def, o, std::move(*lock))
                                : launcher::open_guest_agent(dir, def, o);
            const auto now = std::chrono::duration_cast<std::chrono::nanoseconds>(
                                 std::chrono::system_clock::now().time_since_epoch())
                                 .count();
            session.agent.execute("guest-set-time", {{"time", now}});
            // The point was saved with the shares unmounted (share_mounts.hpp).
            detail::mount_declared_shares(session.agent, def, logger);
            return;
        } catch (const std::exception& e) {
            if (timeout < 6s)
                continue;
            if (logger)
                logger->warn("VM '{}': the guest's clock was not set to the host's ({}); it "
                             "runs from the reset point's time",
                             dir.vm_name(), e.what());
        }
    }
}

} // namespace qmpkit::snapshot::detail
