#pragma once

// Private: images a definition asks for (size or backing) that do not exist yet.

#include <qmpkit/launcher/vm_definition.hpp>

#include <filesystem>
#include <vector>

namespace qmpkit::launcher {

// Creates every missing image with qemu-img and returns what it created, so that a launch that
// fails later can take them away again. Throws launcher::error (after removing what it made).
std::vector<std::filesystem::path> create_missing_disks(const vm_definition& def);

void remove_created_disks(const std::vector<std::filesystem::path>& created) noexcept;

} // namespace qmpkit::launcher
