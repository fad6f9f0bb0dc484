#include "host/pidfd.hpp"
#include "host/session_priority.hpp"
#include "vm/instance_files.hpp"

#include <qmpkit/launcher/atomic_file.hpp>
#include <qmpkit/launcher/definition_loader.hpp>
#include <qmpkit/launcher/error.hpp>
#include <qmpkit/launcher/qemu_process.hpp>
#include <qmpkit/launcher/standby.hpp>
#include <qmpkit/launcher/vm_lock.hpp>

#include <boost/json.hpp>

#include <algorithm>
#include <csignal>
#include <fcntl.h>
#include <set>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <thread>

namespace qmpkit::launcher {
namespace {

namespace fs = std::filesystem;
namespace json = boost::json;
using namespace std::chrono_literals;

struct marker {
    std::string key;
    std::vector<fs::path> owned_files;
};

std::optional<marker> read_marker(const fs::path& standby_dir) {
    try {
        const auto file = standby_dir / standby_marker_name;
        if (!fs::exists(file))
            return std::nullopt;
        const auto o = json::parse(read_file(file)).as_object();
        marker m;
        m.key = o.at("key").as_string();
        for (const auto& f : o.at("owned_files").as_array())
            m.owned_files.emplace_back(std::string(f.as_string()));
        return m;
    } catch (const std::exception&) {
        return std::nullopt; // half-made or damaged: not a standby anyone can use
    }
}

// Whether `pid` is the qemu of the standby in `standby_dir` (not a recycled pid).
bool is_standby_qemu(pid_t pid, const fs::path& standby_dir) {
    if (pid <= 0 || !process_alive(pid))
        return false;
    return process_command_line(pid).find(standby_dir.string()) != std::string::npos;
}

} // namespace

void write_standby_marker(const fs::path& standby_dir, const std::string& key,
                          const std::vector<fs::path>& owned_files) {
    json::array owned;
    for (const auto& f : owned_files)
        owned.emplace_back(f.string());
    write_file_atomically(standby_dir / standby_marker_name,
                          json::serialize(json::object{{"key", key}, {"owned_files", owned}}) +
                              "\n");
}

std::vector<standby> list_standbys(const state_directory& dir) {
    std::vector<standby> found;
    for (const auto& path : instance_directories(dir, "standby")) {
        auto m = read_marker(path);
        if (!m)
            continue;
        state_directory files(dir.path(), path.filename().string());
        try {
            auto runtime = read_runtime_info(files);
            if (!runtime || !is_standby_qemu(runtime->qemu_pid, path))
                continue;
            found.push_back({m->key, files, *runtime, load_definition(files.definition_copy()),
                             m->owned_files});
        } catch (const error&) {
            // Its records are unreadable: it cannot be promoted, and discard_standbys removes it.
        }
    }
    return found;
}

std::vector<std::string> ready_standby_keys(const state_directory& dir) {
    std::vector<std::string> keys;
    for (const auto& path : instance_directories(dir, "standby")) {
        auto m = read_marker(path);
        if (!m)
            continue;
        try {
            const state_directory files(dir.path(), path.filename().string());
            if (const auto runtime = read_runtime_info(files);
                runtime && is_standby_qemu(runtime->qemu_pid, path))
                keys.push_back(m->key);
        } catch (const error&) {
        }
    }
    return keys;
}

std::optional<standby> find_standby(const state_directory& dir, const std::string& key,
                                    std::chrono::milliseconds timeout) {
    // The first usable one: only its records are read (a definition is a YAML parse).
    auto ready = [&]() -> std::optional<standby> {
        for (const auto& path : instance_directories(dir, "standby")) {
            auto m = read_marker(path);
            if (!m || m->key != key)
                continue;
            state_directory files(dir.path(), path.filename().string());
            try {
                auto runtime = read_runtime_info(files);
                if (!runtime || !is_standby_qemu(runtime->qemu_pid, path))
                    continue;
                // Prepared at the lowest priority; the caller is about to talk to it.
                detail::raise_session_to_normal(runtime->qemu_pid);
                return standby{m->key, files, *runtime, load_definition(files.definition_copy()),
                               m->owned_files};
            } catch (const error&) {
                // Unreadable records: not one to promote.
            }
        }
        return std::nullopt;
    };
    // A marker file is all it takes to see one become ready; the records are read only then.
    auto any_marked = [&] {
        for (const auto& path : instance_directories(dir, "standby"))
            if (fs::exists(path / standby_marker_name))
                return true;
        return false;
    };
    // Standbys are prepared at the lowest priority; one that a caller waits for is not
    // background work any more.
    std::set<pid_t> hurried;
    auto hurry = [&] {
        for (const auto& path : instance_directories(dir, "standby")) {
            state_directory files(dir.path(), path.filename().string());
            try {
                if (auto runtime = read_runtime_info(files);
                    runtime && hurried.insert(runtime->qemu_pid).second &&
                    is_standby_qemu(runtime->qemu_pid, path))
                    detail::raise_session_to_normal(runtime->qemu_pid);
            } catch (const error&) {
                // Being written: the next round.
            }
        }
    };
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    for (;;) {
        if (any_marked())
            if (auto s = ready())
                return s;
        // Nothing ready: one may be on its way. Its preparation holds the standby lock until the
        // pool is full, so look for markers meanwhile rather than wait for the lock.
        if (!standby_being_prepared(dir))
            return ready(); // the preparation may have ended since the look above
        if (std::chrono::steady_clock::now() >= deadline)
            return std::nullopt;
        hurry();
        std::this_thread::sleep_for(2ms);
    }
}

namespace {

// The supervisor a promotion named to prepare the next standbys (promote_standby) and that has
// not taken its place in the preparation yet: it still supervises the VM's qemu, so the VM's
// record names it (a marker a killed supervisor left, or one of a qemu replaced since, counts
// for nothing).
bool refill_expected(const state_directory& dir) {
    std::optional<runtime_info> runtime;
    try {
        runtime = read_runtime_info(dir);
    } catch (const error&) {
        return false; // being rewritten by a reset: it is promoting, not refilling
    }
    if (!runtime || runtime->supervisor_pid <= 0)
        return false;
    std::error_code ec;
    return fs::exists(dir.standby_refill(runtime->supervisor_pid), ec) &&
           process_alive(runtime->supervisor_pid);
}

} // namespace

bool standby_being_prepared(const state_directory& dir) {
    // The queue first: a request waiting there takes the standby lock before it lets go of its
    // place, so one that passes from the queue to the preparation is seen in either. And a
    // promoted standby's supervisor removes its marker only once it holds one of the two.
    for (const auto& lock : {dir.standby_queue_lock(), dir.standby_lock()}) {
        try {
            vm_lock::acquire(lock, "looking for a standby preparation", 0ms);
        } catch (const error&) {
            return true;
        }
    }
    return refill_expected(dir);
}

namespace {

// The promotion itself: what makes the standby the VM's qemu.
void promote_standby_files(const state_directory& dir, const standby& s) {
    // Prepared at the lowest priority; the VM's guest runs at the normal one.
    detail::raise_session_to_normal(s.runtime.qemu_pid);
    move_sockets(s.files, dir);
    auto runtime = s.runtime;
    std::error_code ec;
    const auto log_size = fs::file_size(dir.serial_log(), ec);
    runtime.serial_log_offset = ec ? 0 : log_size;
    fs::remove(dir.exit_record(), ec);
    write_runtime_info(dir, runtime);
    fs::rename(s.files.definition_copy(), dir.definition_copy());
    // Without the marker its supervisor knows the qemu is the VM's now.
    fs::remove(s.files.path() / standby_marker_name);
    fs::remove_all(s.files.path(), ec);
}

} // namespace

void promote_standby(const state_directory& dir, const standby& s) {
    // First, so that standbys are on their way from the moment this one is the VM's: its
    // supervisor prepares the next ones (on_promoted) and then removes the marker. The marker is
    // the definition being replaced, kept by a second name for that supervisor to read.
    const auto refill = dir.standby_refill(s.runtime.supervisor_pid);
    if (::link(dir.definition_copy().c_str(), refill.c_str()) != 0) {
        const int fd = ::open(refill.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
        if (fd >= 0)
            ::close(fd);
    }
    try {
        promote_standby_files(dir, s);
    } catch (...) {
        std::error_code ignored;
        fs::remove(refill, ignored);
        throw;
    }
}

void retire_replaced_qemu(const state_directory& dir, const runtime_info& replaced) {
    const pid_t pid = replaced.qemu_pid;
    if (pid <= 0)
        return;
    // The pidfd pins the process: the signal cannot reach another one that gets the pid later.
    const int pidfd = detail::open_pidfd(pid);
    if (pidfd < 0)
        return; // gone already
    if (process_command_line(pid).find(dir.path().string() + "/") != std::string::npos) {
        // Its session's priority where the kernel groups sessions (when the session is its
        // supervisor's own, not the caller's of `qmpkit run`), its threads' where not.
        if (::getsid(pid) == replaced.supervisor_pid)
            detail::set_session_nice(pid, detail::background_nice);
        std::error_code ec;
        for (const auto& task :
             fs::directory_iterator("/proc/" + std::to_string(pid) + "/task", ec))
            ::setpriority(PRIO_PROCESS, static_cast<id_t>(std::stoi(task.path().filename())),
                          detail::background_nice);
        ::syscall(SYS_pidfd_send_signal, pidfd, SIGTERM, nullptr, 0);
    }
    ::close(pidfd);
}

void discard_standbys(const state_directory& dir) {
    // Waits for a preparation under way, so that nothing is left behind once this returns.
    std::optional<vm_lock> lock;
    try {
        lock.emplace(vm_lock::acquire(dir.standby_lock(), "discarding standbys", 30s));
    } catch (const error&) {
        // A preparation that hangs must not keep the VM from stopping; go on without the lock.
    }
    discard_standbys_locked(dir);
}

namespace {

// Stops a standby's qemu; its supervisor removes the directory and the files it owns (or this,
// should it be gone).
void discard_standby(const state_directory& dir, const fs::path& path) {
    state_directory files(dir.path(), path.filename().string());
    std::optional<runtime_info> runtime;
    try {
        runtime = read_runtime_info(files);
    } catch (const error&) {
    }
    // A standby a reset has just promoted is the VM's qemu (the VM's record names it) while its
    // directory, its marker already gone, is being removed: it is no standby to stop.
    try {
        if (const auto vm = read_runtime_info(dir);
            runtime && vm && vm->qemu_pid == runtime->qemu_pid)
            return;
    } catch (const error&) {
        // Being rewritten by that very promotion: leave the directory to it.
        return;
    }
    if (runtime && is_standby_qemu(runtime->qemu_pid, path)) {
        ::kill(runtime->qemu_pid, SIGKILL);
        wait_for_exit(runtime->qemu_pid, 10s);
        // Its supervisor removes the directory and the files it owns.
        for (int i = 0; i < 100 && fs::exists(path); ++i)
            std::this_thread::sleep_for(20ms);
    }
    if (fs::exists(path)) {
        std::error_code ignored;
        if (auto m = read_marker(path))
            for (const auto& f : m->owned_files)
                fs::remove(f, ignored);
        fs::remove_all(path, ignored);
    }
}

} // namespace

void discard_standbys_locked(const state_directory& dir,
                             const std::optional<std::string>& keep_key) {
    for (const auto& path : instance_directories(dir, "standby")) {
        if (keep_key)
            if (auto m = read_marker(path); m && m->key == *keep_key)
                continue;
        discard_standby(dir, path);
    }
}

std::size_t trim_standbys(const state_directory& dir, const std::string& key, std::size_t pool) {
    std::vector<fs::path> ready;
    for (const auto& path : instance_directories(dir, "standby"))
        if (auto m = read_marker(path); m && m->key == key)
            ready.push_back(path);
    std::size_t removed = 0;
    while (ready.size() > pool) {
        discard_standby(dir, ready.back());
        ready.pop_back();
        ++removed;
    }
    return removed;
}

} // namespace qmpkit::launcher
