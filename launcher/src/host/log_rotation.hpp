#pragma once

// Private. The VM's own logs (qemu.log, supervisor.log) get lines at every qemu start, and a
// harness that resets a VM every second starts one every second: about 1.5 KB a reset, 130 MB a
// day. Before a process opens one to append, a log past its limit is moved to LOG.1 (replacing
// the one before), so each keeps at most about twice the limit. Processes still writing to the
// moved file go on doing so; serial.log is not rotated (readers keep offsets into it).

#include <cstdint>
#include <filesystem>
#include <system_error>

namespace qmpkit::launcher::detail {

inline constexpr std::uintmax_t log_size_limit = 4u << 20;

inline void rotate_log_if_large(const std::filesystem::path& log) {
    std::error_code ec;
    const auto size = std::filesystem::file_size(log, ec);
    if (ec || size < log_size_limit)
        return;
    // Two starts at once may both get here: the second moves the first one's fresh log, which
    // loses nothing but the older generation.
    std::filesystem::rename(log, std::filesystem::path(log.string() + ".1"), ec);
}

} // namespace qmpkit::launcher::detail
