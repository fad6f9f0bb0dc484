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
    };

    kind what = kind::missing_in_image;
    std::string snapshot; // the metadata's snapshot, or for unknown_to_qmpkit the image's one
    std::string disk;     // empty for a memory file
    std::filesystem::path file;
    std::string description; // one line, for people

    friend bool operator==(const drift&, const drift&) = default;
};

// "missing in image", "unknown to qmpkit", "file missing", "chain broken", "memory missing",
// "unreadable"
std::string_view to_string(drift::kind k) noexcept;

// `qemu-img info` of one image (launcher::qemu_img::info, or a fake in tests); may throw.
using image_info_function = std::function<launcher::image_info(const std::filesystem::path&)>;

struct drift_options {
    // The VM's current definition: its disks' images are searched for unknown snapshots too.
    const launcher::vm_definition* definition = nullptr;
    // Whether a file exists; empty means std::filesystem::exists. Tests fake it.
    std::function<bool(const std::filesystem::path&)> exists{};
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
std::vector<drift> check_drift(const snapshot_tree& tree, const image_info_function& info,
                               const drift_options& options = {});

} // namespace qmpkit::snapshot
