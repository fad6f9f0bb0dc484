// A pool of warm VMs as test workers use it, against the naive way, in one run:
//
// - `pool lease` and `pool release` of a pool of 4 with a free VM waiting (1 s apart, so that
//   the background reset of the last release is done): what a worker pays per test;
// - --workers (2) workers for --seconds each, leasing from a pool of --size (4): lease, the test
// (`shell VM -- true`: the VM answers; then
//   `sleep 1`: a test that takes a second), release; tests per minute and the lease latency
//   including any wait for a free VM;
// - the naive way on the same machine: as many workers, each with its own VM and an internal
//   snapshot, `snapshot revert` then the same test;
// - memory of 1, 4 and 8 clones of a 256 MiB guest's reset point, against one VM booted
//   normally. A clone's qemu maps the point's RAM file copy-on-write: the pages the guests only
//   read stay one copy in the page cache, shared by all of them, while each qemu's own memory
//   (heap, device state, and under TCG its translated code and soft-MMU TLBs) is per clone. Two
//   figures: the summed PSS of the clones' qemus (shared pages split among their mappers), and
//   the host's memory for them, each qemu's USS (what is its alone) plus the point's RAM file's
//   resident pages once (mincore). Twice: clones of the idle guest's point (it has touched
//   ~40 MiB of its RAM), and clones of a point taken after the guest wrote --fill MiB (96) to
//   its tmpfs, each clone reading them back, as a guest that uses its memory does.
//   --memory-only skips everything else.
//
// Every CLI figure is one process per call (posix_spawn), timed from just before the spawn to
// just after waitpid.
// The VMs are the tiny guest: pc, 256 MiB, 1 vCPU, one 64 MiB qcow2 disk, TCG here.
//
// A pool as large as the number of workers gains nothing under load: every released VM is the
// one its worker waits for. The spare VMs are what lets a lease find one already reset.
//
//   pool_throughput [--seconds S] [--leases N] [--workers N] [--size N]
//                   [--strategy template|standby] [--fill MIB] [--memory-only]
//                   [--qmpkit PATH] [--guest DIR]

#include "cli_timing.hpp"

#include <qmpkit/launcher/runtime_info.hpp>
#include <qmpkit/launcher/state_directory.hpp>

#include <boost/json.hpp>

#include <atomic>
#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <fcntl.h>
#include <filesystem>
#include <fstream>
#include <functional>
#include <mutex>
#include <sstream>
#include <string>
#include <sys/mman.h>
#include <thread>
#include <unistd.h>
#include <vector>

namespace {

using namespace qmpkit;
using namespace std::chrono_literals;
namespace fs = std::filesystem;
namespace json = boost::json;
using bench::percentile;

struct options {
    fs::path qmpkit = QMPKIT_CLI_PATH;
    fs::path guest = fs::path(QMPKIT_BENCH_SOURCE_DIR) / "build" / "guest";
    int seconds = 60; // per sustained run
    int leases = 50;  // idle-pool leases
    int fill = 96;    // MiB the guest writes before the second memory point
    bool memory_only = false;
};
options opts;
fs::path scratch, state;
int workers = 2;
int pool_size = 4;
std::string strategy = "template"; // how the pool's members reset

bench::timed_call call(const std::vector<std::string>& args, bool capture = false) {
    auto r = bench::run_timed(opts.qmpkit, args, state, capture);
    if (!r.ok()) {
        std::string line;
        for (const auto& a : args)
            line += " " + a;
        std::fprintf(stderr, "pool_throughput: qmpkit%s failed (status %d)\n", line.c_str(),
                     r.status);
        std::exit(1);
    }
    return r;
}

fs::path definition(const std::string& name) {
    std::ostringstream y;
    y << "name: " << name << "\nmachine: pc\naccel: auto\ncpus: 1\nmemory: 256M\n"
      << "kernel: " << (opts.guest / "vmlinuz").string() << "\n"
      << "initrd: " << (opts.guest / "initramfs.img").string() << "\n"
      << "append: \"console=ttyS0 panic=-1\"\ncommand_channel: true\n"
      << "reset: {strategy: template}\n"
      << "disks:\n"
      << "  - {name: system, file: " << (scratch / (name + ".qcow2")).string() << ", size: 64M}\n";
    const auto file = scratch / (name + ".yaml");
    std::ofstream(file) << y.str();
    return file;
}

void row(const std::string& what, const std::vector<double>& ms, const std::string& note = {}) {
    std::printf("%-62s %5zu %9.1f %9.1f  %s\n", what.c_str(), ms.size(), percentile(ms, 50),
                percentile(ms, 99), note.c_str());
}

// Runs `one_test(worker)` in `workers` threads for opts.seconds; each returns the latency to
// record. Returns tests per minute.
double sustained(const std::function<double(int)>& one_test, std::vector<double>& latencies) {
    std::mutex mutex;
    std::atomic<int> done{0};
    const auto until = bench::clock_type::now() + std::chrono::seconds(opts.seconds);
    const auto started = bench::clock_type::now();
    std::vector<std::thread> threads;
    for (int w = 0; w < workers; ++w)
        threads.emplace_back([&, w] {
            while (bench::clock_type::now() < until) {
                const double ms = one_test(w);
                std::lock_guard g(mutex);
                latencies.push_back(ms);
                ++done;
            }
        });
    for (auto& t : threads)
        t.join();
    return done * 60000.0 / bench::ms_since(started);
}

long pss_kib(int pid) {
    std::ifstream in("/proc/" + std::to_string(pid) + "/smaps_rollup");
    for (std::string line; std::getline(in, line);)
        if (line.rfind("Pss:", 0) == 0)
            return std::atol(line.c_str() + 4);
    return 0;
}

// What only this process maps (its private pages), leaving out its mapping of `shared_file`:
// the point's RAM is counted once, for all clones (a page of it that only one clone maps would
// count as that clone's private page, and twice).
long uss_kib(int pid, const fs::path& shared_file) {
    std::ifstream in("/proc/" + std::to_string(pid) + "/smaps");
    long sum = 0;
    bool skip = false;
    for (std::string line; std::getline(in, line);) {
        // A mapping's header starts with its address range ("7f12...-7f13... rw-p ...").
        if (!line.empty() && std::isxdigit(static_cast<unsigned char>(line[0])) &&
            line.find('-') < line.find(' '))
            skip =
                line.size() >= shared_file.string().size() && line.ends_with(shared_file.string());
        else if (!skip &&
                 (line.rfind("Private_Clean:", 0) == 0 || line.rfind("Private_Dirty:", 0) == 0))
            sum += std::atol(line.c_str() + line.find(':') + 1);
    }
    return sum;
}

long sum_over_vms(const std::vector<std::string>& names, const std::function<long(int)>& of) {
    long sum = 0;
    for (const auto& n : names)
        if (const auto info = launcher::read_runtime_info(launcher::state_directory(state, n)))
            sum += of(info->qemu_pid);
    return sum;
}

// The file's pages in the page cache (mincore), in KiB.
long resident_kib(const fs::path& file) {
    const int fd = ::open(file.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    const auto size = static_cast<std::size_t>(fs::file_size(file));
    long kib = 0;
    if (void* map = ::mmap(nullptr, size, PROT_READ, MAP_SHARED, fd, 0); map != MAP_FAILED) {
        const auto page = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
        std::vector<unsigned char> in_core((size + page - 1) / page);
        if (::mincore(map, size, in_core.data()) == 0)
            for (const auto c : in_core)
                kib += (c & 1) ? static_cast<long>(page / 1024) : 0;
        ::munmap(map, size);
    }
    ::close(fd);
    return kib;
}

// 1, 4 and 8 clones of the origin's reset point `point`; with `read_back`, each clone reads the
// guest's fill file (its pages mapped, as a workload that uses them maps them).
void clone_memory(const std::string& point, bool read_back) {
    const auto ram = state / "origin" / "reset" / point / "ram";
    std::printf("\nmemory of clones of reset point '%s'%s (MiB):\n", point.c_str(),
                read_back ? ", each clone reading the fill back" : "");
    std::printf("  %6s %10s %12s %16s %28s\n", "clones", "PSS sum", "(x 1 clone)", "USS sum + RAM",
                "(x 1 clone; per clone more)");
    std::vector<std::string> clones;
    long pss_one = 0, host_one = 0;
    for (const int target : {1, 4, 8}) {
        const auto more = target - static_cast<int>(clones.size());
        const auto r = call({"--json", "clone", "origin", "--point", point, "--prefix", point + "-",
                             "--count", std::to_string(more)},
                            true);
        const auto made = json::parse(r.out);
        for (const auto& n : made.at("clones").as_array()) {
            clones.emplace_back(n.as_string());
            if (read_back)
                call({"shell", clones.back(), "--", "md5sum", "/run/fill"});
        }
        std::this_thread::sleep_for(3s);
        const long pss = sum_over_vms(clones, pss_kib);
        const long host =
            sum_over_vms(clones, [&ram](int pid) { return uss_kib(pid, ram); }) + resident_kib(ram);
        if (target == 1) {
            pss_one = pss;
            host_one = host;
        }
        std::printf("  %6d %10.1f %11.2fx %16.1f %10.2fx %16.1f\n", target, pss / 1024.0,
                    static_cast<double>(pss) / static_cast<double>(pss_one), host / 1024.0,
                    static_cast<double>(host) / static_cast<double>(host_one),
                    target > 1 ? (host - host_one) / 1024.0 / (target - 1) : 0.0);
    }
    for (const auto& c : clones) {
        call({"destroy", c});
        call({"remove", c});
    }
}

} // namespace

int main(int argc, char** argv) {
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        const bool has_value = i + 1 < argc;
        if (a == "--memory-only")
            opts.memory_only = true;
        else if (a == "--seconds" && has_value)
            opts.seconds = std::atoi(argv[++i]);
        else if (a == "--leases" && has_value)
            opts.leases = std::atoi(argv[++i]);
        else if (a == "--workers" && has_value)
            workers = std::atoi(argv[++i]);
        else if (a == "--size" && has_value)
            pool_size = std::atoi(argv[++i]);
        else if (a == "--strategy" && has_value)
            strategy = argv[++i];
        else if (a == "--fill" && has_value)
            opts.fill = std::atoi(argv[++i]);
        else if (a == "--qmpkit" && has_value)
            opts.qmpkit = argv[++i];
        else if (a == "--guest" && has_value)
            opts.guest = argv[++i];
        else {
            std::fprintf(stderr, "usage: pool_throughput [--seconds S] [--leases N] [--workers N] "
                                 "[--size N] [--strategy template|standby] [--fill MIB] "
                                 "[--memory-only] [--qmpkit PATH] "
                                 "[--guest DIR]\n");
            return 2;
        }
    }
    std::setvbuf(stdout, nullptr, _IOLBF, 0);
    char tmpl[] = "/tmp/qmpkit-pool-bench-XXXXXX";
    scratch = ::mkdtemp(tmpl);
    state = scratch / "state";
    std::printf("qmpkit %s, state %s, %d workers, a pool of %d (%s), %d s per sustained run\n",
                opts.qmpkit.c_str(), state.c_str(), workers, pool_size, strategy.c_str(),
                opts.seconds);

    call({"start", definition("origin").string(), "--wait-ready"});
    call({"reset-point", "create", "origin", "clean"});
    // A settled guest before measuring memory: the booted VM alone.
    const long one_booted = sum_over_vms({"origin"}, pss_kib);
    std::vector<std::string> bodies;
    std::vector<double> pool_rate, naive_rate, lease_ms, revert_latency;
    if (!opts.memory_only) {
        call({"pool", "create", "p", "--from", "origin", "--size", std::to_string(pool_size),
              "--strategy", strategy});

        std::printf("\n%-62s %5s %9s %9s  %s\n", "what (ms; one process per call)", "n", "median",
                    "p99", "note");
        std::vector<double> release_ms;
        for (int i = 0; i < opts.leases; ++i) {
            std::this_thread::sleep_for(1s);
            const auto l = call({"pool", "lease", "p", "--wait", "120"}, true);
            lease_ms.push_back(l.ms);
            const auto vm = std::string(json::parse(l.out).at("vm").as_string());
            release_ms.push_back(call({"pool", "release", "p", vm}).ms);
        }
        row("pool lease, a free VM waiting", lease_ms);
        row("pool release (the reset runs in the background)", release_ms);

        // Two test bodies: `true` (nothing but the VM answering: the resets' own rate) and
        // `sleep 1` (a test that takes a second, during which the background resets run).
        bodies = {"true", "sleep 1"};
        for (const auto& body : bodies) {
            std::vector<double> latency;
            pool_rate.push_back(sustained(
                [&body](int w) {
                    const auto l =
                        call({"pool", "lease", "p", "--wait", "120", "--holder", std::to_string(w)},
                             true);
                    const auto vm = std::string(json::parse(l.out).at("vm").as_string());
                    call({"shell", vm, "--", body});
                    call({"pool", "release", "p", vm});
                    return l.ms;
                },
                latency));
            row("pool lease under load, test `" + body + "`, incl. any wait", latency,
                std::to_string(static_cast<int>(pool_rate.back())) + " tests/min");
        }
        call({"pool", "destroy", "p"});

        // The naive way: a VM per worker, each reverted to its snapshot before every test.
        {
            std::vector<std::thread> boots;
            for (int w = 0; w < workers; ++w)
                boots.emplace_back([w] {
                    const auto name = "naive" + std::to_string(w);
                    call({"start", definition(name).string(), "--wait-ready"});
                    call({"snapshot", "create", name, "s0"});
                });
            for (auto& b : boots)
                b.join();
        }
        for (const auto& body : bodies) {
            std::vector<double> latency;
            naive_rate.push_back(sustained(
                [&body](int w) {
                    const auto name = "naive" + std::to_string(w);
                    const double ms = call({"snapshot", "revert", name, "s0"}).ms;
                    call({"shell", name, "--", body});
                    return ms;
                },
                latency));
            row("snapshot revert per test (a VM per worker), test `" + body + "`", latency,
                std::to_string(static_cast<int>(naive_rate.back())) + " tests/min");
            revert_latency.insert(revert_latency.end(), latency.begin(), latency.end());
        }
        for (int w = 0; w < workers; ++w)
            call({"destroy", "naive" + std::to_string(w)});
    }

    std::printf("\nmemory: one VM booted normally (256 MiB guest), PSS %.1f MiB\n",
                one_booted / 1024.0);
    clone_memory("clean", false);
    call({"shell", "origin", "--", "dd", "if=/dev/urandom", "of=/run/fill", "bs=65536",
          "count=" + std::to_string(opts.fill * 16)});
    call({"reset-point", "create", "origin", "used"});
    clone_memory("used", true);

    if (!opts.memory_only) {
        std::printf("\nratios:\n");
        for (std::size_t i = 0; i < bodies.size(); ++i)
            std::printf("  test `%s`: pool / naive tests per minute = %.2fx\n", bodies[i].c_str(),
                        pool_rate[i] / naive_rate[i]);
        std::printf("  snapshot revert median / pool lease median (a VM free) = %.1fx\n",
                    percentile(revert_latency, 50) / percentile(lease_ms, 50));
    }
    call({"destroy", "origin"});
    std::error_code ignored;
    fs::remove_all(scratch, ignored);
    return 0;
}
