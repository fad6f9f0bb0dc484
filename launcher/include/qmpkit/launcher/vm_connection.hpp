#pragma once

// A qmpkit command's hold on a VM started by any qmpkit process: the VM's lock (so commands
// never interleave) and a QMP session on <state>/qmp.sock.

#include <qmpkit/launcher/runtime_info.hpp>
#include <qmpkit/launcher/state_directory.hpp>
#include <qmpkit/launcher/vm_definition.hpp>
#include <qmpkit/launcher/vm_lock.hpp>
#include <qmpkit/qmp/client.hpp>

#include <chrono>
#include <memory>
#include <string>

namespace spdlog {
class logger;
}

namespace qmpkit::launcher {

struct connect_options {
    std::chrono::milliseconds lock_timeout{std::chrono::seconds(60)};
    std::chrono::milliseconds qmp_timeout{std::chrono::seconds(30)};
    std::shared_ptr<spdlog::logger> logger;
};

class vm_connection {
public:
    // Throws launcher::error when the VM has no state directory, is not running (saying how it
    // ended), or another command holds it longer than the lock timeout.
    static vm_connection open(const state_directory& dir, std::string_view purpose,
                              const connect_options& options = {});

    const state_directory& state() const noexcept { return state_; }
    qmp::client& qmp() noexcept { return qmp_; }
    const runtime_info& runtime() const noexcept { return runtime_; }

    // The definition the VM runs with (its copy in the state directory, kept up to date by
    // attach/detach).
    vm_definition definition() const;
    void store_definition(const vm_definition& def) const;

private:
    vm_connection(state_directory dir, vm_lock lock, qmp::client qmp, runtime_info runtime);

    state_directory state_;
    vm_lock lock_;
    qmp::client qmp_;
    runtime_info runtime_;
};

} // namespace qmpkit::launcher
