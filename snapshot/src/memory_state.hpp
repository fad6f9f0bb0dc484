#pragma once

// Private: a VM's RAM and device state to and from a file, through migration. qemu 7.2 has no
// `file:` URI, so the file goes to qemu as a descriptor (getfd) and migration uses `fd:NAME`.

#include <qmpkit/qmp/client.hpp>

#include <boost/json/object.hpp>

#include <filesystem>
#include <functional>
#include <string_view>

namespace qmpkit::snapshot::detail {

// Saves to a new file (refusing an existing one). When it returns the VM is paused
// (postmigrate): the caller snapshots the disks at this same point, then resumes it.
// on_step: called with "migration-running" once qemu reports the migration active (the fault
// point of a memory save hangs there).
// state_dir: the VM's state directory, where the migration bandwidth the save replaces is
// recorded while it runs (see restore_left_bandwidth).
void save_memory(qmp::client& qmp, const std::filesystem::path& file,
                 const std::function<void(double)>& progress,
                 const std::function<void(std::string_view step)>& on_step = {},
                 const std::filesystem::path& state_dir = {});

// A save raises qemu's max-bandwidth for its own run and puts the old value back at the end; a
// qmpkit killed in between leaves the raised value, and the old one in the state directory.
// Every operation that connects to the VM calls this: it puts that value back, once.
void restore_left_bandwidth(qmp::client& qmp, const std::filesystem::path& state_dir) noexcept;

// x-ignore-shared: migration skips RAM that lives in a shared file. Only for reset points: a
// memory snapshot taken later must save the RAM, so it is switched off again.
void ignore_shared_ram(qmp::client& qmp, bool on);
// The migrate-set-capabilities arguments that do it (for a plan step).
boost::json::object ignore_shared_ram_arguments(bool on);

// Loads into a qemu started with `-incoming defer`; the VM is paused afterwards.
void load_memory(qmp::client& qmp, const std::filesystem::path& file);

} // namespace qmpkit::snapshot::detail
