#pragma once

// Private: what the snapshot and reset operations share — one operation's hold on a VM (its
// lock, definition, snapshot tree, QMP session) and small facts about its block graph.

#include "memory_state.hpp"
#include "same_file.hpp"

#include <qmpkit/launcher/atomic_file.hpp>
#include <qmpkit/launcher/definition_loader.hpp>
#include <qmpkit/launcher/launch.hpp>
#include <qmpkit/launcher/qemu_process.hpp>
#include <qmpkit/launcher/runtime_info.hpp>
#include <qmpkit/launcher/state_directory.hpp>
#include <qmpkit/launcher/supervisor.hpp>
#include <qmpkit/launcher/vm_control.hpp>
#include <qmpkit/launcher/vm_lock.hpp>
#include <qmpkit/snapshot/error.hpp>
#include <qmpkit/snapshot/metadata_store.hpp>
#include <qmpkit/snapshot/snapshot_manager.hpp>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <map>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <unistd.h>
#include <vector>

namespace qmpkit::snapshot::detail {

namespace fs = std::filesystem;
using launcher::vm_definition;
using namespace std::chrono_literals;

inline std::int64_t now_seconds() {
    return std::chrono::duration_cast<std::chrono::seconds>(
               std::chrono::system_clock::now().time_since_epoch())
        .count();
}

// Fresh from the kernel each time: a generator's state would be copied into forked processes
// (a standby's preparation), which would then draw the same names as their parent.
inline std::string hex_id() {
    std::random_device random;
    char text[9];
    std::snprintf(text, sizeof text, "%08x", static_cast<unsigned>(random()));
    return text;
}

// The disks the VM has in the running block graph, by disk name.
inline std::map<std::string, launcher::block_device> live_disks(qmp::client& qmp) {
    std::map<std::string, launcher::block_device> disks;
    for (auto& d : launcher::list_block_devices(qmp))
        disks[d.disk] = d;
    return disks;
}

// Everything one operation needs: the VM's lock (held throughout), its definition, its
// snapshot tree, and a QMP session when it runs.
struct vm_context {
    launcher::state_directory dir;
    launcher::vm_lock lock;
    vm_definition def;
    snapshot_tree tree;
    std::optional<qmp::client> qmp;
    vm_state state = vm_state::shutoff;
    std::string run_state; // qemu's, as query-status names it; empty when shut off
    const manager_options* options = nullptr;

    // When to open the QMP session to a running VM's qemu: at once, or when the operation asks
    // (connect_if_running). A standby reset never talks to the qemu it replaces.
    enum class session { now, on_demand };

    vm_context(const std::string& vm, const manager_options& o, std::string_view purpose,
               session when = session::now)
        : dir(o.state_root.empty() ? launcher::default_state_root() : o.state_root, vm)
        , lock((require_known(),
                launcher::vm_lock::acquire(dir.lock_file(), purpose, o.lock_timeout)))
        , def(launcher::load_definition(dir.definition_copy()))
        , tree(metadata_store(dir).load())
        , options(&o) {
        if (when == session::now)
            connect_if_running();
    }

    void connect_if_running() {
        if (!qmp && launcher::is_running(dir))
            connect();
    }

    void require_known() const {
        if (!fs::exists(dir.definition_copy()))
            throw error(error_kind::not_found, "no VM named '" + dir.vm_name() + "' in " +
                                                   dir.path().parent_path().string() +
                                                   " (start it once, or give its definition file)");
    }

    void connect() {
        qmp::client_options o;
        o.logger = options->logger;
        qmp.emplace(o);
        qmp->connect(dir.qmp_socket());
        refresh_state();
        detail::restore_left_bandwidth(*qmp, dir.path());
    }

    void refresh_state() {
        const auto status = qmp->execute("query-status");
        state = status.at("running").as_bool() ? vm_state::running : vm_state::paused;
        run_state = std::string(status.at("status").as_string());
    }

    // A failed loadvm leaves qemu in restore-vm with the guest half-loaded: saving that state
    // would keep garbage, and a migration from it makes qemu abort.
    void require_whole_guest(std::string_view doing) const {
        if (run_state == "restore-vm")
            throw error(error_kind::unsupported,
                        "cannot " + std::string(doing) + ": VM '" + dir.vm_name() +
                            "' is in qemu run state 'restore-vm' (a revert failed half-way, so "
                            "its guest state is not whole); revert to a snapshot again, or "
                            "restart it (qmpkit destroy, qmpkit start)");
    }

    bool running() const { return qmp.has_value(); }

    void report(const std::string& what, double fraction) const {
        if (options->progress)
            options->progress(what, fraction);
    }

    void save_tree() { metadata_store(dir).save(tree); }
    void save_definition() {
        launcher::write_file_atomically(dir.definition_copy(), launcher::dump_definition(def));
    }

    // Stops qemu and waits until it is gone; the supervisor records the end.
    void stop_vm() {
        if (!qmp)
            return;
        const auto runtime = launcher::read_runtime_info(dir);
        try {
            qmp->execute("quit");
        } catch (const qmp::error&) {
        }
        qmp.reset();
        // Its supervisor tidies up after qemu and records the end, last: a qemu started before
        // it is done could have its fresh records taken for the old one's. The record is what to
        // wait for, not the supervisor's exit: a foreground `run` goes on to follow the VM.
        if (runtime) {
            launcher::wait_for_exit(runtime->qemu_pid, 10s);
            for (int i = 0; i < 1500 && !fs::exists(dir.exit_record()) &&
                            runtime->supervisor_pid != ::getpid() &&
                            launcher::process_alive(runtime->supervisor_pid);
                 ++i)
                std::this_thread::sleep_for(20ms);
        }
        for (int i = 0; i < 100 && !fs::exists(dir.exit_record()); ++i)
            std::this_thread::sleep_for(20ms);
        state = vm_state::shutoff;
        run_state.clear();
    }

    // Starts qemu for `d` (in the background, supervised) and connects.
    void start_vm(const vm_definition& d, std::vector<std::string> extra_args, bool paused,
                  const fs::path& memory_template = {}) {
        launcher::launch_options o;
        o.state_root = dir.path().parent_path();
        o.extra_args = std::move(extra_args);
        o.paused = paused;
        o.lock_held_by_caller = true;
        o.memory_template = memory_template;
        o.logger = options->logger;
        launcher::start_in_background(d, o, launcher::supervise_options{});
        def = d;
        connect();
    }

    void set_run_state(vm_state wanted) {
        if (!qmp)
            return;
        refresh_state();
        if (wanted == vm_state::running && state != vm_state::running)
            qmp->execute("cont");
        if (wanted == vm_state::paused && state == vm_state::running)
            qmp->execute("stop");
        refresh_state();
    }
};

} // namespace qmpkit::snapshot::detail
