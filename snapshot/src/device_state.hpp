#pragma once

// Private: a reset point's device state (a migration stream without RAM, x-ignore-shared) loaded
// into a qemu waiting with -incoming defer.

#include <qmpkit/qmp/client.hpp>

#include <filesystem>

namespace qmpkit::snapshot::detail {

// Switches on x-ignore-shared and migration events (a standby is armed while it is prepared).
void arm_for_device_state(qmp::client& qmp);

// Loads `file`; the MIGRATION event says when it is done. armed: arm_for_device_state already
// ran on this qemu. Throws snapshot::error (timeout after a minute; other with qemu's reason).
void load_device_state(qmp::client& qmp, const std::filesystem::path& file, bool armed = false);

} // namespace qmpkit::snapshot::detail
