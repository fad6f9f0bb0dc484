#include "vm/instance_files.hpp"

#include <qmpkit/launcher/error.hpp>
#include <qmpkit/launcher/launch.hpp>
#include <qmpkit/launcher/leftovers.hpp>
#include <qmpkit/launcher/qemu_process.hpp>
#include <qmpkit/launcher/standby.hpp>
#include <qmpkit/launcher/vm_lock.hpp>

#include <algorithm>
#include <chrono>
#include <optional>

namespace qmpkit::launcher {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

// Every process's command line (world-readable, unlike its descriptors when qemu runs as
// another user).
std::vector<std::string> command_lines() {
    std::vector<std::string> lines;
    std::error_code ec;
    for (fs::directory_iterator it("/proc", ec), end; !ec && it != end; it.increment(ec)) {
        const auto name = it->path().filename().string();
        if (name.empty() || name.find_first_not_of("0123456789") != std::string::npos)
            continue;
        lines.push_back(process_command_line(std::stoi(name)));
    }
    return lines;
}

// The VM's own leftovers; it is not running and this holds its lock.
void collect_of_stopped_vm(const state_directory& dir, bool dry_run, std::vector<leftover>& found) {
    const auto vm = dir.vm_name();
    std::error_code ec;
    const auto standbys = instance_directories(dir, "standby");
    const auto starts = instance_directories(dir, "starting");
    for (const auto& s : standbys)
        found.push_back({"standby", s, vm, 0, false});
    for (const auto& s : starts)
        found.push_back({"start directory", s, vm, 0, false});
    const auto ram = dir.ram_file();
    if (fs::exists(ram, ec))
        found.push_back({"RAM file", ram, vm, fs::file_size(ram, ec), false});
    if (dry_run)
        return;
    if (!standbys.empty())
        discard_standbys(dir); // stops their qemus; their supervisors remove what they own
    for (const auto& s : starts)
        fs::remove_all(s, ec);
    fs::remove(ram, ec);
}

} // namespace

leftovers collect_leftovers(const fs::path& state_root, bool dry_run,
                            std::chrono::milliseconds lock_timeout) {
    leftovers result;
    auto& found = result.items;
    std::vector<fs::path> running_ram;
    for (const auto& name : state_directory::list(state_root)) {
        const state_directory dir(state_root, name);
        std::optional<vm_lock> lock;
        try {
            lock.emplace(vm_lock::acquire(dir.lock_file(), "collecting leftovers", lock_timeout));
        } catch (const error& e) {
            result.busy.emplace_back(e.what()); // whatever its holder has made is its own
            continue;
        }
        if (is_running(dir)) {
            running_ram.push_back(dir.ram_file());
            continue;
        }
        collect_of_stopped_vm(dir, dry_run, found);
    }

    // RAM files of any root: qemu names its RAM file on its command line (mem-path).
    const fs::path shm = "/dev/shm";
    std::error_code ec;
    if (!fs::is_directory(shm, ec))
        return result;
    const auto lines = command_lines();
    const auto now = fs::file_time_type::clock::now();
    for (const auto& entry : fs::directory_iterator(shm, ec)) {
        const auto name = entry.path().filename().string();
        if (!name.starts_with("qmpkit-") || !name.ends_with(".ram") || !entry.is_regular_file(ec))
            continue;
        const auto path = entry.path().string();
        bool seen = false;
        for (const auto& f : found)
            seen = seen || f.path == entry.path();
        for (const auto& r : running_ram)
            seen = seen || r == entry.path();
        if (seen)
            continue;
        if (std::any_of(lines.begin(), lines.end(),
                        [&](const std::string& l) { return l.find(path) != std::string::npos; }))
            continue;
        if (now - entry.last_write_time(ec) < 1min)
            continue; // a start may be about to hand it to qemu
        found.push_back({"RAM file", entry.path(), "", entry.file_size(ec), false});
        if (!dry_run)
            fs::remove(entry.path(), ec);
    }
    if (!dry_run)
        for (auto& l : found)
            l.removed = !fs::exists(l.path, ec);
    return result;
}

} // namespace qmpkit::launcher
