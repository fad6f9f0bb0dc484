#pragma once

#include <qmpkit/launcher/diagnostic.hpp>

#include <stdexcept>
#include <string>
#include <vector>

namespace qmpkit::launcher {

// What went wrong, for callers that react differently to some failures (retry after the VM
// stops, offer --force, suggest installing a package) without matching on message text.
enum class error_kind {
    other,              // anything not listed below
    definition,         // a VM definition problem; diagnostics() says where
    program_not_found,  // an external program (qemu-img, ...) is not installed or not executable
    command_failed,     // an external program ran and failed
    timed_out,          // did not happen in its time: an external program (killed), a console line
    invalid_argument,   // the request itself makes no sense (convert a file onto itself, ...)
    file_exists,        // refusing to overwrite an existing file
    image_in_use,       // a disk image is locked by another process, usually a running qemu
    unsupported,        // the image format cannot do it (internal snapshots of a raw image, ...)
    snapshot_not_found, // no internal snapshot by that name
    snapshot_exists,    // an internal snapshot by that name already exists
};

// The one exception type of the launcher layer. A definition problem carries its diagnostics,
// and what() is all of them, one per line, so that a single catch can show every problem at once.
class error : public std::runtime_error {
public:
    explicit error(const std::string& message);
    explicit error(diagnostic d);
    explicit error(std::vector<diagnostic> diagnostics);
    error(error_kind kind, const std::string& message);

    // Empty when the error is not about a definition.
    const std::vector<diagnostic>& diagnostics() const noexcept { return diagnostics_; }

    // other for a plain message, definition for diagnostics, else what the thrower said.
    error_kind kind() const noexcept { return kind_; }

private:
    error_kind kind_ = error_kind::other;
    std::vector<diagnostic> diagnostics_;
};

} // namespace qmpkit::launcher
