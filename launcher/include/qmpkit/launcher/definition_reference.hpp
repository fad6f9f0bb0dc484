#pragma once

#include <string>
#include <vector>

namespace qmpkit::launcher {

// One mapping of the definition's YAML and its fields, as a Markdown table (Field, Type,
// Default, Meaning), printed from the same schema the loader, the validator and
// dump_definition use: configs/README.md holds these tables, and a test keeps them equal.
struct definition_fields {
    std::string section; // "" for the top level, "disks[]", "disks[].encryption", "network", ...
    std::string table;   // Markdown, one line per field after the header, each ending in '\n'
};

// Every mapping, the top level first, then each in the order its field appears.
std::vector<definition_fields> definition_reference();

} // namespace qmpkit::launcher
