#pragma once

// Snapshots of one VM: create, revert and delete them — internal (RAM and disks inside the
// qcow2 images, by qemu's snapshot jobs, or qemu-img for a shut-off VM), external disk-only
// (overlays taken in one transaction), and external with memory (migration to a file plus
// overlays) — and keep their metadata tree in the VM's state directory.
//
// Every operation either completes or leaves images and metadata as they were: metadata is
// written only after qemu has done its part, and files an operation creates are removed when a
// later step fails.

#include <qmpkit/snapshot/drift_check.hpp>
#include <qmpkit/snapshot/snapshot_record.hpp>
#include <qmpkit/snapshot/snapshot_tree.hpp>

#include <boost/json/object.hpp>

#include <chrono>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace spdlog {
class logger;
}

namespace qmpkit::snapshot {

struct manager_options {
    std::filesystem::path state_root; // empty: launcher::default_state_root()
    std::chrono::milliseconds lock_timeout{std::chrono::seconds(60)};
    std::shared_ptr<spdlog::logger> logger;
    // What is happening and how far along it is (0..1), for a progress bar.
    std::function<void(const std::string& what, double fraction)> progress;
};

// --diskspec: what to do with one disk.
struct disk_choice {
    std::string disk;
    disk_snapshot::mode how = disk_snapshot::mode::external;
    std::filesystem::path overlay; // external: the overlay file (default beside the image)
};

struct create_request {
    std::string name; // empty: the creation time in seconds, as virsh names it ("snapshot-" and
                      // the seconds when that is taken)
    std::string description;
    bool disk_only = false;                           // external overlays, no memory
    std::optional<std::filesystem::path> memory_file; // external with memory (--memspec)
    bool halt = false;                                // stop the VM once the snapshot exists
    bool no_metadata = false;                         // take it, but keep no record of it
    bool quiesce = false; // disk-only: guest file systems frozen by the guest agent meanwhile
    std::vector<disk_choice> disks;
};

struct revert_request {
    bool running = false; // leave the VM running, whatever the snapshot's state was
    bool paused = false;
    bool force = false; // revert even where the VM's configuration differs from the snapshot's
};

struct delete_request {
    bool children = false;      // the snapshot and all its descendants
    bool children_only = false; // only its descendants
    bool metadata_only = false; // forget them, keep the data in the images
};

class snapshot_manager {
public:
    // vm: a VM's name (it needs a state directory: it has been started, or its definition is
    // given with adopt_definition).
    snapshot_manager(std::string vm, manager_options options = {});

    // For a VM never started: records its definition so that offline snapshots can be taken.
    void adopt_definition(const std::filesystem::path& yaml);

    snapshot_tree tree() const;
    std::vector<drift> check() const;
    // `snapshot check --repair`: finishes or takes back an interrupted operation, then
    // reconciles the metadata with the images (plan_repair), under the VM's lock.
    repair_result repair();

    snapshot_record create(const create_request& request);
    void revert(const std::string& name, const revert_request& request);
    // What create(), revert() and remove() would do, step by step, without doing any of it: the
    // very steps they run (QMP commands as sent, qemu-img calls, qemu stopped and started, the
    // journal and the records written), after the same checks, which refuse the same way. One
    // JSON object per step; what the steps hold is listed by the CLI's --print-plan help.
    std::vector<boost::json::object> plan(const create_request& request);
    std::vector<boost::json::object> plan(const std::string& name, const revert_request& request);
    // A delete of several snapshots (children) that merges more than one external snapshot is
    // refused: each merge's plan depends on the images the merge before it leaves.
    std::vector<boost::json::object> plan(const std::string& name, const delete_request& request);
    // Returns the names deleted, deepest first.
    std::vector<std::string> remove(const std::string& name, const delete_request& request);
    void set_current(const std::string& name);

private:
    std::string vm_;
    manager_options options_;
};

} // namespace qmpkit::snapshot
