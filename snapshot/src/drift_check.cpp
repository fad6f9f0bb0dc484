#include "text.hpp"

#include <qmpkit/snapshot/drift_check.hpp>

#include <algorithm>
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
    }
    return "unreadable";
}

std::vector<drift> check_drift(const snapshot_tree& tree, const image_info_function& info,
                               const drift_options& options) {
    return checker(tree, info, options).run();
}

} // namespace qmpkit::snapshot
