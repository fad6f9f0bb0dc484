// Fuzzes the VM definition loader and validator with arbitrary YAML text.
//
// Invariants:
//   - load_definition_from_string returns a definition or throws launcher::error of kind
//     definition whose diagnostics (at least one) all name the file and a line and column;
//     nothing else is thrown and nothing crashes;
//   - check_definition on a loaded definition returns diagnostics (located the same way) and
//     throws nothing;
//   - dump_definition writes YAML that loads back to an equal definition, and dumping that gives
//     the same text again.

#include "fuzz_check.hpp"

#include <qmpkit/launcher/definition_loader.hpp>
#include <qmpkit/launcher/definition_validator.hpp>
#include <qmpkit/launcher/error.hpp>

#include <cstdint>
#include <cstdio>
#include <optional>
#include <string_view>

namespace {

namespace launcher = qmpkit::launcher;
using qmpkit::fuzz::check;

const std::filesystem::path origin = "/nonexistent/fuzz/vm.yaml";

void check_located(const launcher::diagnostic& d, const char* what) {
    if (d.file != origin.string() || d.line < 1 || d.column < 1 || d.message.empty()) {
        std::fprintf(stderr, "diagnostic: %s\n", launcher::to_string(d).c_str());
        check(false, what);
    }
}

std::optional<launcher::vm_definition> load(std::string_view text, const char* what) {
    try {
        return launcher::load_definition_from_string(text, origin);
    } catch (const launcher::error& e) {
        check(e.kind() == launcher::error_kind::definition, "a loader error of another kind");
        check(!e.diagnostics().empty(), "a definition error without diagnostics");
        for (const auto& d : e.diagnostics())
            check_located(d, what);
        return std::nullopt;
    }
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string_view text(reinterpret_cast<const char*>(data), size);
    const auto def = load(text, "a loader diagnostic without file, line or column");
    if (!def)
        return 0;

    launcher::validate_options options;
    options.check_files = false; // the paths name nothing on this machine
    for (const auto& d : launcher::check_definition(*def, options))
        check_located(d, "a validator diagnostic without file, line or column");

    const auto dumped = launcher::dump_definition(*def);
    const auto again = load(dumped, "dump_definition wrote YAML that does not load");
    if (!again) {
        std::fprintf(stderr, "dumped:\n%s\n", dumped.c_str());
        check(false, "dump_definition wrote YAML that does not load");
    }
    if (!(*again == *def)) {
        std::fprintf(stderr, "dumped:\n%s\n", dumped.c_str());
        check(false, "dump_definition wrote YAML that loads as another definition");
    }
    check(launcher::dump_definition(*again) == dumped, "dumping twice gives another text");
    return 0;
}
