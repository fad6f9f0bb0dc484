#pragma once

// Private: whether two paths name one file, as far as the file system can tell (symlinks and
// "..", resolved where they exist; lexically beyond).

#include <filesystem>

namespace qmpkit::snapshot::detail {

inline bool same_file(const std::filesystem::path& a, const std::filesystem::path& b) {
    std::error_code ec;
    return std::filesystem::weakly_canonical(a, ec) == std::filesystem::weakly_canonical(b, ec);
}

} // namespace qmpkit::snapshot::detail
