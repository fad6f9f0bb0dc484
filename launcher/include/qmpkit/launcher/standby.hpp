#pragma once

// A warm standby: a second qemu for a VM, started ahead of need (with -incoming defer; the
// plan's `arm` step may load the guest's state into it right away), so that a reset only
// promotes it and continues instead of starting qemu on the critical path.
//
// A standby lives in <state>/standby.<id>/ with its own sockets and records, supervised like
// any qemu, and marked ready by standby.json there (its key says what it was prepared for). A
// reset promotes it: its sockets are renamed over the VM's (a UNIX socket keeps working under a
// new name, so <state>/qmp.sock stays the path users know), its runtime record and definition
// become the VM's, and the qemu it replaced is told to quit; that qemu's supervisor sees it was
// replaced and touches nothing of the VM's. A standby that is never promoted removes itself,
// and the files it owns, when its qemu ends.

#include <qmpkit/launcher/launch.hpp>
#include <qmpkit/launcher/runtime_info.hpp>
#include <qmpkit/launcher/state_directory.hpp>
#include <qmpkit/launcher/vm_definition.hpp>

#include <chrono>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace qmpkit::launcher {

// The ready marker's name inside a standby's directory.
inline constexpr const char* standby_marker_name = "standby.json";

struct standby {
    std::string key;          // what it was prepared for
    state_directory files;    // its sockets, runtime.json and definition.yaml
    runtime_info runtime;     // of its qemu
    vm_definition definition; // what its qemu runs
    std::vector<std::filesystem::path> owned_files;
};

// What a standby is made from. `prepare` runs in the background process that starts it, never
// in the caller.
struct standby_plan {
    std::string key;
    // Makes what the standby needs on disk (fresh overlays) and returns its definition and the
    // files that are only its own.
    std::function<std::pair<vm_definition, std::vector<std::filesystem::path>>()> prepare;
    // The definition a reset replaced, and which of its files nothing keeps once `now` (the
    // VM's definition then) runs: the preparer removes those first, off the reset's path. After a
    // standby reset it is the promoted standby's supervisor that knows `replaced` (the refill
    // marker, see promote_standby); after a template reset, the reset itself.
    std::optional<vm_definition> replaced;
    std::function<std::vector<std::filesystem::path>(const vm_definition& replaced,
                                                     const vm_definition& now)>
        superseded;
    // How many ready standbys with this key to keep: more than one lets resets that follow
    // each other faster than a standby is prepared still find one ready. The missing ones are
    // prepared at the same time, each by a process of its own that then supervises it.
    int pool = 1;
    // Runs just before the standby is marked ready, while the preparation holds the standby
    // lock (so no standby outside its batch is being made), with the files the standbys of its
    // batch own: for tidying up after resets that died half-way.
    std::function<void(const std::vector<std::filesystem::path>& owned)> tidy_up;
    // Runs once the pool is full, still holding the standby lock: a last tidy-up that may wait
    // a moment for the VM's lock (no reset waits for a standby then: one is ready).
    std::function<void()> finish;
    // Runs on the standby's monitor before it is marked ready: settings a reset would
    // otherwise send on its critical path (migration capabilities, say).
    std::function<void(qmp::client&)> arm;
    launch_options launch; // memory_template, extra_args (-incoming defer), state_root, ...
};

// Starts preparing standbys in a background process and returns at once: as many as it takes
// for `plan.pool` ready ones with the plan's key. Standbys prepared for another key are
// discarded first; if another preparation is under way this one gives up. The preparation holds
// <state>/standby.lock until the pool is full. Must be called while the process has no other
// threads (it forks).
void prepare_standby_in_background(const state_directory& dir, standby_plan plan);

// A ready standby with this key, for the caller to promote. If none is ready but one is being
// prepared, waits up to `timeout` for it, and takes it the moment it is ready (not when the whole
// pool is). Standbys are prepared at the lowest CPU priority; the one returned, and any the call
// waits for, are raised to the normal one.
std::optional<standby> find_standby(const state_directory& dir, const std::string& key,
                                    std::chrono::milliseconds timeout);

// Whether a preparation of standbys is under way or queued behind one (they hold the standby lock
// and the queue's lock), or is about to be by the supervisor of a standby just promoted (see
// promote_standby). False once all have ended: the pool is then as full as it will get.
bool standby_being_prepared(const state_directory& dir);

// Makes the standby the VM's qemu: sockets, runtime record and definition (see above). The
// caller holds the VM's lock, and ends the replaced qemu afterwards (retire_replaced_qemu).
//
// The next standbys are the promoted standby's supervisor's to prepare, with the plan that made
// it (supervise_options::on_promoted): the caller forks nothing for them. From the promotion
// until that supervisor has taken its place in the preparation (moments, unless it is starved),
// <state>/standby-refill.<its pid> shows them on their way to standby_being_prepared; it is a
// hard link to the definition the promotion replaced (one system call), from which that
// supervisor works out the files nothing needs any more (standby_plan::superseded).
void promote_standby(const state_directory& dir, const standby& s);

// Ends the qemu a promoted standby replaced (`replaced`: the VM's runtime record before the
// promotion), without waiting and without a QMP conversation: a TCG guest that runs holds
// qemu's main lock most of the time, so connecting to it and waiting for `quit` to be answered
// cost the caller 3-15 ms. Every thread of it drops to the lowest CPU priority first (its
// teardown would otherwise take CPU time from the guest replacing it and from the caller on a
// small machine), then it gets SIGTERM, which qemu takes as a shutdown request. Its supervisor
// sees that the VM's record names another qemu and touches nothing of the VM's. A pid that no
// longer runs this VM's qemu is left alone.
void retire_replaced_qemu(const state_directory& dir, const runtime_info& replaced);

// Stops every standby of the VM (their qemus are killed: they hold no guest state) and waits
// until they have cleaned up. Also removes leftovers of standbys whose supervisor died.
void discard_standbys(const state_directory& dir);

// Stops the ready standbys for `key` beyond the first `pool`, and returns how many. The caller
// holds the standby lock and the VM's lock (a reset holds the latter while it promotes one).
std::size_t trim_standbys(const state_directory& dir, const std::string& key, std::size_t pool);

// Whether the VM has a ready standby, and for what.
std::vector<standby> list_standbys(const state_directory& dir);

// The keys of the VM's ready standbys: list_standbys without reading their records.
std::vector<std::string> ready_standby_keys(const state_directory& dir);

} // namespace qmpkit::launcher
