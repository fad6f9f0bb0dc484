#pragma once

// --quiesce: the guest's file systems frozen by its agent (guest-fsfreeze-freeze) for as long as
// a guard lives, thawed when it ends, whatever ends it, so that a disk snapshot taken meanwhile
// holds clean file systems.

#include <qmpkit/launcher/state_directory.hpp>
#include <qmpkit/launcher/vm_agent.hpp>
#include <qmpkit/launcher/vm_definition.hpp>
#include <qmpkit/qmp/guest_agent.hpp>

#include <memory>

namespace spdlog {
class logger;
}

namespace qmpkit::snapshot::detail {

class guest_freeze {
public:
    // Freezes. Throws snapshot::error (unsupported) when the VM has no guest agent, it does not
    // answer, or the freeze fails (what it froze is thawed again first).
    guest_freeze(const launcher::state_directory& dir, const launcher::vm_definition& def,
                 std::shared_ptr<spdlog::logger> logger);
    // Thaws, retrying through a resynchronised agent; a thaw that keeps failing is logged as an
    // error (a destructor cannot throw).
    ~guest_freeze();
    guest_freeze(const guest_freeze&) = delete;
    guest_freeze& operator=(const guest_freeze&) = delete;

private:
    std::string vm_;
    std::filesystem::path socket_;
    std::shared_ptr<spdlog::logger> logger_;
    launcher::guest_agent_session session_; // holds the agent while the guest is frozen
};

} // namespace qmpkit::snapshot::detail
