#include "text.hpp"

#include <qmpkit/launcher/definition_loader.hpp>
#include <qmpkit/snapshot/drift_check.hpp>

#include <algorithm>
#include <cctype>
#include <exception>
#include <map>
#include <optional>
#include <set>
#include <utility>

namespace qmpkit::snapshot {
namespace {

namespace fs = std::filesystem;

std::string shown(std::string_view s) {
    return "\"" + detail::printable(s) + "\"";
}
std::string shown_path(const fs::path& p) {
    return shown(p.native());
}

// What one image holds, asked once however many snapshots mention it.
struct probe_result {
    std::optional<launcher::image_info> info;
    std::string failure; // when info is empty
};

class checker {
public:
    checker(const snapshot_tree& tree, const image_info_function& info,
            const drift_options& options)
        : tree_(tree)
        , info_(info)
        , options_(options) {}

    std::vector<drift> run() {
        for (const auto* record : tree_.all())
            check_record(*record);
        if (options_.definition)
            for (const auto& d : options_.definition->disks)
                mention(d.file, d.name);
        for (const auto& [image, disk] : mentioned_)
            check_unknown(image, disk);
        if (!options_.state_dir.empty())
            check_files();
        return std::move(found_);
    }

private:
    bool exists(const fs::path& p) const {
        if (options_.exists)
            return options_.exists(p);
        std::error_code ec;
        return fs::exists(p, ec);
    }

    const probe_result& probe(const fs::path& image) {
        const auto key = image.lexically_normal();
        auto it = probes_.find(key);
        if (it != probes_.end())
            return it->second;
        probe_result r;
        try {
            r.info = info_(image);
        } catch (const std::exception& e) {
            r.failure = e.what();
        }
        return probes_.emplace(key, std::move(r)).first->second;
    }

    void report(drift::kind what, const std::string& snapshot, const std::string& disk,
                const fs::path& file, std::string description) {
        found_.push_back({what, snapshot, disk, file, std::move(description)});
    }

    // The image's info, or nullptr after reporting why there is none.
    const launcher::image_info* inspect(const fs::path& image, const std::string& snapshot,
                                        const std::string& disk, std::string_view role) {
        if (!exists(image)) {
            report(drift::kind::file_missing, snapshot, disk, image,
                   std::string(role) + " " + shown_path(image) + " of disk " + shown(disk) +
                       " is missing");
            return nullptr;
        }
        const auto& r = probe(image);
        if (!r.info) {
            report(drift::kind::unreadable, snapshot, disk, image,
                   "cannot inspect " + shown_path(image) + ": " + detail::printable(r.failure));
            return nullptr;
        }
        return &*r.info;
    }

    void mention(const fs::path& image, const std::string& disk) {
        if (image.empty())
            return;
        const auto key = image.lexically_normal();
        if (std::none_of(mentioned_.begin(), mentioned_.end(),
                         [&](const auto& m) { return m.first == key; }))
            mentioned_.emplace_back(key, disk);
    }

    void check_record(const snapshot_record& record) {
        bool any_found = false;
        bool any_vm_state = false;
        for (const auto& d : record.disks) {
            switch (d.how) {
            case disk_snapshot::mode::internal: {
                mention(d.image, d.disk);
                known_.emplace(d.image.lexically_normal(), record.name);
                const auto* info = inspect(d.image, record.name, d.disk, "image");
                if (!info)
                    break;
                const auto& sns = info->snapshots;
                auto it = std::find_if(sns.begin(), sns.end(),
                                       [&](const auto& s) { return s.name == record.name; });
                if (it == sns.end()) {
                    report(drift::kind::missing_in_image, record.name, d.disk, d.image,
                           "image " + shown_path(d.image) + " of disk " + shown(d.disk) +
                               " holds no internal snapshot named " + shown(record.name));
                } else {
                    any_found = true;
                    any_vm_state = any_vm_state || it->vm_state_size > 0;
                }
                break;
            }
            case disk_snapshot::mode::external:
                mention(d.image, d.disk);
                mention(d.overlay, d.disk);
                check_chain(record, d);
                break;
            case disk_snapshot::mode::excluded:
                mention(d.image, d.disk);
                break;
            }
        }
        if (record.memory && record.location == snapshot_location::internal && any_found &&
            !any_vm_state)
            report(drift::kind::memory_missing, record.name, "", {},
                   "snapshot " + shown(record.name) +
                       " saved the VM's memory, but its images hold only disk snapshots by "
                       "that name");
        if (record.memory && record.location == snapshot_location::external &&
            !record.memory_file.empty() && !exists(record.memory_file))
            report(drift::kind::file_missing, record.name, "", record.memory_file,
                   "memory file " + shown_path(record.memory_file) + " of snapshot " +
                       shown(record.name) + " is missing");
    }

    void check_chain(const snapshot_record& record, const disk_snapshot& d) {
        const bool have_image = exists(d.image);
        if (!have_image)
            report(drift::kind::file_missing, record.name, d.disk, d.image,
                   "frozen image " + shown_path(d.image) + " of disk " + shown(d.disk) +
                       " is missing");
        const auto* overlay = inspect(d.overlay, record.name, d.disk, "overlay");
        if (!overlay || !have_image)
            return;
        std::optional<fs::path> backing;
        if (overlay->full_backing_file)
            backing = fs::path(*overlay->full_backing_file);
        else if (overlay->backing_file)
            backing = d.overlay.parent_path() / *overlay->backing_file;
        if (!backing) {
            report(drift::kind::chain_broken, record.name, d.disk, d.overlay,
                   "overlay " + shown_path(d.overlay) + " of disk " + shown(d.disk) +
                       " has no backing file; it should be " + shown_path(d.image));
        } else if (backing->lexically_normal() != d.image.lexically_normal()) {
            report(drift::kind::chain_broken, record.name, d.disk, d.overlay,
                   "overlay " + shown_path(d.overlay) + " of disk " + shown(d.disk) +
                       " is backed by " + shown_path(*backing) + ", not " + shown_path(d.image));
        }
    }

    void check_unknown(const fs::path& image, const std::string& disk) {
        if (!exists(image))
            return; // reported with its snapshot, or the definition's problem, not ours
        const auto& r = probe(image);
        if (!r.info) {
            if (!reported_unreadable(image))
                report(drift::kind::unreadable, "", disk, image,
                       "cannot inspect " + shown_path(image) + ": " + detail::printable(r.failure));
            return;
        }
        for (const auto& s : r.info->snapshots) {
            if (known_.contains({image, s.name}))
                continue;
            std::string why = tree_.contains(s.name) ? "qmpkit's snapshot by that name does not "
                                                       "include this image"
                                                     : "qmpkit has no snapshot by that name";
            report(drift::kind::unknown_to_qmpkit, s.name, disk, image,
                   "image " + shown_path(image) + " of disk " + shown(disk) +
                       " holds internal snapshot " + shown(s.name) + " (id " +
                       detail::printable(s.id) + "); " + why);
        }
    }

    std::vector<fs::path> list(const fs::path& dir) const {
        if (options_.list_dir)
            return options_.list_dir(dir);
        std::vector<fs::path> files;
        std::error_code ec;
        for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec))
            files.push_back(it->path());
        std::sort(files.begin(), files.end());
        return files;
    }

    bool is_mentioned(const fs::path& p) const {
        const auto key = p.lexically_normal();
        return std::any_of(mentioned_.begin(), mentioned_.end(),
                           [&](const auto& m) { return m.first == key; });
    }

    // write_file_atomically's ".NAME.XXXXXX" for the files the snapshot layer writes.
    static bool is_state_temp(const std::string& name) {
        for (std::string_view base :
             {".snapshots.json.", ".definition.yaml.", ".snapshot-op.json."})
            if (name.size() == base.size() + 6 && name.starts_with(base))
                return std::all_of(name.begin() + static_cast<long>(base.size()), name.end(),
                                   [](unsigned char c) { return std::isalnum(c); });
        return false;
    }

    // qemu_img's ".NAME.qmpkit-tmp-SUFFIX" for an image of this VM.
    bool is_image_temp(const fs::path& dir, const std::string& name) const {
        const auto at = name.find(".qmpkit-tmp-");
        if (!name.starts_with(".") || at == std::string::npos || at < 2)
            return false;
        const auto target = name.substr(1, at - 1);
        return is_mentioned(dir / target) ||
               (!vm_prefix().empty() && target.starts_with(vm_prefix()));
    }

    std::string vm_prefix() const {
        return options_.definition ? options_.definition->name + "-" : std::string();
    }

    void check_files() {
        const auto state = options_.state_dir.lexically_normal();
        std::set<fs::path> dirs;
        for (const auto& [image, disk] : mentioned_)
            if (image.parent_path() != state)
                dirs.insert(image.parent_path());
        scan(state, true);
        for (const auto& d : dirs)
            scan(d, false);
    }

    void scan(const fs::path& dir, bool is_state_dir) {
        for (const auto& file : list(dir)) {
            const auto name = file.filename().string();
            if ((is_state_dir && is_state_temp(name)) || is_image_temp(dir, name)) {
                report(drift::kind::stray_file, "", "", file,
                       "temporary file " + shown_path(file) + " was left by an interrupted qmpkit");
                continue;
            }
            if (!name.ends_with(".qcow2") || is_mentioned(file))
                continue;
            if (!is_state_dir && (vm_prefix().empty() || !name.starts_with(vm_prefix())))
                continue; // another VM's or the user's image
            const auto& r = probe(file);
            if (!r.info)
                continue;
            std::optional<fs::path> backing;
            if (r.info->full_backing_file)
                backing = fs::path(*r.info->full_backing_file);
            else if (r.info->backing_file)
                backing = dir / *r.info->backing_file;
            if (!backing || !is_mentioned(*backing))
                continue;
            report(drift::kind::unknown_overlay, "", "", file,
                   "overlay " + shown_path(file) + " over " + shown_path(*backing) +
                       " is recorded by no snapshot and not used by the VM's definition");
        }
    }

    bool reported_unreadable(const fs::path& image) const {
        return std::any_of(found_.begin(), found_.end(), [&](const drift& d) {
            return d.what == drift::kind::unreadable && d.file.lexically_normal() == image;
        });
    }

    const snapshot_tree& tree_;
    const image_info_function& info_;
    const drift_options& options_;
    std::map<fs::path, probe_result> probes_;
    std::vector<std::pair<fs::path, std::string>> mentioned_; // image, a disk using it
    std::set<std::pair<fs::path, std::string>> known_;        // image, snapshot name
    std::vector<drift> found_;
};

} // namespace

std::string_view to_string(drift::kind k) noexcept {
    switch (k) {
    case drift::kind::missing_in_image:
        return "missing in image";
    case drift::kind::unknown_to_qmpkit:
        return "unknown to qmpkit";
    case drift::kind::file_missing:
        return "file missing";
    case drift::kind::chain_broken:
        return "chain broken";
    case drift::kind::memory_missing:
        return "memory missing";
    case drift::kind::unreadable:
        return "unreadable";
    case drift::kind::current_missing:
        return "current missing";
    case drift::kind::interrupted:
        return "interrupted";
    case drift::kind::stray_file:
        return "stray file";
    case drift::kind::unknown_overlay:
        return "unknown overlay";
    }
    return "unreadable";
}

std::vector<drift> check_drift(const snapshot_tree& tree, const image_info_function& info,
                               const drift_options& options) {
    return checker(tree, info, options).run();
}

namespace {

std::optional<launcher::image_info> info_or_none(const image_info_function& info,
                                                 const fs::path& image) {
    try {
        return info(image);
    } catch (const std::exception&) {
        return std::nullopt;
    }
}

bool is_overlay_of(const snapshot_record& r, const fs::path& file) {
    return std::any_of(r.disks.begin(), r.disks.end(), [&](const disk_snapshot& d) {
        return d.how == disk_snapshot::mode::external &&
               d.overlay.lexically_normal() == file.lexically_normal();
    });
}

// A record for an internal snapshot that every writable disk of `def` holds, or nullopt.
std::optional<snapshot_record> adoptable(const snapshot_tree& tree, const std::string& name,
                                         const image_info_function& info,
                                         const launcher::vm_definition& def) {
    if (!is_valid_snapshot_name(name) || tree.contains(name))
        return std::nullopt;
    snapshot_record r;
    r.name = name;
    r.description = "adopted by `qmpkit snapshot check --repair` from the images";
    r.location = snapshot_location::internal;
    r.parent = tree.current();
    r.definition = launcher::dump_definition(def);
    bool any = false;
    for (const auto& d : def.disks) {
        if (d.read_only) {
            r.disks.push_back({d.name, disk_snapshot::mode::excluded, d.file, {}, d.node_name});
            continue;
        }
        auto i = info_or_none(info, d.file);
        if (!i)
            return std::nullopt;
        auto s = std::find_if(i->snapshots.begin(), i->snapshots.end(),
                              [&](const auto& x) { return x.name == name; });
        if (s == i->snapshots.end())
            return std::nullopt;
        any = true;
        r.created_at = std::max(r.created_at, s->date_sec);
        r.memory = r.memory || s->vm_state_size > 0;
        r.disks.push_back({d.name, disk_snapshot::mode::internal, d.file, {}, d.node_name});
    }
    if (!any)
        return std::nullopt;
    // A snapshot with RAM was taken of a running VM; a disk-only one (qemu-img) of a shut-off one.
    r.state = r.memory ? vm_state::running : vm_state::shutoff;
    return r;
}

} // namespace

repair_plan plan_repair(const snapshot_tree& tree, const std::vector<drift>& found,
                        const image_info_function& info, const drift_options& options) {
    repair_plan plan{tree};
    std::set<std::string> dropped, adopted;
    auto drop = [&](const std::string& name, const std::string& why) {
        if (!plan.tree.contains(name) || !dropped.insert(name).second)
            return;
        plan.tree.remove(name);
        plan.tree_changed = true;
        plan.done.push_back("forgot snapshot " + shown(name) + ": " + why);
    };
    for (const auto& d : found) {
        switch (d.what) {
        case drift::kind::missing_in_image:
            drop(d.snapshot, d.description);
            break;
        case drift::kind::file_missing: {
            const auto* r = tree.find(d.snapshot);
            if (r && is_overlay_of(*r, d.file))
                plan.left.push_back(d); // the snapshot is whole; a revert makes a new overlay
            else
                drop(d.snapshot, d.description);
            break;
        }
        case drift::kind::chain_broken: {
            const auto* r = plan.tree.find(d.snapshot);
            if (!r) {
                plan.left.push_back(d);
                break;
            }
            auto updated = *r;
            bool fixed = false;
            for (auto& x : updated.disks) {
                if (x.how != disk_snapshot::mode::external ||
                    x.overlay.lexically_normal() != d.file.lexically_normal())
                    continue;
                auto top = info_or_none(info, x.overlay);
                auto below = info_or_none(info, x.image);
                if (!top || !below || !top->full_backing_file || !below->full_backing_file)
                    continue;
                if (fs::path(*top->full_backing_file).lexically_normal() ==
                    fs::path(*below->full_backing_file).lexically_normal()) {
                    plan.done.push_back("snapshot " + shown(d.snapshot) + ": disk " +
                                        shown(x.disk) + " now sits on " +
                                        shown_path(*top->full_backing_file) + " (" +
                                        shown_path(x.image) + " was merged into it)");
                    x.image = *top->full_backing_file;
                    fixed = true;
                }
            }
            if (fixed) {
                plan.tree.update(updated);
                plan.tree_changed = true;
            } else {
                plan.left.push_back(d);
            }
            break;
        }
        case drift::kind::unknown_to_qmpkit: {
            if (adopted.contains(d.snapshot))
                break;
            std::optional<snapshot_record> r;
            if (options.definition)
                r = adoptable(plan.tree, d.snapshot, info, *options.definition);
            if (!r) {
                plan.left.push_back(d);
                break;
            }
            adopted.insert(d.snapshot);
            plan.tree.add(*r);
            plan.tree_changed = true;
            plan.done.push_back("adopted internal snapshot " + shown(d.snapshot) +
                                ", which every disk holds" + (r->memory ? ", with memory" : ""));
            break;
        }
        case drift::kind::stray_file:
            plan.remove.push_back(d.file);
            plan.done.push_back("removed " + shown_path(d.file) + ", a temporary file of qmpkit");
            break;
        default:
            plan.left.push_back(d);
            break;
        }
    }
    // Drift about a snapshot that was dropped needs nothing more.
    std::erase_if(plan.left, [&](const drift& d) {
        return d.what != drift::kind::unknown_to_qmpkit && dropped.contains(d.snapshot);
    });
    return plan;
}

} // namespace qmpkit::snapshot
