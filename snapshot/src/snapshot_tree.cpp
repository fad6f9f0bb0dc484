#include "text.hpp"

#include <qmpkit/snapshot/error.hpp>
#include <qmpkit/snapshot/snapshot_tree.hpp>

#include <algorithm>
#include <set>

namespace qmpkit::snapshot {
namespace {

[[noreturn]] void not_found(std::string_view name) {
    throw error(error_kind::not_found,
                "no snapshot named \"" + detail::printable_short(name) + "\"");
}

void sort_by_creation(std::vector<const snapshot_record*>& records) {
    std::sort(records.begin(), records.end(),
              [](const auto* a, const auto* b) { return created_before(*a, *b); });
}

std::vector<std::string> names_of(const std::vector<const snapshot_record*>& records) {
    std::vector<std::string> names;
    names.reserve(records.size());
    for (const auto* r : records)
        names.push_back(r->name);
    return names;
}

} // namespace

bool created_before(const snapshot_record& a, const snapshot_record& b) noexcept {
    if (a.created_at != b.created_at)
        return a.created_at < b.created_at;
    return a.name < b.name;
}

void snapshot_tree::add(snapshot_record record) {
    require_valid_snapshot_name(record.name);
    if (contains(record.name))
        throw error(error_kind::name_taken, "a snapshot named \"" +
                                                detail::printable_short(record.name) +
                                                "\" already exists");
    if (record.parent && !contains(*record.parent))
        throw error(error_kind::not_found,
                    "parent snapshot \"" + detail::printable_short(*record.parent) + "\" of \"" +
                        detail::printable_short(record.name) + "\" does not exist");
    auto name = record.name;
    records_.emplace(std::move(name), std::make_shared<const snapshot_record>(std::move(record)));
}

void snapshot_tree::update(snapshot_record record) {
    auto it = records_.find(record.name);
    if (it == records_.end())
        not_found(record.name);
    if (record.parent != it->second->parent && record.parent) {
        const auto& p = *record.parent;
        if (!contains(p))
            not_found(p);
        const auto below = descendants(record.name);
        if (p == record.name || std::find(below.begin(), below.end(), p) != below.end())
            throw error(error_kind::other, "snapshot \"" + detail::printable_short(p) +
                                               "\" cannot become the parent of \"" +
                                               detail::printable_short(record.name) +
                                               "\": it is that snapshot or below it");
    }
    it->second = std::make_shared<const snapshot_record>(std::move(record));
}

const snapshot_record* snapshot_tree::find(std::string_view name) const noexcept {
    auto it = records_.find(name);
    return it == records_.end() ? nullptr : it->second.get();
}

const snapshot_tree::record_ptr& snapshot_tree::entry(std::string_view name) const {
    auto it = records_.find(name);
    if (it == records_.end())
        not_found(name);
    return it->second;
}

const snapshot_record& snapshot_tree::at(std::string_view name) const {
    return *entry(name);
}

snapshot_record snapshot_tree::remove(std::string_view name) {
    const record_ptr removed = entry(name); // keeps the record alive past erase
    for (const auto* child : child_records(name)) {
        auto moved = *child;
        moved.parent = removed->parent;
        auto& slot = records_.find(child->name)->second;
        slot = std::make_shared<const snapshot_record>(std::move(moved));
    }
    if (is_current(name))
        current_ = removed->parent;
    records_.erase(records_.find(name));
    return *removed;
}

std::vector<std::string> snapshot_tree::remove_with_descendants(std::string_view name) {
    const auto& top = at(name);
    const auto new_current = top.parent;

    // Depth of each, then deepest first; the sort is stable so siblings stay in creation order.
    std::vector<std::pair<std::size_t, std::string>> doomed{{0, top.name}};
    for (std::size_t i = 0; i < doomed.size(); ++i)
        for (const auto* child : child_records(doomed[i].second))
            doomed.emplace_back(doomed[i].first + 1, child->name);
    std::stable_sort(doomed.begin(), doomed.end(),
                     [](const auto& a, const auto& b) { return a.first > b.first; });

    std::vector<std::string> names;
    names.reserve(doomed.size());
    for (auto& [depth, n] : doomed) {
        if (is_current(n))
            current_ = new_current;
        records_.erase(records_.find(n));
        names.push_back(std::move(n));
    }
    return names;
}

std::vector<const snapshot_record*> snapshot_tree::child_records(std::string_view name) const {
    std::vector<const snapshot_record*> out;
    for (const auto& [n, r] : records_)
        if (r->parent && *r->parent == name)
            out.push_back(r.get());
    sort_by_creation(out);
    return out;
}

std::vector<std::string> snapshot_tree::children(std::string_view name) const {
    entry(name);
    return names_of(child_records(name));
}

void snapshot_tree::collect_descendants(std::string_view name,
                                        std::vector<std::string>& out) const {
    for (const auto* child : child_records(name)) {
        out.push_back(child->name);
        collect_descendants(child->name, out);
    }
}

std::vector<std::string> snapshot_tree::descendants(std::string_view name) const {
    entry(name);
    std::vector<std::string> out;
    collect_descendants(name, out);
    return out;
}

std::optional<std::string> snapshot_tree::parent(std::string_view name) const {
    return at(name).parent;
}

std::vector<std::string> snapshot_tree::ancestors(std::string_view name) const {
    std::vector<std::string> out;
    for (auto p = at(name).parent; p; p = at(*p).parent)
        out.push_back(*p);
    return out;
}

std::vector<std::string> snapshot_tree::roots() const {
    std::vector<const snapshot_record*> out;
    for (const auto& [n, r] : records_)
        if (!r->parent)
            out.push_back(r.get());
    sort_by_creation(out);
    return names_of(out);
}

std::vector<std::string> snapshot_tree::leaves() const {
    std::set<std::string_view> parents;
    for (const auto& [n, r] : records_)
        if (r->parent)
            parents.insert(*r->parent);
    std::vector<const snapshot_record*> out;
    for (const auto& [n, r] : records_)
        if (!parents.contains(n))
            out.push_back(r.get());
    sort_by_creation(out);
    return names_of(out);
}

void snapshot_tree::set_current(std::optional<std::string> name) {
    if (name && !contains(*name))
        not_found(*name);
    current_ = std::move(name);
}

std::vector<const snapshot_record*> snapshot_tree::all() const {
    std::vector<const snapshot_record*> out;
    out.reserve(records_.size());
    for (const auto& [n, r] : records_)
        out.push_back(r.get());
    sort_by_creation(out);
    return out;
}

bool operator==(const snapshot_tree& a, const snapshot_tree& b) {
    return a.current_ == b.current_ &&
           std::equal(a.records_.begin(), a.records_.end(), b.records_.begin(), b.records_.end(),
                      [](const auto& x, const auto& y) { return *x.second == *y.second; });
}

} // namespace qmpkit::snapshot
