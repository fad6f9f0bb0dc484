#include "memory_state.hpp"

#include <qmpkit/launcher/atomic_file.hpp>
#include <qmpkit/snapshot/error.hpp>

#include <boost/json.hpp>

#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <thread>
#include <unistd.h>

namespace qmpkit::snapshot::detail {
namespace {

namespace json = boost::json;
using namespace std::chrono_literals;

constexpr const char* fd_name = "qmpkit-memory";

// Polls query-migrate until the migration ends; throws with qemu's reason when it failed.
void wait_migration(qmp::client& qmp, const std::filesystem::path& file,
                    const std::function<void(double)>& progress,
                    const std::function<void(std::string_view)>& on_step = {}) {
    const auto deadline = std::chrono::steady_clock::now() + 30min;
    // The step is "migrate was sent, its end not yet seen": a small save may be over before
    // the first look, so waiting to see it "active" would sometimes never get there.
    if (on_step)
        on_step("migration-running");
    for (;;) {
        const auto reply = qmp.execute("query-migrate");
        const auto& info = reply.as_object();
        const auto* status = info.if_contains("status");
        const std::string state = status ? std::string(status->as_string()) : "none";
        if (state == "completed")
            return;
        if (state == "failed" || state == "cancelled") {
            const auto* desc = info.if_contains("error-desc");
            throw error(error_kind::other, "saving or loading the VM state (" + file.string() +
                                               ") " + state +
                                               (desc ? ": " + std::string(desc->as_string()) : ""));
        }
        if (progress) {
            if (const auto* ram = info.if_contains("ram"); ram && ram->is_object()) {
                const auto total = ram->as_object().at("total").to_number<double>();
                const auto done = ram->as_object().at("transferred").to_number<double>();
                if (total > 0)
                    progress(std::min(1.0, done / total));
            }
        }
        if (std::chrono::steady_clock::now() > deadline)
            throw error(error_kind::timeout,
                        "migration to " + file.string() + " did not finish in 30 minutes");
        std::this_thread::sleep_for(10ms);
    }
}

std::filesystem::path bandwidth_record(const std::filesystem::path& state_dir) {
    return state_dir / "migration-bandwidth.json";
}

} // namespace

void restore_left_bandwidth(qmp::client& qmp, const std::filesystem::path& state_dir) noexcept {
    const auto record = bandwidth_record(state_dir);
    std::error_code ec;
    if (state_dir.empty() || !std::filesystem::exists(record, ec))
        return;
    try {
        const auto old = json::parse(launcher::read_file(record)).as_object().at("max-bandwidth");
        qmp.execute("migrate-set-parameters", {{"max-bandwidth", old}});
        std::filesystem::remove(record, ec);
    } catch (const std::exception&) {
        // qemu busy or gone: the record stays for the next operation.
    }
}

json::object ignore_shared_ram_arguments(bool on) {
    return {{"capabilities", json::array{{{"capability", "x-ignore-shared"}, {"state", on}}}}};
}

void ignore_shared_ram(qmp::client& qmp, bool on) {
    qmp.execute("migrate-set-capabilities", ignore_shared_ram_arguments(on));
}

void save_memory(qmp::client& qmp, const std::filesystem::path& file,
                 const std::function<void(double)>& progress,
                 const std::function<void(std::string_view)>& on_step,
                 const std::filesystem::path& state_dir) {
    // qemu aborts (losing the guest) on a migration from a run state that may not lead to
    // finish-migrate: restore-vm is what a failed loadvm leaves, and its guest is half-loaded
    // anyway. The others mean another save or load is under way.
    const auto status = qmp.execute("query-status");
    const std::string run_state(status.as_object().at("status").as_string());
    // postmigrate: an earlier save ended (a killed one is let finish) and qemu keeps the disks
    // inactive; it refuses another migration until the guest is resumed.
    if (run_state == "postmigrate") {
        const auto vm = state_dir.empty() ? std::string("VM") : state_dir.filename().string();
        throw error(error_kind::unsupported,
                    "the VM is paused where an earlier memory save left it (qemu run state "
                    "'postmigrate'), and qemu saves no more memory from there: resume it first "
                    "(qmpkit resume " +
                        vm + ", then qmpkit suspend " + vm + " if it should stay paused)");
    }
    if (run_state == "restore-vm" || run_state == "save-vm" || run_state == "finish-migrate" ||
        run_state == "inmigrate")
        throw error(error_kind::unsupported,
                    "qemu is in run state '" + run_state + "'" +
                        (run_state == "restore-vm"
                             ? " (a revert failed half-way, so the guest's state is not whole): "
                               "revert to a snapshot or restart the VM before saving its memory"
                             : " (another save or load is under way): try again once it ends"));
    const int fd = ::open(file.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0)
        throw error(error_kind::other,
                    "cannot create the memory file " + file.string() + ": " + std::strerror(errno));
    try {
        qmp.send_fd(fd_name, fd);
    } catch (...) {
        ::close(fd);
        std::filesystem::remove(file);
        throw;
    }
    ::close(fd);
    // The default limit (128 MiB/s) throttles a save to a local file; restore it afterwards so
    // a later real migration behaves as the user set it.
    const auto parameters = qmp.execute("query-migrate-parameters");
    const auto old_bandwidth = parameters.as_object().at("max-bandwidth");
    // Recorded first: should this process die before the end, the next operation restores it.
    // A record left by an earlier save holds the user's value, not the raised one: keep it.
    std::error_code ec;
    if (!state_dir.empty() && !std::filesystem::exists(bandwidth_record(state_dir), ec))
        launcher::write_file_atomically(
            bandwidth_record(state_dir),
            json::serialize(json::object{{"max-bandwidth", old_bandwidth}}) + "\n");
    qmp.execute("migrate-set-parameters", {{"max-bandwidth", std::int64_t{1} << 40}});
    try {
        qmp.execute("migrate", {{"uri", std::string("fd:") + fd_name}});
        wait_migration(qmp, file, progress, on_step);
    } catch (...) {
        // qemu may be gone (that is often why we are here): the half-written file goes first.
        std::error_code ignored;
        std::filesystem::remove(file, ignored);
        restore_left_bandwidth(qmp, state_dir);
        throw;
    }
    if (state_dir.empty())
        qmp.execute("migrate-set-parameters", {{"max-bandwidth", old_bandwidth}});
    else
        restore_left_bandwidth(qmp, state_dir);
    // qemu wrote through its own descriptor: make the file durable before recording it.
    const int sync_fd = ::open(file.c_str(), O_RDONLY | O_CLOEXEC);
    if (sync_fd >= 0) {
        ::fsync(sync_fd);
        ::close(sync_fd);
    }
}

void load_memory(qmp::client& qmp, const std::filesystem::path& file) {
    const int fd = ::open(file.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        throw error(error_kind::other,
                    "cannot open the memory file " + file.string() + ": " + std::strerror(errno));
    try {
        qmp.send_fd(fd_name, fd);
    } catch (...) {
        ::close(fd);
        throw;
    }
    ::close(fd);
    qmp.execute("migrate-incoming", {{"uri", std::string("fd:") + fd_name}});
    wait_migration(qmp, file, {});
}

} // namespace qmpkit::snapshot::detail
