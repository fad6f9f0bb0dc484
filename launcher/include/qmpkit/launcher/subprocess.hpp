#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace qmpkit::launcher {

// Running short-lived helper programs (qemu-img and the like) to completion and collecting what
// they say. Not for qemu itself: a VM outlives one call and needs supervision, not this.

struct subprocess_options {
    // After this long the program is killed with SIGKILL and the result says timed_out.
    // nullopt: wait as long as it takes (a qemu-img convert of a big image takes minutes).
    std::optional<std::chrono::milliseconds> timeout{};

    // Written to the program's stdin, which is then closed. nullopt: stdin is /dev/null, so a
    // program that would prompt sees end of input instead of stealing the caller's terminal.
    std::optional<std::string> input{};

    // Added to (or replacing in) this process's environment for the program only.
    std::vector<std::pair<std::string, std::string>> env{};

    // Appended to run_checked's "<program> not found" error, e.g. "install qemu-utils".
    std::string not_found_hint{};
};

struct subprocess_result {
    int exit_code = 0; // meaningful when signal == 0; 127/126 when the program could not start
    int signal = 0;    // the signal that ended the program (SIGKILL after a timeout), or 0
    std::string out;
    std::string err;
    bool timed_out = false;
    int spawn_error = 0; // errno when the program could not be started (ENOENT, EACCES), or 0

    // Started, ran to completion and exited with 0.
    bool ok() const noexcept { return spawn_error == 0 && signal == 0 && exit_code == 0; }
};

// Runs argv[0] (looked up in PATH unless it contains a slash) with argv, never through a shell,
// and waits for it. stdout and stderr are captured separately and read concurrently, so a
// program that fills one of them never blocks. The child gets only fds 0, 1 and 2, the default
// disposition for SIGPIPE and an empty signal mask; it stays in the caller's process group, so
// a Ctrl-C at the terminal reaches it too. The child is always reaped before this returns.
//
// A program that cannot be started is not an exception: it gives exit code 127 (ENOENT) or 126
// (anything else), spawn_error set and a message in err, as a shell would. Throws
// launcher::error only when this process cannot set up the run (out of fds, argv empty).
subprocess_result run(const std::vector<std::string>& argv, const subprocess_options& options = {});

// run, then throws launcher::error unless the program exited with 0:
//   program_not_found  "<argv[0]> not found[: <not_found_hint>]"
//   timed_out          "<command line> timed out after N ms"
//   command_failed     "<command line> failed (exit code N): <stderr>" (or "killed by signal")
subprocess_result run_checked(const std::vector<std::string>& argv,
                              const subprocess_options& options = {});

// The command line for messages and logs, quoted the way a POSIX shell would need it so that
// it can be copied and pasted: words with nothing special stay bare, others go in single quotes.
// Only for display: run never goes through a shell.
std::string describe(const std::vector<std::string>& argv);

} // namespace qmpkit::launcher
