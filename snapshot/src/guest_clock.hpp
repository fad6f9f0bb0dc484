#pragma once

// Private: a guest put back to a point, or cloned from one, set to the host's clock.

#include <qmpkit/launcher/state_directory.hpp>
#include <qmpkit/launcher/vm_definition.hpp>
#include <qmpkit/launcher/vm_lock.hpp>

#include <memory>
#include <optional>

namespace spdlog {
class logger;
}

namespace qmpkit::snapshot::detail {

// A guest put back to a point, or cloned from one, runs on the point's clock: seconds to days in
// the past, which breaks TLS, make and timeouts. Where the VM has a guest agent, its clock is set
// to the host's (guest-set-time; qemu-ga also writes the RTC), and the shares the definition
// mounts are mounted again. Best effort: a guest whose agent does not answer keeps its clock,
// and the caller is warned. `guest_lock`: the guest lock, when the caller took it already.
void set_guest_clock(const launcher::state_directory& dir, const launcher::vm_definition& def,
                     const std::shared_ptr<spdlog::logger>& logger,
                     std::optional<launcher::vm_lock> guest_lock = std::nullopt);

} // namespace qmpkit::snapshot::detail
