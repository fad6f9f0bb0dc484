#pragma once

// What qmpkit leaves behind when its processes are killed instead of stopped (SIGKILL of a VM's
// supervisor and qemu, an OOM kill, a container restarted with /dev/shm kept): RAM files in
// /dev/shm, warm standbys still waiting for a VM that no longer runs, and the socket directories
// of starts that died. `qmpkit gc` finds and removes them.
//
// Nothing a live VM or operation uses is touched: each VM is looked at under its lock (waited for
// as any command waits: a standby preparation takes it for a moment), and a RAM file goes only when
// no process names it on its command line (qemu gets it as mem-path) and it is older than a minute
// (a start creates it just before qemu).

#include <qmpkit/launcher/state_directory.hpp>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

namespace qmpkit::launcher {

struct leftover {
    std::string what; // "RAM file", "standby", "start directory"
    std::filesystem::path path;
    std::string vm;          // the VM it belonged to, where known
    std::uint64_t bytes = 0; // space it holds (RAM files)
    bool removed = false;    // gone once gc has run (false with dry_run)
};

struct leftovers {
    std::vector<leftover> items;
    // One message per VM whose lock stayed held for the whole wait: what it left, if anything,
    // was not looked at.
    std::vector<std::string> busy;
};

// Finds the leftovers of the VMs under `state_root` and the RAM files in /dev/shm that no
// process uses (whichever root they came from); removes them too unless `dry_run`. Waits up to
// `lock_timeout` for each VM's lock.
leftovers collect_leftovers(const std::filesystem::path& state_root, bool dry_run,
                            std::chrono::milliseconds lock_timeout);

} // namespace qmpkit::launcher
