#pragma once

// 9p shares and memory snapshots. From the guest's attach until it unmounts, a 9p export holds a
// migration blocker in qemu ("Migration is disabled when VirtFS export path '...' is mounted in
// the guest using mount_tag '...'"), and savevm and migrate refuse to run. So an operation that
// saves the VM's memory (a snapshot with memory, a reset point) has the guest unmount its shares
// through the agent for as long as a shares_unmounted guard lives, and mount them again when it
// ends. The saved state then holds the shares unmounted: after a load (revert, reset, clone),
// mount_declared_shares mounts again those the definition says where (shares[].mount).

#include <qmpkit/launcher/state_directory.hpp>
#include <qmpkit/launcher/vm_agent.hpp>
#include <qmpkit/launcher/vm_definition.hpp>
#include <qmpkit/qmp/client.hpp>
#include <qmpkit/qmp/guest_agent.hpp>

#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace spdlog {
class logger;
}

namespace qmpkit::snapshot::detail {

// One 9p mount in the guest, as its /proc/self/mounts shows it.
struct guest_share_mount {
    std::string tag;
    std::string directory;
    std::string options;
};

// The mounts of the definition's shares among /proc/self/mounts `text` (its octal escapes
// undone), in the order listed.
std::vector<guest_share_mount> parse_share_mounts(const std::string& text,
                                                  const launcher::vm_definition& def);

// The tags of the definition's shares that qemu reports as blocking migration (query-migrate's
// blocked-reasons): those the guest has mounted. One QMP command; empty without shares.
std::vector<std::string> blocking_share_tags(qmp::client& qmp, const launcher::vm_definition& def);

class shares_unmounted {
public:
    // Unmounts what blocks `operation` ("take a snapshot with memory"). Does nothing when no share
    // is mounted. Throws snapshot::error (unsupported), having mounted again whatever it
    // unmounted, when a share is mounted and the VM has no guest agent, is paused, or the guest
    // cannot unmount it (a process works in it).
    // guest_running: the caller's knowledge of the run state (a paused guest's agent cannot
    // answer).
    shares_unmounted(const launcher::state_directory& dir, const launcher::vm_definition& def,
                     qmp::client& qmp, bool guest_running, const std::string& operation,
                     std::shared_ptr<spdlog::logger> logger);
    // Mounts again (the guest must run by then); a failure is logged as a warning.
    ~shares_unmounted();
    shares_unmounted(const shares_unmounted&) = delete;
    shares_unmounted& operator=(const shares_unmounted&) = delete;

    // Mounts again now, before the guard ends (e.g. before a VM is stopped).
    void remount();

private:
    std::string vm_;
    launcher::vm_definition def_;
    std::shared_ptr<spdlog::logger> logger_;
    std::optional<launcher::guest_agent_session> session_;
    std::vector<guest_share_mount> unmounted_;
};

// After a state was loaded into a running guest: mounts the shares the definition gives a
// mount point (shares[].mount) that are not mounted, through `agent`. Best effort, warnings
// logged; does nothing when no share has a mount point.
void mount_declared_shares(qmp::guest_agent& agent, const launcher::vm_definition& def,
                           const std::shared_ptr<spdlog::logger>& logger);
// The same through a session of its own (the guest lock taken, the agent given up to 10 s to
// answer after the load); nothing without a guest agent or a declared mount point.
void mount_declared_shares(const launcher::state_directory& dir, const launcher::vm_definition& def,
                           const std::shared_ptr<spdlog::logger>& logger);

} // namespace qmpkit::snapshot::detail
