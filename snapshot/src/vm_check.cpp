#include "interrupted_operation.hpp"
#include "operation_journal.hpp"
#include "vm_check.hpp"
#include "vm_context.hpp"

#include <qmpkit/launcher/atomic_file.hpp>
#include <qmpkit/launcher/definition_loader.hpp>
#include <qmpkit/launcher/error.hpp>
#include <qmpkit/launcher/qemu_img.hpp>
#include <qmpkit/snapshot/metadata_store.hpp>
#include <qmpkit/snapshot/snapshot_manager.hpp>

#include <boost/json.hpp>

namespace qmpkit::snapshot {

namespace fs = std::filesystem;

namespace detail {
namespace {

namespace json = boost::json;

// `cached`: image information may come from the state directory's cache (see
// qemu_img::info_cached), as for reports; a repair, which acts on it, reads it afresh.
std::vector<drift> check_with(const launcher::state_directory& dir, const snapshot_tree& tree,
                              bool cached = false) {
    std::optional<vm_definition> def;
    if (fs::exists(dir.definition_copy()))
        def = launcher::load_definition(dir.definition_copy());
    drift_options o;
    o.definition = def ? &*def : nullptr;
    o.state_dir = dir.path();
    const launcher::qemu_img img;
    const auto cache = dir.path() / "image-info.cache.json";
    return check_drift(
        tree, [&](const fs::path& p) { return cached ? img.info_cached(p, cache) : img.info(p); },
        o);
}

std::optional<drift> interrupted(const launcher::state_directory& dir) {
    if (!fs::exists(journal_file(dir)))
        return std::nullopt;
    std::string what = "an earlier snapshot operation";
    try {
        if (auto j = read_journal(dir))
            what = "the " + j->operation + " of snapshot '" + j->snapshot + "' (qmpkit pid " +
                   std::to_string(j->pid) + ")";
    } catch (const std::exception& e) {
        what += " (" + std::string(e.what()) + ")";
    }
    return drift{drift::kind::interrupted, "", "", journal_file(dir),
                 what + " was interrupted; --repair finishes or undoes it"};
}

} // namespace

std::pair<snapshot_tree, std::optional<drift>>
load_leniently(const launcher::state_directory& dir) {
    const metadata_store store(dir);
    try {
        return {store.load(), std::nullopt};
    } catch (const error& e) {
        if (e.kind() != error_kind::metadata_corrupt)
            throw;
        // Only a dangling "current" is forgiven; anything else is refused as before.
        boost::system::error_code ec;
        json::parse_options options;
        options.allow_invalid_utf8 = true;
        auto doc = json::parse(launcher::read_file(store.path()), ec, {}, options);
        if (ec || !doc.is_object() || !doc.as_object().contains("current") ||
            !doc.as_object().at("current").is_string())
            throw;
        const std::string current(doc.as_object().at("current").as_string());
        doc.as_object()["current"] = nullptr;
        snapshot_tree tree;
        try {
            tree = metadata_store::parse(json::serialize(doc), store.path());
        } catch (const error&) {
            throw e;
        }
        if (tree.contains(current))
            throw;
        return {tree, drift{drift::kind::current_missing, current, "", store.path(),
                            "the current snapshot \"" + current + "\" does not exist"}};
    }
}

std::vector<drift> check_vm(const launcher::state_directory& dir) {
    auto [tree, current] = load_leniently(dir);
    std::vector<drift> found;
    if (current)
        found.push_back(*current);
    if (auto i = interrupted(dir))
        found.push_back(*i);
    auto rest = check_with(dir, tree, true);
    found.insert(found.end(), rest.begin(), rest.end());
    return found;
}

} // namespace detail

repair_result snapshot_manager::repair() {
    launcher::state_directory dir(
        options_.state_root.empty() ? launcher::default_state_root() : options_.state_root, vm_);
    repair_result result;
    {
        // A dangling current stops every other operation from reading the metadata: first.
        if (!fs::exists(dir.definition_copy()))
            throw error(error_kind::not_found,
                        "no VM named '" + vm_ + "' in " + dir.path().parent_path().string());
        auto lock = launcher::vm_lock::acquire(dir.lock_file(), "repairing snapshot metadata",
                                               options_.lock_timeout);
        auto [tree, current] = detail::load_leniently(dir);
        if (current) {
            metadata_store(dir).save(tree);
            result.done.push_back("cleared the current snapshot \"" + current->snapshot +
                                  "\", which does not exist");
        }
    }
    detail::vm_context ctx(vm_, options_, "repairing snapshot metadata");
    if (auto journal = detail::read_journal(ctx.dir)) {
        auto done = detail::resolve_interrupted(ctx, *journal);
        result.done.insert(result.done.end(), done.begin(), done.end());
    }
    const auto found = detail::check_with(ctx.dir, ctx.tree);
    drift_options o;
    o.definition = &ctx.def;
    o.state_dir = ctx.dir.path();
    const launcher::qemu_img img;
    auto plan = plan_repair(
        ctx.tree, found, [&](const fs::path& p) { return img.info(p); }, o);
    if (plan.tree_changed) {
        ctx.tree = plan.tree;
        ctx.save_tree();
    }
    for (const auto& f : plan.remove) {
        std::error_code ignored;
        fs::remove(f, ignored);
    }
    result.done.insert(result.done.end(), plan.done.begin(), plan.done.end());
    result.remaining = detail::check_vm(ctx.dir);
    return result;
}

} // namespace qmpkit::snapshot
