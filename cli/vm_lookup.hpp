#pragma once

#include "context.hpp"

#include <qmpkit/launcher/state_directory.hpp>
#include <qmpkit/launcher/vm_connection.hpp>

#include <string>

namespace qmpkit::cli {

std::filesystem::path state_root(const context& ctx);

// A VM by name, or by the path of its YAML definition (its name is read from it).
launcher::state_directory find_vm(const context& ctx, const std::string& name_or_definition);

launcher::connect_options connect_options_for(const context& ctx);

} // namespace qmpkit::cli
