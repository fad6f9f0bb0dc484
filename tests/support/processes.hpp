#pragma once

// Processes of the machine, as tests that check for leaks see them.

#include <string>

namespace qmpkit::test {

// Live (not zombie) processes whose command line mentions `needle` and whose program name holds
// `program`.
int processes_mentioning(const std::string& needle, const std::string& program = "");

} // namespace qmpkit::test
