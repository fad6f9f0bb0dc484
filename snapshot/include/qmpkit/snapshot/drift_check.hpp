#pragma once

// Whether the snapshot metadata still agrees with the images. Other tools (qemu-img, virsh, a
// user's rm) can change images behind qmpkit's back; an operation that trusted stale metadata
// would revert to the wrong data or delete a snapshot qmpkit did not make.

#include <qmpkit/launcher/qemu_img.hpp>
#include <qmpkit/launcher/vm_definition.hpp>
#include <qmpkit/snapshot/snapshot_tree.hpp>

#include <filesystem>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

namespace qmpkit::snapshot {

struct drift {
    enum class kind {
        missing_in_image,  // metadata records an internal snapshot the image does not hold
        unknown_to_qmpkit, // the image holds an internal snapshot no metadata records for it
        file_missing,      // an image, overlay or memory file the metadata names is gone
        chain_broken,      // an overlay's backing file is not the image recorded below it
        memory_missing,    // the snapshot saved RAM, but its images hold disk-only snapshots
        unreadable,        // the image is there but could not be inspected (the message says why)
        current_missing,   // the metadata's current snapshot does not exist
        interrupted,       // an operation was interrupted (its journal is in the state directory)
        stray_file,        // a temporary file qmpkit made and never renamed into place
        unknown_overlay,   // an overlay over one of the VM's images that nothing records
    };

    kind what = kind::missing_in_image;
    std::string snapshot; // the metadata's snapshot, or for unknown_to_qmpkit the image's one
    std::string disk;     // empty for a memory file
    std::filesystem::path file;
    std::string description; // one line, for people

    friend bool operator==(const drift&, const drift&) = default;
};

// "missing in image", "unknown to qmpkit", "file missing", "chain broken", "memory missing",
// "unreadable", "current missing", "interrupted", "stray file", "unknown overlay"
std::string_view to_string(drift::kind k) noexcept;

// `qemu-img info` of one image (launcher::qemu_img::info, or a fake in tests); may throw.
using image_info_function = std::function<launcher::image_info(const std::filesystem::path&)>;

struct drift_options {
    // The VM's current definition: its disks' images are searched for unknown snapshots too.
    const launcher::vm_definition* definition = nullptr;
    // Whether a file exists; empty means std::filesystem::exists. Tests fake it.
    std::function<bool(const std::filesystem::path&)> exists{};
    // The VM's state directory: searched for qmpkit's leftover temporary files and overlays.
    // Empty: no directory is searched (the image directories neither).
    std::filesystem::path state_dir{};
    // The files in a directory; empty means std::filesystem::directory_iterator. Tests fake it.
    std::function<std::vector<std::filesystem::path>(const std::filesystem::path&)> list_dir{};
};

// Every disagreement found, in the metadata's creation order (disks in record order), followed
// by the unknown snapshots, image by image. Each image is inspected once. Nothing is changed.
//
// Checks:
//   internal disk   the image exists and holds a snapshot with the record's name
//   external disk   the frozen image and the overlay exist, and the overlay's full backing file
//                   is the frozen image (compared as lexically normal paths)
//   memory          an internal snapshot with memory has vm state in at least one of its
//                   images; an external one's memory file exists
//   every image     mentioned by any record or the definition: each internal snapshot in it is
//                   one that a record names for that image
//   files           with a state directory: qmpkit's temporary files left by a crash in it and
//                   in the images' directories (".snapshots.json.XXXXXX", ".NAME.qmpkit-tmp-*"),
//                   and qcow2 files there that no record or definition names but whose backing
//                   file is one of the VM's images (the VM's own overlay-naming, "VM-DISK.*.qcow2",
//                   outside the state directory)
std::vector<drift> check_drift(const snapshot_tree& tree, const image_info_function& info,
                               const drift_options& options = {});

// What `snapshot check --repair` does about drift, decided without touching anything.
struct repair_plan {
    snapshot_tree tree;                          // the metadata after the repair
    bool tree_changed = false;                   // tree must be written
    std::vector<std::filesystem::path> remove{}; // leftovers qmpkit made that nothing needs
    std::vector<std::string> done{};             // what the plan does, one line each
    std::vector<drift> left{};                   // what a person has to decide
};

// The reconciliation rules. It never deletes data it cannot prove qmpkit made and nothing needs:
//   missing in image, file missing (an image or memory file)
//                     the snapshot's data is gone: its record is dropped, its children move to
//                     its parent, current moves to the parent when it was current
//   file missing (an external snapshot's overlay)
//                     left: the snapshot itself (its frozen image) is whole, and reverting to it
//                     makes a new overlay
//   chain broken      when the recorded image's own backing file is the overlay's backing file
//                     (the image in between was merged), the record follows; else left
//   unknown to qmpkit adopted as a new internal snapshot when every writable disk of the
//                     definition holds it and no record has its name (memory when one image
//                     holds VM state); else left, never deleted
//   stray file        removed (qmpkit's own temporary names only)
//   current missing   done when the metadata was read: current is cleared
//   anything else     left (unreadable images, unknown overlays, memory missing, interrupted)
// options.definition is the VM's current definition (needed for adoption); info is asked about
// the images the rules need.
repair_plan plan_repair(const snapshot_tree& tree, const std::vector<drift>& found,
                        const image_info_function& info, const drift_options& options = {});

// What snapshot_manager::repair did, and what is still wrong afterwards.
struct repair_result {
    std::vector<std::string> done;
    std::vector<drift> remaining;
};

} // namespace qmpkit::snapshot
