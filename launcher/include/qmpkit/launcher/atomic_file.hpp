#pragma once

#include <filesystem>
#include <string_view>

namespace qmpkit::launcher {

enum class durability {
    synced,     // survives a power loss: the file and its directory are fsynced
    atomic_only // a runtime record that means nothing after a reboot: skips both fsyncs
};

// Replaces `path` with `content` so that a crash at any moment leaves either the old or the new
// file, never a torn one: write a temp file beside it, fsync it, rename it over, fsync the
// directory. Throws launcher::error naming the file.
void write_file_atomically(const std::filesystem::path& path, std::string_view content,
                           std::filesystem::perms mode = std::filesystem::perms::owner_read |
                                                         std::filesystem::perms::owner_write,
                           durability how = durability::synced);

// Makes renames and removals in `dir` durable.
void sync_directory(const std::filesystem::path& dir);

// The whole file; throws launcher::error naming it.
std::string read_file(const std::filesystem::path& path);

} // namespace qmpkit::launcher
