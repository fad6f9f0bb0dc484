#pragma once

#include <stdexcept>
#include <string>
#include <string_view>

namespace qmpkit::snapshot {

// What went wrong, for callers that react differently to some failures (offer --force, tell the
// user to upgrade, exit with a distinct code) without matching on message text.
enum class error_kind {
    other,            // anything not listed below
    not_found,        // no snapshot by that name
    name_taken,       // a snapshot by that name already exists
    invalid_name,     // the name breaks the rules of is_valid_snapshot_name
    metadata_corrupt, // snapshots.json cannot be read as what qmpkit wrote
    metadata_too_new, // snapshots.json was written by a newer qmpkit in a newer format
    metadata_io,      // snapshots.json could not be read or written (permissions, disk full)
    not_running,      // the operation needs a running VM
    running,          // the operation needs a VM that is not running
    config_mismatch,  // the saved definition differs from the current one (revert without force)
    unsupported,      // not possible for this kind of snapshot or disk
    drift,            // metadata and images disagree (see check_drift)
    timeout,          // a qemu job or migration did not finish in its time (exit code 4)
};

// "not_found", "metadata_too_new", ...: for logs and --json output.
std::string_view to_string(error_kind kind) noexcept;

// The one exception type of the snapshot layer.
class error : public std::runtime_error {
public:
    explicit error(const std::string& message);
    error(error_kind kind, const std::string& message);

    error_kind kind() const noexcept { return kind_; }

private:
    error_kind kind_ = error_kind::other;
};

} // namespace qmpkit::snapshot
