#pragma once

// Private: naming the full file system when an operation failed for want of space. qemu reports
// a full disk as "Input/output error" or "No space left on device" without saying where; the
// user needs to know which file system to free.

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

namespace qmpkit::snapshot::detail {

// For the first of `paths` (files or directories, existing or about to be made) whose file
// system has less than `wanted` bytes free: " (the file system mounted at M, which holds P, has
// only N KiB free: it is full)". Empty when none is short of space.
std::string full_file_system_hint(const std::vector<std::filesystem::path>& paths,
                                  std::uint64_t wanted = std::uint64_t{4} << 20);

} // namespace qmpkit::snapshot::detail
