#include "vm_lookup.hpp"

#include <qmpkit/launcher/definition_loader.hpp>
#include <qmpkit/launcher/definition_validator.hpp>
#include <qmpkit/launcher/error.hpp>
#include <qmpkit/launcher/launch.hpp>

#include <boost/json/serialize.hpp>
#include <boost/json/string.hpp>

#include <stdexcept>

namespace qmpkit::cli {
namespace {

// The name as a JSON string: quoted, with control characters escaped, so that whatever was
// typed prints as one harmless line. Long names are cut: the problem shows in the first bytes.
std::string shown_name(const std::string& name) {
    constexpr std::size_t shown = 80;
    auto text = boost::json::serialize(boost::json::string(name.substr(0, shown)));
    return name.size() > shown ? text + "..." : text;
}

} // namespace

std::filesystem::path state_root(const context& ctx) {
    return ctx.state_dir.empty() ? launcher::default_state_root()
                                 : std::filesystem::path(ctx.state_dir);
}

launcher::state_directory find_vm(const context& ctx, const std::string& name_or_definition) {
    std::string name = name_or_definition;
    if ((name.ends_with(".yaml") || name.ends_with(".yml")) && std::filesystem::exists(name)) {
        auto def = launcher::load_definition(name);
        // Its files need not be in place to look the VM up; everything else must hold, the name
        // above all: it becomes a directory under the state root.
        launcher::validate_definition(def, {.check_files = false});
        name = def.name;
    } else if (!launcher::is_valid_vm_name(name)) {
        // A VM's name is its directory under the state root: "../x" would leave it.
        throw std::invalid_argument(
            "invalid VM name " + shown_name(name) +
            ": a VM name is up to 64 letters, digits, '_', '.' or '-', starting with a letter or "
            "digit (or give the VM's .yaml definition file)");
    }
    return launcher::state_directory(state_root(ctx), name);
}

launcher::state_directory find_running_vm(const context& ctx,
                                          const std::string& name_or_definition) {
    auto dir = find_vm(ctx, name_or_definition);
    if (!std::filesystem::exists(dir.definition_copy()))
        throw launcher::error("no VM named '" + dir.vm_name() + "' in " +
                              dir.path().parent_path().string() +
                              " (start it with `qmpkit start VM.yaml`)");
    if (!launcher::is_running(dir))
        throw launcher::error("VM '" + dir.vm_name() + "' is not running");
    return dir;
}

launcher::connect_options connect_options_for(const context& ctx) {
    launcher::connect_options options;
    options.logger = ctx.logger;
    options.lock_timeout = ctx.lock_wait();
    return options;
}

snapshot::manager_options manager_options_for(const context& ctx) {
    snapshot::manager_options o;
    o.state_root = state_root(ctx);
    o.logger = ctx.logger;
    o.lock_timeout = ctx.lock_wait();
    return o;
}

} // namespace qmpkit::cli
