#include "vm_lookup.hpp"

#include <qmpkit/launcher/definition_loader.hpp>

namespace qmpkit::cli {

std::filesystem::path state_root(const context& ctx) {
    return ctx.state_dir.empty() ? launcher::default_state_root()
                                 : std::filesystem::path(ctx.state_dir);
}

launcher::state_directory find_vm(const context& ctx, const std::string& name_or_definition) {
    std::string name = name_or_definition;
    if ((name.ends_with(".yaml") || name.ends_with(".yml")) && std::filesystem::exists(name))
        name = launcher::load_definition(name).name;
    return launcher::state_directory(state_root(ctx), name);
}

launcher::connect_options connect_options_for(const context& ctx) {
    launcher::connect_options options;
    options.logger = ctx.logger;
    options.lock_timeout = std::chrono::milliseconds(static_cast<long>(ctx.lock_timeout * 1000));
    return options;
}

} // namespace qmpkit::cli
