#pragma once

// Starting a VM: everything between a validated definition and a qemu that answers on QMP.

#include <qmpkit/launcher/qemu_process.hpp>
#include <qmpkit/launcher/runtime_info.hpp>
#include <qmpkit/launcher/state_directory.hpp>
#include <qmpkit/launcher/vm_definition.hpp>
#include <qmpkit/launcher/vm_lock.hpp>
#include <qmpkit/qmp/client.hpp>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace spdlog {
class logger;
}

namespace qmpkit::launcher {

struct launch_options {
    std::filesystem::path state_root; // empty: default_state_root()
    std::string qemu_binary = "qemu-system-x86_64";
    bool paused = false; // start with the CPUs stopped (-S)
    // Appended to qemu's command line for this start only (e.g. -loadvm TAG, -incoming defer).
    std::vector<std::string> extra_args;
    // The caller already holds the VM's lock (a snapshot revert restarting the VM).
    bool lock_held_by_caller = false;
    // For a VM with file-backed RAM: map this file copy-on-write as the RAM (a reset point's
    // template) instead of the VM's own RAM file.
    std::filesystem::path memory_template;
    // Start as a standby of the VM (see standby.hpp): the sockets and records stay in a directory
    // of the standby's own until a reset promotes it, and nothing of the VM's running qemu is
    // touched. The caller holds <state>/standby.lock instead of the VM's lock.
    bool standby = false;
    // Files only this qemu uses (a standby's fresh overlays): removed if it ends unpromoted.
    std::vector<std::filesystem::path> owned_files;
    std::chrono::milliseconds lock_timeout{std::chrono::seconds(30)};
    std::chrono::milliseconds qmp_timeout{std::chrono::seconds(30)};
    std::shared_ptr<spdlog::logger> logger;
};

// Where one qemu's sockets and records are while they are not (or not yet) the VM's. Every
// qemu binds its sockets in a directory of its own, <state>/starting.<id> or
// <state>/standby.<id>, and they are renamed into <state> once it is the VM's. qemu removes its
// listening sockets by the path it bound when it ends, so a qemu that a standby replaced cannot
// remove its successor's sockets.
struct qemu_instance {
    std::filesystem::path dir;
    bool standby = false;
    std::vector<std::filesystem::path> owned_files;
    std::uint64_t ram_inode = 0; // the VM's RAM file as this qemu created it; 0: none
};

// A qemu this process started. Its private monitor (one end of a socketpair) belongs to the
// supervisor; other qmpkit commands use <state>/qmp.sock.
class launched_vm {
public:
    launched_vm(vm_definition def, state_directory dir, qemu_process process, qmp::client monitor,
                runtime_info runtime, qemu_instance instance = {});

    const vm_definition& definition() const noexcept { return definition_; }
    const state_directory& state() const noexcept { return state_; }
    const runtime_info& runtime() const noexcept { return runtime_; }
    qemu_process& process() noexcept { return process_; }
    qmp::client& monitor() noexcept { return monitor_; }
    const qemu_instance& instance() const noexcept { return instance_; }

private:
    vm_definition definition_;
    state_directory state_;
    qemu_process process_;
    qmp::client monitor_;
    runtime_info runtime_;
    qemu_instance instance_;
};

// Creates the state directory and missing disk images, binds the QMP sockets, starts qemu and
// negotiates QMP. On failure nothing is left running, images it created are removed, and the
// error carries qemu's exit status, command line and own words. Throws launcher::error.
launched_vm launch(const vm_definition& definition, const launch_options& options);

// Whether the VM recorded in `dir` has a live qemu.
bool is_running(const state_directory& dir);

// After external snapshots a VM runs on overlays above the images its YAML names. A later start
// from that YAML must continue on the overlays, not on the frozen images (that would silently
// drop everything written since): for each disk whose file in the state directory's copy is an
// overlay whose backing chain holds the YAML's file, take the copy's file.
vm_definition with_recorded_overlays(vm_definition definition, const state_directory& dir);

struct supervise_options;

// Starts the VM in the background: a child process becomes its supervisor (qemu's parent, so it
// learns how qemu ended) and logs to <state>/supervisor.log. Returns once qemu answers on QMP,
// or throws launcher::error with the launch failure. Must be called while the process has no
// other threads. The supervisor is not this process's child (no zombie is left behind).
// The disks are exactly the definition's: the snapshot layer restarts qemu on the image that
// holds an internal snapshot this way. A start from the YAML after snapshots or reset points
// passes with_recorded_overlays(definition, dir), so that the images they froze stay frozen.
void start_in_background(const vm_definition& definition, const launch_options& options,
                         const supervise_options& supervision);

// start_in_background in two halves, to start several VMs at once: begin forks the supervisor,
// wait() waits for its report (the destructor waits too, and drops the error).
class background_start {
public:
    background_start(background_start&& other) noexcept;
    background_start& operator=(background_start&&) = delete;
    ~background_start();
    void wait();

private:
    friend background_start begin_start_in_background(const vm_definition&, const launch_options&,
                                                      const supervise_options&);
    background_start(int report_fd, std::filesystem::path supervisor_log);
    int report_fd_ = -1;
    std::filesystem::path supervisor_log_;
};

background_start begin_start_in_background(const vm_definition& definition,
                                           const launch_options& options,
                                           const supervise_options& supervision);

// Runs `work` in a process of its own (detached, its output in <state>/supervisor.log) that
// takes over `lock` (the VM's, or any lock the caller holds) and releases it when `work` is
// done: the caller returns at once, and whoever waits for the lock waits for `work`. `lock` is
// the caller's no more; `work` may take it over (to hand it on). Must be called while the
// process has no other threads (it forks).
void finish_in_background_holding(const state_directory& dir, vm_lock lock,
                                  std::function<void(vm_lock&)> work);

// The same without a lock.
void finish_in_background(const state_directory& dir, std::function<void()> work);

} // namespace qmpkit::launcher
