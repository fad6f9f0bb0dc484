// Fuzzes the reader of snapshots.json (metadata_store::parse) with arbitrary text.
//
// Invariants:
//   - parse returns a tree or throws snapshot::error of kind metadata_corrupt or
//     metadata_too_new, whose message names the file; nothing else is thrown, nothing crashes;
//   - a parsed tree keeps snapshot_tree's invariants: it serializes to text that parses back to
//     an equal tree, and serializing that gives the same text;
//   - everything the CLI shows of a parsed tree (tree, list, info, JSON, YAML) renders without
//     throwing.

#include "fuzz_check.hpp"

#include <qmpkit/snapshot/error.hpp>
#include <qmpkit/snapshot/metadata_store.hpp>
#include <qmpkit/snapshot/tree_view.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace {

namespace snapshot = qmpkit::snapshot;
using qmpkit::fuzz::check;

const std::filesystem::path origin = "/nonexistent/fuzz/snapshots.json";

std::optional<snapshot::snapshot_tree> parse(std::string_view text) {
    try {
        return snapshot::metadata_store::parse(text, origin);
    } catch (const snapshot::error& e) {
        check(e.kind() == snapshot::error_kind::metadata_corrupt ||
                  e.kind() == snapshot::error_kind::metadata_too_new,
              "a metadata error of another kind");
        check(std::string_view(e.what()).find(origin.string()) != std::string_view::npos,
              "a metadata error that does not name the file");
        return std::nullopt;
    }
}

std::string fixed_time(std::int64_t seconds) {
    return std::to_string(seconds);
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const auto tree = parse(std::string_view(reinterpret_cast<const char*>(data), size));
    if (!tree)
        return 0;

    const auto text = snapshot::metadata_store::serialize(*tree);
    const auto again = parse(text);
    check(again.has_value(), "serialize wrote text that parse refuses");
    check(*again == *tree, "serialize wrote text that parses as another tree");
    check(snapshot::metadata_store::serialize(*again) == text, "serializing twice differs");

    (void)snapshot::render_tree(*tree);
    snapshot::list_options options;
    options.parent_column = true;
    (void)snapshot::render_list(*tree, options, fixed_time);
    (void)snapshot::to_json(*tree);
    for (const auto* record : tree->all()) {
        (void)snapshot::render_info(*tree, record->name, "vm", fixed_time);
        (void)snapshot::to_yaml(*record);
        (void)tree->ancestors(record->name);
        (void)tree->descendants(record->name);
    }
    return 0;
}
