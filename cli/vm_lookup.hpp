#pragma once

#include "context.hpp"

#include <qmpkit/launcher/state_directory.hpp>
#include <qmpkit/launcher/vm_connection.hpp>
#include <qmpkit/snapshot/snapshot_manager.hpp>

#include <string>

namespace qmpkit::cli {

std::filesystem::path state_root(const context& ctx);

// A VM by name, or by the path of its YAML definition (its name is read from it).
// Throws std::invalid_argument for a name that is no VM name (it would leave the state root).
launcher::state_directory find_vm(const context& ctx, const std::string& name_or_definition);

// find_vm for commands that only work on a running VM: launcher::error when there is no such VM
// or it is not running, before any socket is tried.
launcher::state_directory find_running_vm(const context& ctx,
                                          const std::string& name_or_definition);

launcher::connect_options connect_options_for(const context& ctx);

// The snapshot layer's options from the global ones: state root, logger, --lock-timeout.
snapshot::manager_options manager_options_for(const context& ctx);

} // namespace qmpkit::cli
