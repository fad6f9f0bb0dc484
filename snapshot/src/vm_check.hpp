#pragma once

// Private: `snapshot check` of one VM, from its state directory.

#include <qmpkit/launcher/state_directory.hpp>
#include <qmpkit/snapshot/drift_check.hpp>
#include <qmpkit/snapshot/snapshot_tree.hpp>

#include <optional>
#include <vector>

namespace qmpkit::snapshot::detail {

// The VM's metadata, read like metadata_store::load except that a current snapshot that does not
// exist is reported (drift current_missing) rather than refused: the tree comes without current.
std::pair<snapshot_tree, std::optional<drift>> load_leniently(const launcher::state_directory& dir);

// Everything check_drift finds for the VM (its definition copy, state directory and image
// directories searched), plus a current snapshot that is missing and an interrupted operation.
std::vector<drift> check_vm(const launcher::state_directory& dir);

} // namespace qmpkit::snapshot::detail
