#pragma once

// What qmpkit leaves behind when its processes are killed instead of stopped (SIGKILL of a VM's
// supervisor and qemu, an OOM kill, a container restarted with /dev/shm kept): RAM files in
// /dev/shm, warm standbys still waiting for a VM that no longer runs, and the socket directories
// of starts that died. `qmpkit gc` finds and removes them.
//
// Nothing a live VM or operation uses is touched: each VM is looked at under its lock (a busy
// one is skipped), and a RAM file goes only when no process names it on its command line (qemu
// gets it as mem-path) and it is older than a minute (a start creates it just before qemu).

#include <qmpkit/launcher/state_directory.hpp>

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

// Finds the leftovers of the VMs under `state_root` and the RAM files in /dev/shm that no
// process uses (whichever root they came from); removes them too unless `dry_run`.
std::vector<leftover> collect_leftovers(const std::filesystem::path& state_root, bool dry_run);

} // namespace qmpkit::launcher
