#pragma once

// The snapshot metadata for people (virsh-style text) and for programs (JSON, YAML). Text that
// came from users or files (names, descriptions, paths) is printed with control characters
// escaped (\n, \x1b, \u202e), so nothing in it can move the cursor or forge a line; shell
// metacharacters are printed as they are.

#include <qmpkit/snapshot/snapshot_tree.hpp>

#include <boost/json/value.hpp>

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

namespace qmpkit::snapshot {

// Turns created_at into text. Injected so that tests do not depend on the time zone.
using time_formatter = std::function<std::string(std::int64_t seconds_since_epoch)>;

// "2024-01-31 13:05:09 +0100" in the local time zone (TZ), like virsh.
std::string format_local_time(std::int64_t seconds_since_epoch);

// Like `virsh snapshot-list --tree`: roots and children in creation order, a blank line between
// root trees, the current snapshot marked with a trailing " *". Empty text for no snapshots.
//
//   s1
//     |
//     +- s2 *
//     |   |
//     |   +- s3
//     |
//     +- s4
std::string render_tree(const snapshot_tree& tree);

// The rows and columns of `snapshot list`. Filters combine (roots and leaves together: the
// snapshots that are both).
struct list_options {
    bool roots = false;                          // --roots: only snapshots without a parent
    bool leaves = false;                         // --leaves: only snapshots without children
    bool current_only = false;                   // --current: only the current snapshot
    std::optional<snapshot_location> location{}; // --internal / --external
    bool parent_column = false;                  // --parent: add a Parent column
    bool mark_current = true;                    // " *" after the current snapshot's name
    bool names_only = false; // --name: the names alone, one a line (virsh snapshot-list --name)
};

// Like `virsh snapshot-list`: columns Name, Creation Time, State, Location (and Parent), in
// creation order; header and rule even when no row is left.
//
//    Name   Creation Time               State     Location
//   --------------------------------------------------------
//    s1     2024-01-31 13:05:09 +0100   running   internal
std::string render_list(const snapshot_tree& tree, const list_options& options = {},
                        const time_formatter& format_time = format_local_time);

// Like `virsh snapshot-info`, plus what virsh leaves out: creation time, memory, each disk (name,
// mode, file, overlay) and the description. Throws error(not_found).
std::string render_info(const snapshot_tree& tree, std::string_view name, std::string_view vm_name,
                        const time_formatter& format_time = format_local_time);

// `snapshot list --json`: an array in creation order, each entry the record (to_json) without its
// definition, plus "current" (bool) and "children" (count).
boost::json::value to_json(const snapshot_tree& tree);

// `snapshot dump`: the whole record as YAML, the definition as a literal block.
std::string to_yaml(const snapshot_record& record);

} // namespace qmpkit::snapshot
