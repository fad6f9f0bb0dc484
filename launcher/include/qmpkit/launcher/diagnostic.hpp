#pragma once

#include <string>
#include <vector>

namespace qmpkit::launcher {

// One problem found in a VM definition, pointing at the YAML that caused it. line and column are
// 1-based; 0 means the position is unknown (e.g. a definition built in code, not loaded).
struct diagnostic {
    std::string file;
    int line = 0;
    int column = 0;
    std::string field; // e.g. "disks[1].size"; empty for problems not tied to a field
    std::string message;

    friend bool operator==(const diagnostic&, const diagnostic&) = default;
};

// "FILE:LINE:COL: FIELD: message", leaving out the parts that are unknown.
std::string to_string(const diagnostic& d);

// Orders diagnostics as the file reads, top to bottom; those without a position keep their order
// and go last.
void sort_by_position(std::vector<diagnostic>& diagnostics);

} // namespace qmpkit::launcher
