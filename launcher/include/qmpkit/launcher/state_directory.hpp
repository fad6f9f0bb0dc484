#pragma once

// Where a VM's runtime files live: <root>/<vm name>/, mode 0700. The root is, in order:
// an explicit choice (--state-dir), $QMPKIT_STATE_DIR, /var/lib/qmpkit for root, else
// $XDG_STATE_HOME/qmpkit or ~/.local/state/qmpkit.

#include <filesystem>
#include <string>
#include <sys/types.h>
#include <vector>

namespace qmpkit::launcher {

std::filesystem::path default_state_root();

class state_directory {
public:
    state_directory(std::filesystem::path root, std::string vm_name);

    const std::string& vm_name() const noexcept { return name_; }
    const std::filesystem::path& path() const noexcept { return dir_; }
    bool exists() const;
    // Creates root and VM directories with mode 0700 (tightening them if they exist).
    void create() const;

    std::filesystem::path qmp_socket() const { return dir_ / "qmp.sock"; }       // commands
    std::filesystem::path events_socket() const { return dir_ / "events.sock"; } // `qmpkit events`
    std::filesystem::path console_socket() const { return dir_ / "console.sock"; }
    std::filesystem::path shell_socket() const { return dir_ / "shell.sock"; }
    std::filesystem::path agent_socket() const { return dir_ / "agent.sock"; } // qemu-ga
    std::filesystem::path serial_log() const { return dir_ / "serial.log"; }
    std::filesystem::path qemu_log() const { return dir_ / "qemu.log"; }
    std::filesystem::path supervisor_log() const { return dir_ / "supervisor.log"; }
    std::filesystem::path definition_copy() const { return dir_ / "definition.yaml"; }
    std::filesystem::path runtime_file() const { return dir_ / "runtime.json"; }
    std::filesystem::path exit_record() const { return dir_ / "exit.json"; }
    std::filesystem::path lock_file() const { return dir_ / "lock"; }
    // Held by whoever talks to the guest: the one client of its agent or command channel, and
    // the clock setting after a reset (see vm_agent.hpp).
    std::filesystem::path guest_lock() const { return dir_ / "guest.lock"; }
    // cloud_init: the seed image and the VM's SSH key pair and known_hosts (cloud_init.hpp).
    std::filesystem::path cloud_init_seed() const { return dir_ / "cidata.iso"; }
    std::filesystem::path ssh_directory() const { return dir_ / "ssh"; }
    // Reset points (reset/<name>/) and the RAM of a VM with file-backed memory. The RAM lives on
    // /dev/shm where there is one: a file on disk would have its dirty pages written back.
    std::filesystem::path reset_points() const { return dir_ / "reset"; }
    std::filesystem::path ram_file() const;
    // Overlays a reset gives the VM, made anew each time (the reset point's images stay frozen).
    std::filesystem::path overlays() const { return dir_ / "overlays"; }
    // Held while a standby qemu is being prepared (see standby.hpp).
    std::filesystem::path standby_lock() const { return dir_ / "standby.lock"; }
    // Held by the one request queued behind that preparation (see prepare_standby_in_background).
    std::filesystem::path standby_queue_lock() const { return dir_ / "standby-queue.lock"; }
    // The key of the standbys last asked for: a preparation for an older key, its turn come
    // late, makes none (see prepare_standby_in_background).
    std::filesystem::path standby_wanted() const { return dir_ / "standby-wanted"; }
    // Names (by its pid) the supervisor of a standby a reset has just promoted, from the
    // promotion until that supervisor has taken its place in preparing the next standbys (see
    // promote_standby).
    std::filesystem::path standby_refill(pid_t supervisor) const {
        return dir_ / ("standby-refill." + std::to_string(supervisor));
    }
    // Every socket a VM may have, by the names above.
    std::vector<std::filesystem::path> sockets() const {
        return {qmp_socket(), events_socket(), console_socket(), shell_socket(), agent_socket()};
    }

    // Names of the VMs that have a state directory under root.
    static std::vector<std::string> list(const std::filesystem::path& root);

private:
    std::string name_;
    std::filesystem::path dir_;
};

} // namespace qmpkit::launcher
