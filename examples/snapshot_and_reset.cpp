// Embedding qmpkit beyond QMP: start a VM from its YAML definition, take a snapshot, make a
// reset point, reset the VM to it, and stop the VM.
//
//   ./snapshot_and_reset configs/tiny.yaml [STATE-ROOT]

#include <qmpkit/launcher/definition_loader.hpp>
#include <qmpkit/launcher/launch.hpp>
#include <qmpkit/launcher/supervisor.hpp>
#include <qmpkit/launcher/vm_control.hpp>
#include <qmpkit/snapshot/vm_reset.hpp>

#include <iostream>

using namespace qmpkit;

int main(int argc, char** argv) {
    if (argc < 2 || argc > 3) {
        std::cerr << "usage: snapshot_and_reset VM.yaml [STATE-ROOT]\n";
        return 2;
    }
    launcher::launch_options launch;
    launch.state_root = argc == 3 ? argv[2] : launcher::default_state_root();
    const auto yaml = launcher::load_definition(argv[1]);
    const launcher::state_directory dir(launch.state_root, yaml.name);
    // A second run continues on the overlays the first one's reset point left the VM on.
    const auto definition = launcher::with_recorded_overlays(yaml, dir);
    int status = 0;
    try {
        launcher::start_in_background(definition, launch, {}); // returns once qemu answers QMP
        std::cout << "started " << definition.name << " in " << dir.path() << "\n";

        snapshot::manager_options options;
        options.state_root = launch.state_root;
        snapshot::create_request request; // internal: RAM and disks in the qcow2 images
        request.name = "first";
        const auto record = snapshot::snapshot_manager(definition.name, options).create(request);
        std::cout << "snapshot " << record.name << "\n";

        snapshot::vm_reset reset(definition.name, options);
        reset.create_point("clean");
        const auto result = reset.reset("clean");
        std::cout << "reset to " << result.target << " by " << result.strategy << " in "
                  << result.took.count() << " us\n";
    } catch (const std::exception& e) {
        std::cerr << "error: " << e.what() << "\n";
        status = 1;
    }
    if (launcher::is_running(dir))
        launcher::destroy_vm(dir);
    return status;
}
