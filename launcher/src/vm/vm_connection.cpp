#include <qmpkit/launcher/atomic_file.hpp>
#include <qmpkit/launcher/definition_loader.hpp>
#include <qmpkit/launcher/error.hpp>
#include <qmpkit/launcher/launch.hpp>
#include <qmpkit/launcher/vm_connection.hpp>

namespace qmpkit::launcher {

vm_connection::vm_connection(state_directory dir, vm_lock lock, qmp::client qmp,
                             runtime_info runtime)
    : state_(std::move(dir))
    , lock_(std::move(lock))
    , qmp_(std::move(qmp))
    , runtime_(std::move(runtime)) {}

vm_connection vm_connection::open(const state_directory& dir, std::string_view purpose,
                                  const connect_options& options) {
    if (!dir.exists() || !std::filesystem::exists(dir.definition_copy()))
        throw error("no VM named '" + dir.vm_name() + "' in " + dir.path().parent_path().string() +
                    " (start it with `qmpkit start VM.yaml`)");
    auto lock = vm_lock::acquire(dir.lock_file(), purpose, options.lock_timeout);
    auto runtime = read_runtime_info(dir);
    if (!runtime || !is_running(dir)) {
        auto record = read_exit_record(dir);
        std::string how = record    ? record->state + " (" + record->reason + ")"
                          : runtime ? "crashed (no record of its end)"
                                    : "never started";
        throw error("VM '" + dir.vm_name() + "' is not running: " + how);
    }
    qmp::client_options qmp_options;
    qmp_options.logger = options.logger;
    qmp_options.connect_timeout = options.qmp_timeout;
    qmp_options.command_timeout = options.qmp_timeout;
    qmp::client client(qmp_options);
    try {
        client.connect(dir.qmp_socket());
    } catch (const qmp::error& e) {
        throw error("VM '" + dir.vm_name() + "' (qemu pid " + std::to_string(runtime->qemu_pid) +
                    ") does not answer on " + dir.qmp_socket().string() + ": " + e.what());
    }
    return vm_connection(dir, std::move(lock), std::move(client), std::move(*runtime));
}

vm_definition vm_connection::definition() const {
    return load_definition(state_.definition_copy());
}

void vm_connection::store_definition(const vm_definition& def) const {
    write_file_atomically(state_.definition_copy(), dump_definition(def));
}

} // namespace qmpkit::launcher
