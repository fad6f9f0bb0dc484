#pragma once

// Bash completion and the man page, printed from the command tree itself so that they can never
// list a command or an option the tool does not have. The build runs
// `qmpkit --generate bash-completion|man FILE` and installs the results; with definition-man it
// prints qmpkit-definition(5), the definition's fields, from the definition's schema, and with
// definition-json-schema the same as a JSON Schema for editors.

#include <CLI/CLI.hpp>

#include <string_view>

namespace qmpkit::cli {

// Whether argv asks for generated documentation (`--generate KIND [FILE]`).
bool is_generate_request(int argc, char** argv);

// Writes KIND (bash-completion, man, definition-man or definition-json-schema) for `app` to FILE,
// or to stdout without one. Returns the exit code.
int generate(const CLI::App& app, int argc, char** argv, std::string_view version);

} // namespace qmpkit::cli
