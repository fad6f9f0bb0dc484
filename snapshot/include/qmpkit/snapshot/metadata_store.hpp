#pragma once

#include <qmpkit/launcher/state_directory.hpp>
#include <qmpkit/snapshot/snapshot_tree.hpp>

#include <filesystem>
#include <string>
#include <string_view>

namespace qmpkit::snapshot {

// A VM's snapshot metadata, one JSON file in its state directory:
//
//   {"format": "qmpkit-snapshots", "version": 1, "written_by": "qmpkit 0.1.0",
//    "current": "s2" | null, "snapshots": [record, ...]}      (records: see to_json)
//
// The version changes whenever an older qmpkit would misread a newer file, and a file in a newer
// version is refused (metadata_too_new) rather than read in part and then saved without what
// was not understood; written_by lets the refusal say which qmpkit to use.
//
// No locking here: callers hold the VM's lock (launcher::vm_lock) from load to save.
class metadata_store {
public:
    static constexpr std::string_view format_name = "qmpkit-snapshots";
    static constexpr int format_version = 1;
    static constexpr std::string_view file_name = "snapshots.json";

    explicit metadata_store(std::filesystem::path file);
    // <state dir>/snapshots.json
    explicit metadata_store(const launcher::state_directory& dir);

    const std::filesystem::path& path() const noexcept { return file_; }

    // A missing file is an empty tree (no snapshot taken yet). Throws error:
    //   metadata_corrupt  not JSON, not this format, a field of the wrong type or value, duplicate
    //                     names, a parent or current that does not exist, a cycle; the message
    //                     names the file and the field
    //   metadata_too_new  a newer format version
    //   metadata_io       the file exists but cannot be read
    snapshot_tree load() const;

    // Replaces the file atomically (temp file, fsync, rename, directory fsync), mode 0600: a crash
    // leaves the old metadata or the new, never a mix. Throws error(metadata_io). The directory
    // must exist.
    void save(const snapshot_tree& tree) const;

    // The file's text for a tree and back, without touching the file system; origin names the
    // file in messages.
    static std::string serialize(const snapshot_tree& tree);
    static snapshot_tree parse(std::string_view text, const std::filesystem::path& origin);

private:
    std::filesystem::path file_;
};

} // namespace qmpkit::snapshot
