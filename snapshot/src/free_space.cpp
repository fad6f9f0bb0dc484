#include "free_space.hpp"

#include <sys/stat.h>
#include <sys/statvfs.h>

namespace qmpkit::snapshot::detail {
namespace {

namespace fs = std::filesystem;

// The nearest existing directory at or above `path`.
fs::path existing_dir(fs::path path) {
    std::error_code ec;
    path = fs::absolute(path, ec);
    while (!path.empty() && !fs::is_directory(path, ec)) {
        if (path == path.parent_path())
            break;
        path = path.parent_path();
    }
    return path;
}

// Where the file system holding `dir` is mounted: the highest ancestor on the same device.
fs::path mount_point_of(const fs::path& dir) {
    struct stat here {};
    if (::stat(dir.c_str(), &here) != 0)
        return dir;
    fs::path at = dir;
    while (at != at.parent_path()) {
        struct stat above {};
        if (::stat(at.parent_path().c_str(), &above) != 0 || above.st_dev != here.st_dev)
            break;
        at = at.parent_path();
    }
    return at;
}

} // namespace

std::string full_file_system_hint(const std::vector<fs::path>& paths, std::uint64_t wanted) {
    for (const auto& p : paths) {
        if (p.empty())
            continue;
        const auto dir = existing_dir(p);
        struct statvfs info {};
        if (::statvfs(dir.c_str(), &info) != 0)
            continue;
        const auto free_bytes = static_cast<std::uint64_t>(info.f_bavail) * info.f_frsize;
        if (free_bytes >= wanted)
            continue;
        return " (the file system mounted at " + mount_point_of(dir).string() + ", which holds " +
               p.string() + ", has only " + std::to_string(free_bytes >> 10) +
               " KiB free: it is full)";
    }
    return {};
}

} // namespace qmpkit::snapshot::detail
