#pragma once

// Timing the qmpkit tool as a harness calls it: one process per call, started with posix_spawn
// (vfork and exec, as Python's subprocess and Go's os/exec start a program), the clock started
// just before the spawn and stopped just after waitpid. Shared by the CLI benchmarks.

#include <chrono>
#include <filesystem>
#include <string>
#include <vector>

namespace qmpkit::bench {

using clock_type = std::chrono::steady_clock;

struct timed_call {
    double ms = 0;
    int status = 0;  // as waitpid gives it
    std::string out; // stdout, when captured
    bool ok() const;
};

// Runs `program args...` with QMPKIT_STATE_DIR=state (unless empty); stdout to /dev/null unless
// `capture`. Reading the output happens before waitpid, inside the timed span, as a harness
// reading the output would.
timed_call run_timed(const std::filesystem::path& program, const std::vector<std::string>& args,
                     const std::filesystem::path& state, bool capture = false);

double percentile(std::vector<double> v, int p);
double ms_since(clock_type::time_point t);

} // namespace qmpkit::bench
