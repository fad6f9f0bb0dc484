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
// - memory: the summed PSS of the qemus of 1, 4 and 8 clones of a 256 MiB guest's reset point,
//   against one VM booted normally.
//
// Every CLI figure is one process per call (posix_spawn), timed from just before the spawn to
// just after waitpid.
// The VMs are the tiny guest: pc, 256 MiB, 1 vCPU, one 64 MiB qcow2 disk, TCG here.
//
// A pool as large as the number of workers gains nothing under load: every released VM is the
// one its worker waits for. The spare VMs are what lets a lease find one already reset.
//
//   pool_throughput [--seconds S] [--leases N] [--workers N] [--size N] [--qmpkit PATH]
//                   [--guest DIR]

#include "cli_timing.hpp"

#include <qmpkit/launcher/runtime_info.hpp>
#include <qmpkit/launcher/state_directory.hpp>

#include <boost/json.hpp>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <sstream>
#include <string>
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
};
options opts;
fs::path scratch, state;
int workers = 2;
int pool_size = 4;

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

long pss_of_vms(const std::vector<std::string>& names) {
    long sum = 0;
    for (const auto& n : names)
        if (const auto info = launcher::read_runtime_info(launcher::state_directory(state, n)))
            sum += pss_kib(info->qemu_pid);
    return sum;
}

} // namespace

int main(int argc, char** argv) {
    for (int i = 1; i + 1 < argc; i += 2) {
        const std::string a = argv[i];
        if (a == "--seconds")
            opts.seconds = std::atoi(argv[i + 1]);
        else if (a == "--leases")
            opts.leases = std::atoi(argv[i + 1]);
        else if (a == "--workers")
            workers = std::atoi(argv[i + 1]);
        else if (a == "--size")
            pool_size = std::atoi(argv[i + 1]);
        else if (a == "--qmpkit")
            opts.qmpkit = argv[i + 1];
        else if (a == "--guest")
            opts.guest = argv[i + 1];
        else {
            std::fprintf(stderr, "usage: pool_throughput [--seconds S] [--leases N] "
                                 "[--workers N] [--size N] [--qmpkit PATH] [--guest DIR]\n");
            return 2;
        }
    }
    std::setvbuf(stdout, nullptr, _IOLBF, 0);
    char tmpl[] = "/tmp/qmpkit-pool-bench-XXXXXX";
    scratch = ::mkdtemp(tmpl);
    state = scratch / "state";
    std::printf("qmpkit %s, state %s, %d workers, a pool of %d, %d s per sustained run\n",
                opts.qmpkit.c_str(), state.c_str(), workers, pool_size, opts.seconds);

    call({"start", definition("origin").string(), "--wait-ready"});
    call({"reset-point", "create", "origin", "clean"});
    // A settled guest before measuring memory: the booted VM alone.
    const long one_booted = pss_of_vms({"origin"});
    call({"pool", "create", "p", "--from", "origin", "--size", std::to_string(pool_size)});

    std::printf("\n%-62s %5s %9s %9s  %s\n", "what (ms; one process per call)", "n", "median",
                "p99", "note");
    std::vector<double> lease_ms, release_ms;
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
    const std::vector<std::string> bodies = {"true", "sleep 1"};
    std::vector<double> pool_rate, naive_rate;
    for (const auto& body : bodies) {
        std::vector<double> latency;
        pool_rate.push_back(sustained(
            [&body](int w) {
                const auto l = call(
                    {"pool", "lease", "p", "--wait", "120", "--holder", std::to_string(w)}, true);
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
    std::vector<double> revert_latency;
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

    // Memory of clones of the point, summed PSS of their qemus, settled a moment.
    std::printf("\nmemory (summed PSS of the qemu processes, MiB):\n");
    std::printf("  one VM booted normally (256 MiB guest): %.1f\n", one_booted / 1024.0);
    std::vector<std::string> clones;
    long pss_one = 0;
    for (const int target : {1, 4, 8}) {
        const auto more = target - static_cast<int>(clones.size());
        const auto r = call({"--json", "clone", "origin", "--count", std::to_string(more)}, true);
        const auto made = json::parse(r.out);
        for (const auto& n : made.at("clones").as_array())
            clones.emplace_back(n.as_string());
        std::this_thread::sleep_for(3s);
        const long pss = pss_of_vms(clones);
        if (target == 1)
            pss_one = pss;
        std::printf("  %d clone(s): %.1f (%.2fx one clone)\n", target, pss / 1024.0,
                    pss_one ? static_cast<double>(pss) / static_cast<double>(pss_one) : 0.0);
    }
    std::printf("\nratios:\n");
    for (std::size_t i = 0; i < bodies.size(); ++i)
        std::printf("  test `%s`: pool / naive tests per minute = %.2fx\n", bodies[i].c_str(),
                    pool_rate[i] / naive_rate[i]);
    std::printf("  snapshot revert median / pool lease median (a VM free) = %.1fx\n",
                percentile(revert_latency, 50) / percentile(lease_ms, 50));
    for (const auto& c : clones)
        call({"destroy", c});
    call({"destroy", "origin"});
    std::error_code ignored;
    fs::remove_all(scratch, ignored);
    return 0;
}
