#pragma once

// Exit codes of the qmpkit command, documented in README.md.
namespace qmpkit::cli::exit_code {
inline constexpr int ok = 0;
inline constexpr int failed = 1;      // the operation was refused or failed (e.g. a QMP error)
inline constexpr int usage = 2;       // bad arguments or a bad VM definition
inline constexpr int unreachable = 3; // no qemu at the socket, or the connection broke
inline constexpr int timeout = 4;     // an operation did not finish in time
inline constexpr int crashed = 5;     // run: qemu crashed or was killed
inline constexpr int forced = 6;      // run: the guest ignored the shutdown request and was stopped
} // namespace qmpkit::cli::exit_code
