#pragma once

// Private. The VM's own logs (qemu.log, supervisor.log) get lines at every qemu start, and a
// harness that resets a VM every second starts one every second: about 1.5 KB a reset, 130 MB a
// day. A process that opens one to append first moves a log past its limit to LOG.1 (replacing
// the one before), so each keeps at most about twice the limit. Processes still writing to the
// moved file go on doing so; serial.log is not rotated (readers keep offsets into it).

#include <cstdint>
#include <filesystem>

namespace qmpkit::launcher::detail {

inline constexpr std::uintmax_t log_size_limit = 4u << 20;

// Opens `log` to append (created owner-only, close-on-exec), moved aside first when it is past
// `limit`. Returns the descriptor, or -1 with errno set. Any number of processes may open the
// same log at once: one of them moves it, the others then open the new file (the older
// generation is never replaced by a fresh log).
int open_log_to_append(const std::filesystem::path& log, std::uintmax_t limit = log_size_limit);

} // namespace qmpkit::launcher::detail
