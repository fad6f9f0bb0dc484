#include <qmpkit/launcher/atomic_file.hpp>
#include <qmpkit/launcher/error.hpp>

#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <fstream>
#include <sstream>
#include <string>
#include <sys/stat.h>
#include <unistd.h>

namespace qmpkit::launcher {
namespace {

[[noreturn]] void fail(const std::string& what, const std::filesystem::path& path, int err) {
    throw error(what + " " + path.string() + ": " + std::strerror(err));
}

} // namespace

void write_file_atomically(const std::filesystem::path& path, std::string_view content,
                           std::filesystem::perms mode, durability how) {
    auto dir = path.parent_path();
    if (dir.empty())
        dir = ".";
    std::string temp = (dir / ("." + path.filename().string() + ".XXXXXX")).string();
    const int fd = ::mkstemp(temp.data());
    if (fd < 0)
        fail("cannot create a temporary file for", path, errno);

    auto cleanup = [&](const char* what) {
        const int err = errno;
        ::close(fd);
        ::unlink(temp.c_str());
        fail(what, path, err);
    };
    std::string_view rest = content;
    while (!rest.empty()) {
        const auto n = ::write(fd, rest.data(), rest.size());
        if (n < 0) {
            if (errno == EINTR)
                continue;
            cleanup("cannot write");
        }
        rest.remove_prefix(static_cast<std::size_t>(n));
    }
    if (::fchmod(fd, static_cast<mode_t>(mode)) != 0)
        cleanup("cannot set the mode of");
    if (how == durability::synced && ::fsync(fd) != 0)
        cleanup("cannot sync");
    ::close(fd);
    if (::rename(temp.c_str(), path.c_str()) != 0) {
        const int err = errno;
        ::unlink(temp.c_str());
        fail("cannot replace", path, err);
    }
    // The rename itself is durable only once the directory is synced.
    if (how == durability::synced)
        sync_directory(dir);
}

void sync_directory(const std::filesystem::path& dir) {
    const int dir_fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dir_fd >= 0) {
        ::fsync(dir_fd);
        ::close(dir_fd);
    }
}

std::string read_file(const std::filesystem::path& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in)
        fail("cannot read", path, errno);
    std::ostringstream text;
    text << in.rdbuf();
    return text.str();
}

} // namespace qmpkit::launcher
