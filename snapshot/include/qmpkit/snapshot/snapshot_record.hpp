#pragma once

// What qmpkit remembers about one snapshot: plain data. The tree (snapshot_tree) holds them, the
// store (metadata_store) keeps them in <state dir>/snapshots.json, the views print them.

#include <qmpkit/launcher/qemu_img.hpp>

#include <boost/json/object.hpp>
#include <boost/json/value.hpp>

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace qmpkit::snapshot {

// Where the disk contents went (virsh's "Location"): inside the qcow2 images, or frozen in the
// images while the VM goes on writing to new overlay files.
enum class snapshot_location { internal, external };

// The VM's state when the snapshot was taken (virsh's "State"); a revert returns to it.
enum class vm_state { running, paused, shutoff };

struct disk_snapshot {
    enum class mode {
        internal, // a snapshot inside `image`, under the snapshot's name
        external, // `image` was frozen and `overlay` put on top of it
        excluded, // not captured (read-only, raw, or left out on request)
    };

    std::string disk{}; // the definition's disk name
    mode how = mode::internal;
    // internal: the image holding the snapshot; external: the file that was frozen (from then
    // on the overlay's backing file). May be empty for an excluded disk.
    std::filesystem::path image{};
    // external only: the overlay created at snapshot time, that the VM wrote to afterwards.
    std::filesystem::path overlay{};
    // Block node of the overlay (external) or of the disk (internal).
    std::string node_name{};

    friend bool operator==(const disk_snapshot&, const disk_snapshot&) = default;
};

struct snapshot_record {
    std::string name{};
    std::string description{};
    std::int64_t created_at = 0; // seconds since the epoch
    vm_state state = vm_state::shutoff;
    snapshot_location location = snapshot_location::internal;
    bool memory = false; // RAM and device state saved (internal while running, external --memspec)
    std::filesystem::path memory_file{}; // external with memory
    std::vector<disk_snapshot> disks{};
    std::optional<std::string> parent{};
    std::string definition{}; // the VM definition as it was (YAML, launcher::dump_definition)
    bool quiesced = false;    // guest file systems frozen by the guest agent

    friend bool operator==(const snapshot_record&, const snapshot_record&) = default;
};

// The spelling used in snapshots.json, the views and the CLI.
std::string_view to_string(snapshot_location v) noexcept;
std::string_view to_string(vm_state v) noexcept;
std::string_view to_string(disk_snapshot::mode v) noexcept;

// The inverse of to_string; nullopt for anything else (matching is exact, case included).
std::optional<snapshot_location> snapshot_location_from_string(std::string_view s) noexcept;
std::optional<vm_state> vm_state_from_string(std::string_view s) noexcept;
std::optional<disk_snapshot::mode> disk_snapshot_mode_from_string(std::string_view s) noexcept;

// Snapshot names end up in file names (overlays), qemu-img and QMP arguments, command lines
// and terminals. Allowed: 1 to 128 bytes of printable UTF-8, spaces and shell metacharacters
// included (qmpkit never passes a name through a shell). Refused, each with its reason:
//   - '/' and NUL (file names), control characters (C0, DEL, C1, U+2028/U+2029) and bidi
//     overrides/isolates (they make a name print as something else);
//   - "." and ".." (path components), a leading '-' (reads as an option to qemu-img);
// Names of digits only are allowed (virsh's default names are the time in seconds), although
// qcow2 looks a snapshot up by id before name: see shadowing_snapshot.
//   - invalid UTF-8 (snapshots.json is JSON, which is UTF-8).
inline constexpr std::size_t max_snapshot_name_bytes = 128;

// nullopt for a good name, else what is wrong with it ("starts with '-' ...").
std::optional<std::string> snapshot_name_problem(std::string_view name);
bool is_valid_snapshot_name(std::string_view name);
// Throws error(invalid_name) quoting the name (escaped, shortened) and the problem. `what` says
// what the name is for: reset points follow the same rules.
void require_valid_snapshot_name(std::string_view name, std::string_view what = "snapshot name");

// qcow2 looks a tag up as a snapshot id first and as a name only then (snapshot-load, HMP loadvm,
// -loadvm, qemu-img snapshot -a), so in an image whose snapshot with id 2 is named "a", loading
// "2" loads "a". Deleting looks names up only (the snapshot-delete job, delvm,
// blockdev-snapshot-delete-internal-sync with a name, qemu-img snapshot -d).
// The snapshot among `snapshots` (one image's, as qemu-img info lists them) that a load of `name`
// would reach instead of the one named `name`; nullopt when there is none.
std::optional<launcher::image_snapshot>
shadowing_snapshot(const std::vector<launcher::image_snapshot>& snapshots, std::string_view name);

// The record as snapshots.json holds it (and `snapshot dump --json` prints it). Every field is
// written, absent optionals as null or "".
boost::json::object to_json(const snapshot_record& record);

// The inverse. Throws error(metadata_corrupt) naming the field and what is wrong with it,
// prefixed by `where` ("snapshots[2]: disks[0].mode: unknown value \"foo\" ..."). Unknown fields
// are refused too: an older qmpkit that dropped them on its next save would lose data.
snapshot_record record_from_json(const boost::json::value& value, std::string_view where = {});

} // namespace qmpkit::snapshot
