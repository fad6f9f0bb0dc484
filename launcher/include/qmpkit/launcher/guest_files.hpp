#pragma once

// Copying files between the host and a guest through its guest agent (guest-file-*), as
// `qmpkit cp` does. Files are streamed in chunks, never held whole in memory, and appear
// complete or not at all on either side: each is written under a temporary name beside its
// destination and renamed into place. The mode bits travel with the file.

#include <qmpkit/qmp/guest_agent.hpp>

#include <cstdint>
#include <filesystem>
#include <functional>
#include <string>

namespace qmpkit::launcher {

// Called after every chunk with the bytes copied so far and the file's size.
using copy_progress = std::function<void(std::uint64_t done, std::uint64_t total)>;

// Copies a host file to `guest_path` (a file, or a directory it goes into under its own name).
// Returns the bytes copied. Throws launcher::error naming the side and path that failed: a
// missing host file, a guest directory that does not exist, a file the agent may not write.
std::uint64_t copy_to_guest(qmp::guest_agent& agent, const std::filesystem::path& host_file,
                            const std::string& guest_path, const copy_progress& progress = {});

// Copies a guest file to `host_path` (a file, or a directory it goes into under its own name).
std::uint64_t copy_from_guest(qmp::guest_agent& agent, const std::string& guest_file,
                              const std::filesystem::path& host_path,
                              const copy_progress& progress = {});

} // namespace qmpkit::launcher
