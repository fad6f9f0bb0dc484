#pragma once

#include <qmpkit/snapshot/snapshot_record.hpp>

#include <cstddef>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace qmpkit::snapshot {

// All snapshots of one VM, linked by their parent names, plus which one is current (the one the
// VM's disks last started from: the latest taken or reverted to). A value: copying it is cheap
// (records are shared, immutable, between copies), so an operation changes a copy and stores it
// only when everything it did succeeded.
//
// Invariants, kept by every member: names are unique and valid, every parent exists, there are
// no cycles, and current, when set, names a snapshot.
//
// "Creation order" is by created_at, ties broken by name; lists of names come in that order.
// Members that take a name throw error(not_found) when there is no snapshot by that name.
class snapshot_tree {
public:
    snapshot_tree() = default;

    // Adds a snapshot; current is left alone (the caller decides whether the new one becomes
    // current). Throws error: invalid_name, name_taken, not_found for a parent that is not there.
    void add(snapshot_record record);

    // Replaces the record of the same name (a new description, a moved overlay). A changed
    // parent must exist and must not be the snapshot itself or one of its descendants.
    void update(snapshot_record record);

    // nullptr when there is none. Valid until the snapshot is removed or updated.
    const snapshot_record* find(std::string_view name) const noexcept;
    const snapshot_record& at(std::string_view name) const;
    bool contains(std::string_view name) const noexcept { return find(name) != nullptr; }

    // Removes one snapshot: its children get its parent as theirs (roots when it was a root), and
    // when it was current its parent becomes current (or none). Returns the removed record.
    snapshot_record remove(std::string_view name);

    // Removes the snapshot and everything below it and returns their names, deepest first, so
    // that every snapshot comes before its parent (the order to delete their data in). Current
    // moves to the snapshot's parent when it was one of them.
    std::vector<std::string> remove_with_descendants(std::string_view name);

    std::vector<std::string> children(std::string_view name) const;
    // Everything below the snapshot, depth first (each child followed by its own descendants).
    std::vector<std::string> descendants(std::string_view name) const;
    std::size_t descendant_count(std::string_view name) const { return descendants(name).size(); }
    std::optional<std::string> parent(std::string_view name) const;
    // Parent, grandparent, ... up to the root.
    std::vector<std::string> ancestors(std::string_view name) const;

    std::vector<std::string> roots() const;
    std::vector<std::string> leaves() const;

    // nullopt clears it. Throws error(not_found) for a name that is not there.
    void set_current(std::optional<std::string> name);
    const std::optional<std::string>& current() const noexcept { return current_; }
    bool is_current(std::string_view name) const noexcept { return current_ && *current_ == name; }

    // Every record, in creation order. Valid while the tree is not changed.
    std::vector<const snapshot_record*> all() const;

    std::size_t size() const noexcept { return records_.size(); }
    bool empty() const noexcept { return records_.empty(); }

    // Same records and same current.
    friend bool operator==(const snapshot_tree& a, const snapshot_tree& b);

private:
    using record_ptr = std::shared_ptr<const snapshot_record>;

    const record_ptr& entry(std::string_view name) const;
    std::vector<const snapshot_record*> child_records(std::string_view name) const;
    void collect_descendants(std::string_view name, std::vector<std::string>& out) const;

    std::map<std::string, record_ptr, std::less<>> records_;
    std::optional<std::string> current_;
};

// true when a comes before b in creation order.
bool created_before(const snapshot_record& a, const snapshot_record& b) noexcept;

} // namespace qmpkit::snapshot
