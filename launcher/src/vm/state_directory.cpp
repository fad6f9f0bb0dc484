#include <qmpkit/launcher/error.hpp>
#include <qmpkit/launcher/state_directory.hpp>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <sys/stat.h>
#include <unistd.h>

namespace qmpkit::launcher {

std::filesystem::path default_state_root() {
    if (const char* env = std::getenv("QMPKIT_STATE_DIR"); env && *env)
        return env;
    if (::geteuid() == 0)
        return "/var/lib/qmpkit";
    if (const char* xdg = std::getenv("XDG_STATE_HOME"); xdg && *xdg)
        return std::filesystem::path(xdg) / "qmpkit";
    if (const char* home = std::getenv("HOME"); home && *home)
        return std::filesystem::path(home) / ".local" / "state" / "qmpkit";
    throw error("cannot choose a state directory: set --state-dir or QMPKIT_STATE_DIR");
}

state_directory::state_directory(std::filesystem::path root, std::string vm_name)
    : name_(std::move(vm_name))
    , dir_(std::filesystem::absolute(root) / name_) {}

std::filesystem::path state_directory::ram_file() const {
    if (std::filesystem::is_directory("/dev/shm")) {
        // Unique per state directory: the same VM name may live under several roots.
        std::uint64_t hash = 14695981039346656037ULL;
        for (unsigned char c : dir_.native())
            hash = (hash ^ c) * 1099511628211ULL;
        char suffix[17];
        std::snprintf(suffix, sizeof suffix, "%016llx", static_cast<unsigned long long>(hash));
        return std::filesystem::path("/dev/shm") / ("qmpkit-" + name_ + "-" + suffix + ".ram");
    }
    return dir_ / "memory.ram";
}

bool state_directory::exists() const {
    return std::filesystem::is_directory(dir_);
}

void state_directory::create() const {
    for (const auto& d : {dir_.parent_path(), dir_}) {
        std::error_code ec;
        std::filesystem::create_directories(d, ec);
        if (ec)
            throw error("cannot create state directory " + d.string() + ": " + ec.message());
    }
    // Sockets inside give control over the VM: only the owner may reach them.
    if (::chmod(dir_.c_str(), 0700) != 0)
        throw error("cannot set mode 0700 on " + dir_.string() + ": " + std::strerror(errno));
}

std::vector<std::string> state_directory::list(const std::filesystem::path& root) {
    std::vector<std::string> names;
    std::error_code ec;
    for (const auto& entry : std::filesystem::directory_iterator(root, ec))
        if (entry.is_directory() && std::filesystem::exists(entry.path() / "definition.yaml"))
            names.push_back(entry.path().filename().string());
    std::sort(names.begin(), names.end());
    return names;
}

} // namespace qmpkit::launcher
