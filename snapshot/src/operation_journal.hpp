#pragma once

// Private: the record of a snapshot operation in progress, <state>/snapshot-op.json.
//
// Metadata is written only after qemu and qemu-img have done their part, so a crash (of qmpkit
// or of qemu) in between leaves images that hold more, or less, than snapshots.json says:
// an overlay qemu writes to that no record names, a memory file, an internal snapshot in some
// images. The journal, written before the first change and removed after the last, says what
// the operation was about to create and write, so that `snapshot check --repair` (and the
// operation's own failure path) can finish it or take it back, and can tell files qmpkit made
// from files a user made.

#include <qmpkit/launcher/state_directory.hpp>

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace qmpkit::snapshot::detail {

struct journal_overlay {
    std::string disk;
    std::filesystem::path image;   // frozen (external create) / merged into (external delete)
    std::filesystem::path overlay; // made (create) / merged away (delete)
};

struct journal_tag {
    std::filesystem::path image;
    std::string tag;
};

struct operation_journal {
    std::string operation; // "create-internal", "create-external", "delete-external", "revert"
    std::string snapshot;
    std::int64_t pid = 0;
    std::int64_t started_at = 0;
    bool was_running = false;   // the guest ran before the operation (a migration pauses it)
    std::string before_digest;  // of snapshots.json before (digest_of_file)
    std::string after_metadata; // snapshots.json as the operation will write it
    std::optional<std::string> after_definition; // definition.yaml as it will write it, if it does
    std::vector<journal_tag> tags;               // internal snapshots it makes
    std::vector<journal_overlay> overlays;       // external create / delete
    std::vector<std::filesystem::path> creates;  // other files it makes (the memory file)
};

std::filesystem::path journal_file(const launcher::state_directory& dir);

// Atomically, mode 0600. Throws snapshot::error(metadata_io).
void write_journal(const launcher::state_directory& dir, const operation_journal& journal);
// nullopt when there is none. Throws snapshot::error(metadata_corrupt) for a file it cannot read.
std::optional<operation_journal> read_journal(const launcher::state_directory& dir);
void remove_journal(const launcher::state_directory& dir) noexcept;

// A stable digest (FNV-1a, 64 bits, hex) of a file's bytes; "absent" for a missing file.
std::string digest_of_file(const std::filesystem::path& file);
std::string digest_of(std::string_view bytes);

} // namespace qmpkit::snapshot::detail
