#include "interrupted_operation.hpp"

#include <qmpkit/launcher/atomic_file.hpp>
#include <qmpkit/launcher/qemu_img.hpp>
#include <qmpkit/snapshot/metadata_store.hpp>

#include <boost/json.hpp>

#include <algorithm>
#include <set>

namespace qmpkit::snapshot::detail {
namespace {

namespace json = boost::json;

const launcher::qemu_img& img() {
    static const launcher::qemu_img instance;
    return instance;
}

std::string quoted(const fs::path& p) {
    return "'" + p.string() + "'";
}

// The qemu jobs this operation started ("qmpkit-save-..."), brought to an end: waited for while
// they run, completed when `complete_ready` and they wait for it, dismissed once concluded.
// Returns the errors of the concluded ones ("" for success), or nullopt when there was none.
std::optional<std::string> settle_jobs(qmp::client& qmp, const std::string& prefix,
                                       bool complete_ready) {
    std::optional<std::string> outcome;
    const auto deadline = std::chrono::steady_clock::now() + 2min;
    std::set<std::string> completed;
    for (;;) {
        bool busy = false;
        const auto jobs = qmp.execute("query-jobs");
        for (const auto& v : jobs.as_array()) {
            const auto& job = v.as_object();
            const std::string id(job.at("id").as_string());
            if (!id.starts_with(prefix))
                continue;
            const std::string status(job.at("status").as_string());
            if (status == "concluded") {
                const auto* e = job.if_contains("error");
                outcome = e ? std::string(e->as_string()) : std::string();
                qmp.execute("job-dismiss", {{"id", id}});
            } else if (status == "ready" && complete_ready) {
                if (completed.insert(id).second)
                    qmp.execute("job-complete", {{"id", id}});
                busy = true;
            } else if (status != "null" && status != "ready") {
                busy = true;
            }
        }
        if (!busy)
            return outcome;
        if (std::chrono::steady_clock::now() > deadline)
            throw error(error_kind::other,
                        "qemu job " + prefix + "* of the interrupted operation still runs");
        std::this_thread::sleep_for(20ms);
    }
}

// A memory save the interrupted operation left running is let finish, and cancelled only if
// it does not within a minute: until it ends qemu keeps the disks inactive, and `cont` would not
// give them back. Cancelling one in its last phase can leave qemu 7.2's disks inactive while
// the guest runs; the next save then aborts qemu (bdrv_inactivate_recurse). One that finished
// leaves the VM in postmigrate, which `cont` resumes with its disks active again.
void settle_migration(qmp::client& qmp) {
    const auto started = std::chrono::steady_clock::now();
    bool cancelled = false;
    for (;;) {
        const auto info = qmp.execute("query-migrate");
        const auto* status = info.as_object().if_contains("status");
        const std::string state = status ? std::string(status->as_string()) : "none";
        if (state == "none" || state == "completed" || state == "failed" || state == "cancelled")
            return;
        const auto waited = std::chrono::steady_clock::now() - started;
        if (!cancelled && waited > 1min) {
            qmp.execute("migrate_cancel");
            cancelled = true;
        }
        if (waited > 2min)
            throw error(error_kind::other,
                        "the interrupted memory save does not end (" + state + ")");
        std::this_thread::sleep_for(20ms);
    }
}

std::string run_status(qmp::client& qmp) {
    return std::string(qmp.execute("query-status").as_object().at("status").as_string());
}

// Whether any block node of the running qemu has `file` open.
bool in_use(qmp::client& qmp, const fs::path& file) {
    const auto nodes = launcher::list_block_nodes(qmp);
    return std::any_of(nodes.begin(), nodes.end(),
                       [&](const auto& n) { return same_file(n.file, file); });
}

std::optional<std::string> node_of_image(qmp::client& qmp, const fs::path& file) {
    if (auto n = launcher::format_node_of(qmp, file))
        return n->node_name;
    return std::nullopt;
}

bool holds_tag(const fs::path& image, const std::string& tag) {
    try {
        const auto info = img().info(image);
        return std::any_of(info.snapshots.begin(), info.snapshots.end(),
                           [&](const auto& s) { return s.name == tag; });
    } catch (const std::exception&) {
        return false;
    }
}

bool backed_by(const fs::path& overlay, const fs::path& image) {
    std::error_code ec;
    if (!fs::exists(overlay, ec))
        return false;
    try {
        const auto info = img().info(overlay);
        if (info.full_backing_file)
            return same_file(*info.full_backing_file, image);
        return info.backing_file && same_file(overlay.parent_path() / *info.backing_file, image);
    } catch (const std::exception&) {
        return false;
    }
}

// Whether `file` is in the chain of the disk's image, on disk (qemu gone).
bool in_chain_on_disk(const fs::path& top, const fs::path& file) {
    if (same_file(top, file))
        return true;
    try {
        for (const auto& info : img().info_chain(top))
            if (same_file(info.filename, file) ||
                (info.full_backing_file && same_file(*info.full_backing_file, file)))
                return true;
    } catch (const std::exception&) {
        return true; // cannot tell: assume it is still needed
    }
    return false;
}

class resolver {
public:
    resolver(vm_context& ctx, const operation_journal& j)
        : ctx_(ctx)
        , j_(j) {
        if (!launcher::is_running(ctx_.dir))
            ctx_.qmp.reset();
        else if (!ctx_.qmp)
            ctx_.connect();
    }

    std::vector<std::string> run() {
        if (j_.operation == "create-internal")
            create_internal();
        else if (j_.operation == "create-external")
            create_external();
        else if (j_.operation == "delete-external")
            delete_external();
        else if (j_.operation == "revert")
            revert();
        else if (j_.operation == "create-reset-point")
            create_reset_point();
        else
            throw error(error_kind::metadata_corrupt, "the interrupted operation '" + j_.operation +
                                                          "' is unknown to this qmpkit");
        remove_journal(ctx_.dir);
        return std::move(done_);
    }

private:
    bool qemu_up() const { return ctx_.qmp.has_value(); }

    fs::path metadata_file() const { return metadata_store(ctx_.dir).path(); }

    // snapshots.json as the operation would have left it; false when it already was.
    bool roll_forward_metadata() {
        const auto now = digest_of_file(metadata_file());
        if (now == digest_of(j_.after_metadata))
            return false;
        if (now != j_.before_digest)
            throw error(error_kind::drift, "snapshots.json changed since the interrupted " +
                                               j_.operation + " of '" + j_.snapshot +
                                               "' began; left as it is");
        const auto tree = metadata_store::parse(j_.after_metadata, metadata_file());
        metadata_store(ctx_.dir).save(tree);
        ctx_.tree = tree;
        return true;
    }

    void roll_forward_definition() {
        if (!j_.after_definition)
            return;
        launcher::write_file_atomically(ctx_.dir.definition_copy(), *j_.after_definition);
        ctx_.def = launcher::load_definition(ctx_.dir.definition_copy());
    }

    void remove_file(const fs::path& f) {
        std::error_code ec;
        if (!fs::exists(f, ec))
            return;
        if (qemu_up() && in_use(*ctx_.qmp, f)) {
            done_.push_back("kept " + quoted(f) + ": the running VM uses it");
            return;
        }
        if (fs::remove(f, ec))
            done_.push_back("removed " + quoted(f) + " (made by the interrupted " + j_.operation +
                            " of '" + j_.snapshot + "')");
    }

    void resume_if_we_paused() {
        if (qemu_up() && j_.was_running && run_status(*ctx_.qmp) == "postmigrate") {
            ctx_.qmp->execute("cont");
            done_.push_back("resumed the VM, paused by the interrupted memory save");
        }
    }

    void create_internal() {
        if (qemu_up())
            settle_jobs(*ctx_.qmp, "qmpkit-save-", false);
        std::vector<const journal_tag*> holders;
        for (const auto& t : j_.tags)
            if (holds_tag(t.image, t.tag))
                holders.push_back(&t);
        if (!j_.tags.empty() && holders.size() == j_.tags.size()) {
            if (roll_forward_metadata())
                done_.push_back("snapshot '" + j_.snapshot +
                                "' was complete in every image: recorded it");
            return;
        }
        for (const auto* t : holders) {
            if (qemu_up()) {
                const auto node = node_of_image(*ctx_.qmp, t->image);
                if (!node)
                    throw error(error_kind::drift, "cannot delete the incomplete snapshot '" +
                                                       t->tag + "' from " + quoted(t->image) +
                                                       ": the running VM does not use it");
                ctx_.qmp->execute("blockdev-snapshot-delete-internal-sync",
                                  {{"device", *node}, {"name", t->tag}});
            } else {
                img().snapshot_delete(t->image, t->tag);
            }
            done_.push_back("deleted the incomplete snapshot '" + t->tag + "' from " +
                            quoted(t->image));
        }
    }

    // Whether every disk switched to the overlay the operation made: qemu runs on it, or (qemu
    // gone) it exists over the image it froze.
    bool on_new_overlays() {
        if (j_.overlays.empty())
            return false;
        if (qemu_up()) {
            const auto live = live_disks(*ctx_.qmp);
            return std::all_of(j_.overlays.begin(), j_.overlays.end(), [&](const auto& o) {
                auto it = live.find(o.disk);
                return it != live.end() && same_file(it->second.file, o.overlay);
            });
        }
        return std::all_of(j_.overlays.begin(), j_.overlays.end(),
                           [&](const auto& o) { return backed_by(o.overlay, o.image); });
    }

    void create_external() {
        if (qemu_up() && !j_.creates.empty())
            settle_migration(*ctx_.qmp);
        const bool switched = on_new_overlays();
        if (switched) {
            roll_forward_definition();
            if (roll_forward_metadata())
                done_.push_back("snapshot '" + j_.snapshot +
                                "' had its overlays in place: recorded it");
        } else {
            for (const auto& o : j_.overlays)
                remove_file(o.overlay);
            for (const auto& f : j_.creates)
                remove_file(f);
        }
        resume_if_we_paused();
    }

    // A reset point: its RAM and device state in its directory (the first of `creates`), the
    // disks switched to new overlays over the images it freezes. Without its point.json it is
    // not a reset point anyone can use: the directory goes. The overlays stay when qemu runs on
    // them (the guest's writes are there), and the definition then names them.
    void create_reset_point() {
        if (qemu_up()) {
            settle_migration(*ctx_.qmp);
            // Left on, a later memory snapshot would save no RAM (it lives in a shared file).
            ignore_shared_ram(*ctx_.qmp, false);
        }
        const bool switched = on_new_overlays();
        if (switched) {
            const auto before = launcher::read_file(ctx_.dir.definition_copy());
            if (j_.after_definition && before != *j_.after_definition) {
                roll_forward_definition();
                done_.push_back("the VM runs on the overlays of the interrupted reset point '" +
                                j_.snapshot + "': its definition names them now");
            }
        } else {
            for (const auto& o : j_.overlays)
                remove_file(o.overlay);
        }
        std::error_code ec;
        if (!j_.creates.empty() && fs::exists(j_.creates.front(), ec) &&
            !fs::exists(j_.creates.front() / "point.json", ec)) {
            fs::remove_all(j_.creates.front(), ec);
            done_.push_back("removed the incomplete reset point '" + j_.snapshot + "' (" +
                            quoted(j_.creates.front()) + ")");
        }
        resume_if_we_paused();
    }

    void delete_external() {
        std::optional<std::string> job;
        if (qemu_up())
            job = settle_jobs(*ctx_.qmp, "qmpkit-merge-", true);
        std::vector<bool> merged;
        if (qemu_up()) {
            const auto live = live_disks(*ctx_.qmp);
            for (const auto& o : j_.overlays) {
                auto it = live.find(o.disk);
                bool there =
                    it == live.end() || same_file(it->second.file, o.overlay) ||
                    std::any_of(it->second.backing_chain.begin(), it->second.backing_chain.end(),
                                [&](const auto& f) { return same_file(f, o.overlay); });
                merged.push_back(!there);
            }
        } else {
            for (const auto& o : j_.overlays) {
                auto d = std::find_if(ctx_.def.disks.begin(), ctx_.def.disks.end(),
                                      [&](const auto& x) { return x.name == o.disk; });
                merged.push_back(d != ctx_.def.disks.end() &&
                                 !in_chain_on_disk(d->file, o.overlay));
            }
        }
        const bool all = std::all_of(merged.begin(), merged.end(), [](bool b) { return b; });
        const bool none = std::none_of(merged.begin(), merged.end(), [](bool b) { return b; });
        if (all) {
            roll_forward_definition();
            if (roll_forward_metadata())
                done_.push_back("snapshot '" + j_.snapshot + "' was merged: deleted it");
            for (const auto& o : j_.overlays)
                remove_file(o.overlay);
            return;
        }
        if (none && qemu_up() && !job)
            return; // the merge never began: nothing changed
        // A merge began: the frozen image may hold data written after the snapshot.
        if (ctx_.tree.contains(j_.snapshot)) {
            auto tree = ctx_.tree;
            tree.remove(j_.snapshot);
            metadata_store(ctx_.dir).save(tree);
            ctx_.tree = std::move(tree);
        }
        // A disk merged but not yet recorded runs on its base now.
        bool def_changed = false;
        for (std::size_t i = 0; i < j_.overlays.size(); ++i) {
            if (!merged[i])
                continue;
            for (auto& d : ctx_.def.disks)
                if (d.name == j_.overlays[i].disk && same_file(d.file, j_.overlays[i].overlay)) {
                    d.file = j_.overlays[i].image;
                    def_changed = true;
                }
            remove_file(j_.overlays[i].overlay);
        }
        if (def_changed)
            ctx_.save_definition();
        done_.push_back("snapshot '" + j_.snapshot +
                        "' was partly merged, so its data is no longer intact: forgot it (the "
                        "VM's current disks are whole)");
    }

    void revert() {
        if (!qemu_up())
            return;
        const auto outcome = settle_jobs(*ctx_.qmp, "qmpkit-load-", false);
        if (outcome && outcome->empty() && roll_forward_metadata())
            done_.push_back("the VM was reverted to '" + j_.snapshot + "': made it current");
    }

    vm_context& ctx_;
    const operation_journal& j_;
    std::vector<std::string> done_;
};

} // namespace

std::vector<std::string> resolve_interrupted(vm_context& ctx, const operation_journal& journal) {
    return resolver(ctx, journal).run();
}

void resolve_after_failure(vm_context& ctx, const operation_journal& journal) noexcept {
    try {
        resolve_interrupted(ctx, journal);
    } catch (const std::exception&) {
        // The journal stays for `snapshot check --repair`.
    }
}

std::vector<std::string> resolve_left_operation(vm_context& ctx) {
    std::error_code ec;
    if (!fs::exists(journal_file(ctx.dir), ec))
        return {};
    const auto journal = read_journal(ctx.dir);
    return journal ? resolve_interrupted(ctx, *journal) : std::vector<std::string>{};
}

void require_no_interrupted_operation(const launcher::state_directory& dir) {
    std::error_code ec;
    if (!fs::exists(journal_file(dir), ec))
        return;
    std::string what = "an earlier snapshot operation";
    try {
        if (auto j = read_journal(dir))
            what = "an earlier " + j->operation + " of snapshot '" + j->snapshot + "' (pid " +
                   std::to_string(j->pid) + ")";
    } catch (const std::exception&) {
    }
    throw error(error_kind::drift, what + " on VM '" + dir.vm_name() +
                                       "' was interrupted: run `qmpkit snapshot check " +
                                       dir.vm_name() + " --repair` first");
}

} // namespace qmpkit::snapshot::detail
