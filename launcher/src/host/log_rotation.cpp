#include "host/log_rotation.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

namespace qmpkit::launcher::detail {

int open_log_to_append(const std::filesystem::path& log, std::uintmax_t limit) {
    const auto open_it = [&] {
        return ::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    };
    const auto moved = log.string() + ".1";
    // Each round either returns or sees the log moved since it opened it; a few rounds are more
    // than concurrent starts of one VM ever take.
    for (int round = 0; round < 16; ++round) {
        const int fd = open_it();
        struct stat opened {};
        if (fd < 0 || ::fstat(fd, &opened) != 0 ||
            static_cast<std::uintmax_t>(opened.st_size) < limit)
            return fd;
        // Past the limit. The processes that opened this file take turns; only one that finds
        // the name still on it moves it (checked under the lock, on the file itself), so a
        // second mover can never rename a fresh log over the generation just kept.
        ::flock(fd, LOCK_EX);
        struct stat named {};
        if (::stat(log.c_str(), &named) == 0 && named.st_ino == opened.st_ino &&
            named.st_dev == opened.st_dev)
            ::rename(log.c_str(), moved.c_str());
        ::close(fd); // and the lock with it; the next round opens the new file
    }
    return open_it();
}

} // namespace qmpkit::launcher::detail
