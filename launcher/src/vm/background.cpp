#include "host/log_rotation.hpp"
#include "host/session_priority.hpp"
#include "vm/instance_files.hpp"

#include <qmpkit/launcher/atomic_file.hpp>
#include <qmpkit/launcher/definition_loader.hpp>
#include <qmpkit/launcher/error.hpp>
#include <qmpkit/launcher/launch.hpp>
#include <qmpkit/launcher/standby.hpp>
#include <qmpkit/launcher/supervisor.hpp>
#include <qmpkit/launcher/vm_lock.hpp>

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstring>
#include <ctime>
#include <fcntl.h>
#include <iostream>
#include <linux/close_range.h>
#include <optional>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>
#include <utility>
#include <vector>

namespace qmpkit::launcher {
namespace {

std::string timestamp() {
    std::time_t now = std::time(nullptr);
    char text[32];
    std::strftime(text, sizeof text, "%Y-%m-%d %H:%M:%S", std::localtime(&now));
    return text;
}

// The process becomes a daemon of its own: a session of its own, nothing of the caller's open
// but the descriptors in `keep` (an inherited VM lock would be held for as long as the VM
// runs), output to <state>/supervisor.log, termination signals left to the supervisor.
void detach_from_caller(const state_directory& dir, std::vector<int> keep) {
    ::setsid();
    std::sort(keep.begin(), keep.end());
    unsigned next = 3;
    for (int fd : keep) {
        if (fd < static_cast<int>(next))
            continue;
        if (static_cast<unsigned>(fd) > next)
            ::close_range(next, static_cast<unsigned>(fd) - 1, 0);
        next = static_cast<unsigned>(fd) + 1;
    }
    ::close_range(next, ~0U, 0);
    const int log = detail::open_log_to_append(dir.supervisor_log());
    const int null = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
    ::dup2(null, STDIN_FILENO);
    ::dup2(log, STDOUT_FILENO);
    ::dup2(log, STDERR_FILENO);
    block_termination_signals();
}

// Intermediate children of fork_detached(later) not reaped yet.
std::vector<pid_t>& unreaped() {
    static std::vector<pid_t> pids;
    return pids;
}

// Forks a process that is not the caller's child: the child forks again and exits at once, so
// the grandchild is adopted by init and a long-lived caller collects no zombies. True in the
// grandchild. The caller waits for the child to exit unless `reap_later`: then it returns at
// once (on a busy machine the child may take tens of ms to be scheduled), and the child is
// reaped by a later call; until then it is a zombie.
bool fork_detached(bool reap_later = false) {
    auto& pending = unreaped();
    std::erase_if(pending, [](pid_t pid) { return ::waitpid(pid, nullptr, WNOHANG) != 0; });
    std::cout.flush();
    std::cerr.flush();
    const pid_t child = ::fork();
    if (child < 0)
        throw error(std::string("fork: ") + std::strerror(errno));
    if (child == 0) {
        pending.clear();
        const pid_t grandchild = ::fork();
        if (grandchild != 0)
            ::_exit(grandchild < 0 ? 1 : 0);
        return true;
    }
    if (reap_later) {
        pending.push_back(child);
        return false;
    }
    int status = 0;
    while (::waitpid(child, &status, 0) < 0 && errno == EINTR) {
    }
    return false;
}

supervise_options logged(const supervise_options& supervision) {
    auto options = supervision;
    options.report = [](const std::string& text) {
        std::cerr << timestamp() << " " << text << std::endl;
    };
    return options;
}

[[noreturn]] void become_supervisor(const vm_definition& definition, const launch_options& options,
                                    const supervise_options& supervision,
                                    const state_directory& dir, int report) {
    detach_from_caller(dir, {report});
    int code = 1;
    try {
        auto vm = launch(definition, options);
        (void)!::write(report, "OK", 2);
        ::close(report);
        std::cerr << timestamp() << " supervising qemu pid " << vm.process().pid() << std::endl;
        const auto record = supervise(vm, logged(supervision));
        code = record.state == "crashed" ? 5 : record.forced ? 6 : 0;
    } catch (const std::exception& e) {
        const std::string failure = std::string("ERR") + e.what();
        (void)!::write(report, failure.data(), failure.size());
        std::cerr << timestamp() << " " << e.what() << std::endl;
    }
    std::cout.flush();
    std::cerr.flush();
    ::_exit(code);
}

// Prepares one standby and supervises it: in a process of its own (see fork_detached), which
// reports "OK" or "ERR<why>" on `report` once the standby is ready or has failed.
// What a forked starter wrote on its report pipe ("OK", or "ERR" and why) until it closed it;
// closes `fd`.
std::string read_report(int fd) {
    std::string answer;
    char chunk[4096];
    for (;;) {
        const auto n = ::read(fd, chunk, sizeof chunk);
        if (n > 0)
            answer.append(chunk, static_cast<std::size_t>(n));
        else if (n == 0 || errno != EINTR)
            break;
    }
    ::close(fd);
    return answer;
}

void refill_after_promotion(const state_directory& dir, const standby_plan& plan);

// The files of the definition a reset replaced that nothing keeps (standby_plan::superseded).
// The reset renamed the new definition into place without a sync: the directory is made durable
// first, before any file the old one names is gone (here, or by the plan's tidy-up).
void remove_replaced_files(const state_directory& dir, const standby_plan& plan) {
    sync_directory(dir.path());
    if (!plan.replaced || !plan.superseded)
        return;
    std::error_code ignored;
    for (const auto& file : plan.superseded(*plan.replaced, load_definition(dir.definition_copy())))
        std::filesystem::remove(file, ignored);
}

// `prepared`: what plan.prepare() made for this standby; `batch_owned`: the files of every
// standby of its batch, which tidying up must leave alone (they are made at the same time).
[[noreturn]] void become_standby_supervisor(
    const state_directory& dir, const standby_plan& plan,
    const std::pair<vm_definition, std::vector<std::filesystem::path>>& prepared,
    const std::vector<std::filesystem::path>& batch_owned, int report) {
    detach_from_caller(dir, {report});
    // A standby only waits: its start yields to the VM's guest and to the calls of whoever
    // drives it. promote_standby puts it back to the normal priority, which only a process free
    // of the kernel's rate limit can be sure to do (session_priority.hpp).
    if (detail::session_nice_unlimited())
        detail::set_session_nice(0, detail::background_nice);
    int code = 1;
    std::error_code ignored;
    try {
        const auto& [definition, owned] = prepared;
        auto options = plan.launch;
        options.standby = true;
        options.owned_files = owned;
        auto vm = launch(definition, options);
        if (plan.tidy_up) {
            try {
                plan.tidy_up(batch_owned);
            } catch (const std::exception& e) {
                std::cerr << timestamp() << " tidying up before the standby: " << e.what()
                          << std::endl;
            }
        }
        try {
            if (plan.arm)
                plan.arm(vm.monitor());
            write_standby_marker(vm.instance().dir, plan.key, owned);
        } catch (...) {
            vm.process().kill(SIGKILL);
            vm.process().wait_for(std::chrono::seconds(5));
            std::filesystem::remove_all(vm.instance().dir, ignored);
            for (const auto& file : owned)
                std::filesystem::remove(file, ignored);
            throw;
        }
        (void)!::write(report, "OK", 2);
        ::close(report);
        std::cerr << timestamp() << " standby qemu pid " << vm.process().pid() << " ready for "
                  << plan.key << std::endl;
        auto supervision = logged({});
        supervision.on_promoted = [&dir, &plan] { refill_after_promotion(dir, plan); };
        supervise(vm, supervision);
        code = 0;
    } catch (const std::exception& e) {
        const std::string failure = std::string("ERR") + e.what();
        (void)!::write(report, failure.data(), failure.size());
        std::cerr << timestamp() << " preparing a standby failed: " << e.what() << std::endl;
    }
    std::cout.flush();
    std::cerr.flush();
    ::_exit(code);
}

// Whether `key` is still the key of the standbys last asked for. Resets to one point and then to
// another ask for one point's standbys and then the other's: a preparation for the first that
// gets its turn late would discard the second point's standbys and fill the pool with the first's.
// An unreadable record asks for nothing in particular.
bool still_wanted(const state_directory& dir, const std::string& key) {
    try {
        return read_file(dir.standby_wanted()) == key;
    } catch (const error&) {
        return true;
    }
}

// How many ready standbys the VM has for `key`.
std::size_t ready_standbys(const state_directory& dir, const std::string& key) {
    const auto all = ready_standby_keys(dir);
    return static_cast<std::size_t>(std::count(all.begin(), all.end(), key));
}

// The preparer's work once it knows its standbys are wanted: other points' standbys stopped, the
// missing ones started at once, the pool tidied. 0 when the pool is full (or the VM stopped).
int fill_standby_pool(const state_directory& dir, const standby_plan& plan, int lock_fd) {
    int code = 0;
    // Other points' standbys go. A reset promotes a standby under the VM's lock, and one of
    // those may be the one it promotes: they are stopped only under that lock (waited for
    // briefly; otherwise a later preparation stops them). The same point's are kept, and a
    // standby being promoted is the VM's by then (discard_standbys_locked leaves it).
    const auto keys = ready_standby_keys(dir);
    if (std::any_of(keys.begin(), keys.end(), [&](const auto& k) { return k != plan.key; })) {
        try {
            const auto held =
                vm_lock::acquire(dir.lock_file(), "discarding standbys", std::chrono::seconds(2));
            discard_standbys_locked(dir, plan.key);
        } catch (const error&) {
        }
    } else {
        discard_standbys_locked(dir, plan.key);
    }
    // Standbys serve a running VM only: one stopped meanwhile needs no more.
    const auto wanted = static_cast<std::size_t>(std::max(plan.pool, 1));
    while (code == 0 && is_running(dir) && still_wanted(dir, plan.key)) {
        const auto ready = ready_standbys(dir, plan.key);
        if (ready >= wanted)
            break;
        std::vector<std::pair<vm_definition, std::vector<std::filesystem::path>>> batch;
        std::vector<std::filesystem::path> batch_owned;
        for (auto missing = wanted - ready; missing > 0; --missing) {
            batch.push_back(plan.prepare());
            batch_owned.insert(batch_owned.end(), batch.back().second.begin(),
                               batch.back().second.end());
        }
        std::vector<int> reports;
        for (const auto& prepared : batch) {
            int report[2];
            if (::pipe2(report, O_CLOEXEC) != 0)
                throw error(std::string("pipe: ") + std::strerror(errno));
            if (fork_detached()) {
                ::close(report[0]);
                for (const int fd : reports)
                    ::close(fd);
                ::close(lock_fd); // the standby's supervisor must not keep the pool locked
                become_standby_supervisor(dir, plan, prepared, batch_owned, report[1]);
            }
            ::close(report[1]);
            reports.push_back(report[0]);
        }
        for (const int fd : reports) {
            if (read_report(fd).rfind("OK", 0) != 0)
                code = 1; // the supervisor logged why; a later reset tries again
        }
    }
    if (code == 0 && plan.finish)
        plan.finish();
    return code;
}

// Fills the VM's pool of standbys for the plan's key, holding the standby lock (`lock_fd`) until
// it is full or a preparation fails. The missing standbys are started at once, not one after
// the other: resets that follow each other faster than one qemu starts (resets 0.2 s apart use
// up a standby every 0.2 s, and a qemu start alone takes about 0.1 s of CPU here) would
// otherwise always find the pool empty. Each standby gets a supervisor of its own; this process
// only forks them and waits for their word, so it never has a thread.
[[noreturn]] void become_standby_preparer(const state_directory& dir, const standby_plan& plan,
                                          int lock_fd) {
    detach_from_caller(dir, {lock_fd});
    detail::set_session_nice(0, detail::background_nice);
    int code = 0;
    try {
        remove_replaced_files(dir, plan);
        if (still_wanted(dir, plan.key))
            code = fill_standby_pool(dir, plan, lock_fd);
        else
            std::cerr << timestamp() << " standbys for " << plan.key
                      << " are no longer wanted: a later reset asked for others" << std::endl;
    } catch (const std::exception& e) {
        std::cerr << timestamp() << " preparing standbys failed: " << e.what() << std::endl;
        code = 1;
    }
    ::close(lock_fd);
    std::cout.flush();
    std::cerr.flush();
    ::_exit(code);
}

} // namespace

background_start::background_start(int report_fd, std::filesystem::path supervisor_log)
    : report_fd_(report_fd)
    , supervisor_log_(std::move(supervisor_log)) {}

background_start::background_start(background_start&& other) noexcept
    : report_fd_(std::exchange(other.report_fd_, -1))
    , supervisor_log_(std::move(other.supervisor_log_)) {}

background_start::~background_start() {
    if (report_fd_ >= 0) {
        try {
            wait();
        } catch (const error&) {
            // Nobody asked: the supervisor logged it.
        }
    }
}

void background_start::wait() {
    if (report_fd_ < 0)
        return;
    const auto answer = read_report(std::exchange(report_fd_, -1));
    if (answer.rfind("OK", 0) != 0)
        throw error(answer.size() > 3
                        ? answer.substr(3)
                        : "the VM's supervisor failed (see " + supervisor_log_.string() + ")");
}

background_start begin_start_in_background(const vm_definition& definition,
                                           const launch_options& options,
                                           const supervise_options& supervision) {
    const auto root = options.state_root.empty() ? default_state_root() : options.state_root;
    state_directory dir(root, definition.name);
    dir.create();

    int report[2];
    if (::pipe2(report, O_CLOEXEC) != 0)
        throw error(std::string("pipe: ") + std::strerror(errno));
    bool child = false;
    try {
        child = fork_detached();
    } catch (...) {
        ::close(report[0]);
        ::close(report[1]);
        throw;
    }
    if (child) {
        ::close(report[0]);
        become_supervisor(definition, options, supervision, dir, report[1]);
    }
    ::close(report[1]);
    return background_start(report[0], dir.supervisor_log());
}

void start_in_background(const vm_definition& definition, const launch_options& options,
                         const supervise_options& supervision) {
    begin_start_in_background(definition, options, supervision).wait();
}

namespace {

// The purpose a queued request writes into the queue lock: others read it to see what it waits
// to prepare.
std::string queued_for(const std::string& key) {
    return "queued to prepare standbys for " + key;
}

// Whether the request queued behind the preparation under way is one for `key`: it looks at the
// pool only after that preparation has ended, so it covers another request for the same key.
bool queued_for_the_same_key(const state_directory& dir, const std::string& key) {
    std::string holder;
    try {
        holder = read_file(dir.standby_queue_lock());
    } catch (const std::exception&) {
    }
    return holder.find("(" + queued_for(key) + ")") != std::string::npos;
}

// The queue's one place, taken by the caller before it forks the process that waits in it: from
// the moment the reset returns, one of the two locks shows that standbys are on their way
// (standby_being_prepared), however late that process is first scheduled at nice 19. nullopt
// when the place is taken (the process then looks at who holds it: see wait_behind_preparation).
std::optional<vm_lock> take_queue_place(const state_directory& dir, const std::string& key) {
    try {
        return vm_lock::acquire(dir.standby_queue_lock(), queued_for(key),
                                std::chrono::milliseconds(0));
    } catch (const error&) {
        return std::nullopt;
    }
}

// In a process of its own, behind a preparation under way: waits for it to end and fills the
// pool then. At most one request per key waits so: resets that come faster than standbys are
// made would otherwise queue a process each, and those would hold the standby lock one after
// the other long after the pool was full (each looks at the pool and tidies up), keeping
// resets waiting for a preparation that brings nothing. `queue` is the place in the queue when
// the caller took it; otherwise this waits for it.
void wait_behind_preparation(const state_directory& dir, const standby_plan& plan,
                             std::optional<vm_lock> queue) {
    using namespace std::chrono_literals;
    for (auto deadline = std::chrono::steady_clock::now() + 2min; !queue;) {
        // The one queued already waits for this key: it covers this request. (Empty text: its
        // holder has just taken it and not written yet; wait and look again.)
        if (queued_for_the_same_key(dir, plan.key))
            return;
        if (std::chrono::steady_clock::now() >= deadline)
            return; // still busy after minutes: those preparations fill the pool
        std::this_thread::sleep_for(20ms);
        queue = take_queue_place(dir, plan.key);
    }
    std::optional<vm_lock> pool;
    try {
        pool.emplace(vm_lock::acquire(dir.standby_lock(), "preparing a standby", 2min));
    } catch (const error&) {
        return; // still busy after minutes: that preparation fills the pool
    }
    // From here on this request has not looked at the pool yet: a later one may queue.
    queue->release();
    become_standby_preparer(dir, plan, pool->native_handle());
}

} // namespace

void finish_in_background(const state_directory& dir, std::function<void()> work) {
    if (fork_detached(true)) {
        detach_from_caller(dir, {});
        try {
            work();
        } catch (const std::exception& e) {
            std::cerr << timestamp() << " " << e.what() << std::endl;
        }
        std::cout.flush();
        std::cerr.flush();
        ::_exit(0);
    }
}

void finish_in_background_holding(const state_directory& dir, vm_lock lock,
                                  std::function<void(vm_lock&)> work) {
    if (fork_detached(true)) {
        detach_from_caller(dir, {lock.native_handle()});
        try {
            work(lock);
        } catch (const std::exception& e) {
            std::cerr << timestamp() << " " << e.what() << std::endl;
        }
        lock.release();
        std::cout.flush();
        std::cerr.flush();
        ::_exit(0);
    }
    // The child holds the flock through the open file they share.
    lock.close_without_unlock();
}

namespace {

// In the supervisor of a standby a reset has just promoted: the next standbys for the same key,
// with the plan that made this one, as the reset would otherwise have forked for; their preparer
// first removes the files of the replaced definition that nothing keeps (the promotion left that
// definition as the refill marker). Returns once the preparation has its place (the standby lock
// or the queue's), its intermediate process reaped: this process lives on, supervising the VM.
void refill_after_promotion(const state_directory& dir, const standby_plan& plan) {
    auto next = plan;
    next.replaced.reset();
    try {
        next.replaced = load_definition(dir.standby_refill(::getpid()));
    } catch (const std::exception&) {
        // No definition to compare with: the plan's tidy-up finds what nothing uses.
    }
    prepare_standby_in_background(dir, std::move(next));
    for (const pid_t pid : std::exchange(unreaped(), {}))
        while (::waitpid(pid, nullptr, 0) < 0 && errno == EINTR) {
        }
}

} // namespace

void prepare_standby_in_background(const state_directory& dir, standby_plan plan) {
    // A record of the moment, not of the VM: a crash that loses it loses nothing.
    write_file_atomically(dir.standby_wanted(), plan.key,
                          std::filesystem::perms::owner_read | std::filesystem::perms::owner_write,
                          durability::atomic_only);
    std::optional<vm_lock> lock;
    try {
        lock.emplace(vm_lock::acquire(dir.standby_lock(), "preparing a standby", {}));
    } catch (const error&) {
        // Another preparation is under way. The replaced qemu's files are still this caller's
        // to remove, off its path too (nothing prepared uses them). And the other preparation
        // may be past its last look at the pool, about to leave it one short: this request
        // waits its turn in the background and fills the pool then (at once done if full).
        auto queue = take_queue_place(dir, plan.key);
        if (fork_detached(true)) {
            detach_from_caller(dir, {queue ? queue->native_handle() : -1});
            detail::set_session_nice(0, detail::background_nice);
            try {
                remove_replaced_files(dir, plan);
            } catch (const std::exception& e) {
                std::cerr << timestamp() << " removing a replaced qemu's files: " << e.what()
                          << std::endl;
            }
            plan.replaced.reset();
            try {
                wait_behind_preparation(dir, plan, std::move(queue));
            } catch (const std::exception& e) {
                std::cerr << timestamp() << " queuing a standby preparation: " << e.what()
                          << std::endl;
            }
            ::_exit(0);
        }
        if (queue)
            queue->close_without_unlock(); // the child holds it now
        return;
    }
    // The child holds the lock from the start, so that whoever waits for a standby or discards
    // them cannot slip in before it has begun.
    if (fork_detached(true))
        become_standby_preparer(dir, plan, lock->native_handle());
    lock->close_without_unlock();
}

} // namespace qmpkit::launcher
