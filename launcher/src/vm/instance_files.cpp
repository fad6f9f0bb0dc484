#include "vm/instance_files.hpp"

#include <qmpkit/launcher/error.hpp>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <random>
#include <sys/stat.h>
#include <vector>

namespace qmpkit::launcher {

std::filesystem::path make_instance_directory(const state_directory& dir, const char* kind) {
    std::random_device random;
    for (int attempt = 0;; ++attempt) {
        char id[9];
        std::snprintf(id, sizeof id, "%08x", static_cast<unsigned>(random()));
        auto path = dir.path() / (std::string(kind) + "." + id);
        if (::mkdir(path.c_str(), 0700) == 0)
            return path;
        if (errno != EEXIST || attempt > 16)
            throw error("cannot create " + path.string() + ": " + std::strerror(errno));
    }
}

std::vector<std::filesystem::path> instance_directories(const state_directory& dir,
                                                        std::string_view kind) {
    const auto prefix = std::string(kind) + ".";
    std::vector<std::filesystem::path> found;
    std::error_code ec;
    for (const auto& entry : std::filesystem::directory_iterator(dir.path(), ec))
        if (entry.path().filename().string().starts_with(prefix) && entry.is_directory(ec))
            found.push_back(entry.path());
    return found;
}

void remove_stale_instance_directories(const state_directory& dir) {
    std::error_code ec;
    for (const auto& path : instance_directories(dir, "starting"))
        std::filesystem::remove_all(path, ec);
}

void move_sockets(const state_directory& from, const state_directory& to) {
    const auto sources = from.sockets();
    const auto targets = to.sockets();
    for (std::size_t i = 0; i < sources.size(); ++i)
        if (::rename(sources[i].c_str(), targets[i].c_str()) != 0 && errno != ENOENT)
            throw error("cannot move " + sources[i].string() + " to " + targets[i].string() + ": " +
                        std::strerror(errno));
}

std::uint64_t inode_of(const std::filesystem::path& file) {
    struct stat st {};
    return ::stat(file.c_str(), &st) == 0 ? static_cast<std::uint64_t>(st.st_ino) : 0;
}

file_version version_of(const std::filesystem::path& file) {
    struct stat st {};
    if (::stat(file.c_str(), &st) != 0)
        return {};
    return {static_cast<std::uint64_t>(st.st_ino), static_cast<std::int64_t>(st.st_mtim.tv_sec),
            static_cast<std::int64_t>(st.st_mtim.tv_nsec)};
}

} // namespace qmpkit::launcher
