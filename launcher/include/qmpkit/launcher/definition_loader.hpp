#pragma once

#include <qmpkit/launcher/vm_definition.hpp>

#include <filesystem>
#include <string>
#include <string_view>

namespace qmpkit::launcher {

// Reads a VM definition: YAML syntax, the shape and type of every field, unknown keys, enum
// values, sizes, ${VAR} expansion in paths. Relative paths are resolved against the file's
// directory and defaults are filled in (node names, boot mode, MAC), so the result is
// self-contained. All problems found are thrown together as one error. This does not check
// values against each other or against the file system: that is validate_definition's job.
// Nothing on disk is created or changed.
vm_definition load_definition(const std::filesystem::path& file);

// The same, from text; origin stands for the file it would have been read from (it names the file
// in diagnostics and its directory anchors relative paths) and need not exist.
vm_definition load_definition_from_string(std::string_view yaml,
                                          const std::filesystem::path& origin);

// YAML that loads back to an equal definition, with every field written out and absolute paths.
// For a copy of the definition kept with a VM's state or inside a snapshot.
std::string dump_definition(const vm_definition& def);

} // namespace qmpkit::launcher
