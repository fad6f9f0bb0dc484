#pragma once

// Private: the files of one qemu instance (see qemu_instance in launch.hpp).

#include <qmpkit/launcher/state_directory.hpp>

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace qmpkit::launcher {

// <state>/<kind>.<random id>, mode 0700.
std::filesystem::path make_instance_directory(const state_directory& dir, const char* kind);

// The VM's instance directories of one kind ("standby", "starting"): <state>/<kind>.<id>.
std::vector<std::filesystem::path> instance_directories(const state_directory& dir,
                                                        std::string_view kind);

// Removes what starts of the VM left behind when they died half-way (<state>/starting.<id>).
// Only for a caller that holds the VM's lock while it is not running.
void remove_stale_instance_directories(const state_directory& dir);

// Renames every socket `from` has to the same name in `to`, replacing what is there: a socket
// keeps working under its new name, and connections made under the old one stay open.
void move_sockets(const state_directory& from, const state_directory& to);

// Marks a standby ready (standby.hpp): <standby dir>/standby.json.
void write_standby_marker(const std::filesystem::path& standby_dir, const std::string& key,
                          const std::vector<std::filesystem::path>& owned_files);

// discard_standbys() for a caller that holds the standby lock; standbys prepared for `keep_key`
// (when given) stay.
void discard_standbys_locked(const state_directory& dir,
                             const std::optional<std::string>& keep_key = std::nullopt);

// 0 when the file does not exist.
std::uint64_t inode_of(const std::filesystem::path& file);

// Which write of a file replaced by write_file_atomically is there now. The inode alone does not
// say: a file system may hand a freed inode number to the very next file (ext4 does), so a file
// replaced twice between two looks could show the first inode again. The modification time,
// to the nanosecond, tells those apart. All zero when the file does not exist.
struct file_version {
    std::uint64_t inode = 0;
    std::int64_t modified_s = 0;
    std::int64_t modified_ns = 0;
    bool operator==(const file_version&) const = default;
};
file_version version_of(const std::filesystem::path& file);

} // namespace qmpkit::launcher
