#pragma once

#include <filesystem>
#include <string_view>

namespace qmpkit::launcher {

// Replaces `path` with `content` so that a crash at any moment leaves either the old or the new
// file, never a torn one: write a temp file beside it, fsync it, rename it over, fsync the
// directory. Throws launcher::error naming the file.
void write_file_atomically(const std::filesystem::path& path, std::string_view content,
                           std::filesystem::perms mode = std::filesystem::perms::owner_read |
                                                         std::filesystem::perms::owner_write);

// The whole file; throws launcher::error naming it.
std::string read_file(const std::filesystem::path& path);

} // namespace qmpkit::launcher
