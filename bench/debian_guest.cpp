// The Debian 12 guest (scripts/build-debian-guest: UEFI, cloud-init, ssh) as a user meets it,
// through the qmpkit tool: one process per call (bench/cli_timing.hpp), each clock started just
// before the first call of an operation and stopped when its last call has exited. "until ssh"
// adds `qmpkit ssh VM --wait 600 -- true` to the operation: the clock stops when that call exits
// 0, i.e. when a login with the VM's key has run a command.
//
// - cold boot: `start` of a VM never booted (cloud-init runs), then later boots of the same VM
//   after a clean `shutdown` (cloud-init does not run again);
// - `snapshot revert` to an internal snapshot (RAM and disks) — until qemu runs (the call) and
//   until ssh;
// - standby `reset` to a reset point of the same moment — until qemu runs and until ssh;
// - `clone --count 4` until all four clones answer ssh, against four new VMs cold-booted at once.
//
// Medians and p99 in ms, and the ratios the Debian guest issue asks about, from one run.
//
//   debian_guest [--count N] [--boots N] [--clones N] [--cold4 0|1] [--qmpkit PATH] [--image F]

#include "cli_timing.hpp"

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <future>
#include <string>
#include <thread>
#include <vector>

namespace {

using namespace qmpkit;
namespace fs = std::filesystem;
using bench::ms_since;
using bench::percentile;
using namespace std::chrono_literals;

struct options {
    fs::path qmpkit = QMPKIT_CLI_PATH;
    fs::path image = fs::path(QMPKIT_BENCH_SOURCE_DIR) / "build/guest/debian/debian-12.qcow2";
    int count = 7;  // reverts and resets
    int boots = 2;  // boots of the one VM: the first with cloud-init, then plain ones
    int clones = 2; // rounds of clone --count 4
    bool cold4 = true;
};

options opts;
fs::path scratch, state;

double call(const std::vector<std::string>& args) {
    const auto r = bench::run_timed(opts.qmpkit, args, state);
    if (!r.ok()) {
        std::string line;
        for (const auto& a : args)
            line += " " + a;
        std::fprintf(stderr, "debian_guest: qmpkit%s failed (status %d)\n", line.c_str(), r.status);
        // No VM outlives the benchmark: each has a directory under the state root.
        std::error_code ec;
        for (const auto& e : fs::directory_iterator(state, ec))
            if (e.is_directory(ec))
                bench::run_timed(opts.qmpkit, {"destroy", e.path().filename().string()}, state);
        std::exit(1);
    }
    return r.ms;
}

double until_ssh(const std::string& vm) {
    return call({"ssh", vm, "--wait", "600", "--", "true"});
}

fs::path definition(const std::string& name) {
    const auto file = scratch / (name + ".yaml");
    std::ofstream(file) << "name: " << name
                        << "\nmachine: q35\naccel: auto\nmemory: 1G\nfirmware: uefi\n"
                           "guest_agent: true\ndisks:\n  - name: system\n    file: "
                        << (scratch / (name + "-system.qcow2")).string()
                        << "\n    backing: " << opts.image.string()
                        << "\nnetwork:\n  forwards:\n    - {host_port: auto, guest_port: 22}\n"
                           "cloud_init: {}\n";
    return file;
}

void row(const std::string& what, const std::vector<double>& ms) {
    std::printf("%-58s %4zu %10.1f %10.1f\n", what.c_str(), ms.size(), percentile(ms, 50),
                percentile(ms, 99));
}

// Until every VM in `names` answers ssh, the ssh calls made at once.
double all_answer_ssh(const std::vector<std::string>& names) {
    std::vector<std::future<double>> waits;
    for (const auto& n : names)
        waits.push_back(std::async(std::launch::async, [n] { return until_ssh(n); }));
    double slowest = 0;
    for (auto& w : waits)
        slowest = std::max(slowest, w.get());
    return slowest;
}

} // namespace

int main(int argc, char** argv) {
    const auto usage = [](const std::string& a) {
        std::fprintf(stderr, "usage: debian_guest [--count N] [--boots N] [--clones N] "
                             "[--cold4 0|1] [--qmpkit PATH] [--image FILE]\n");
        return a == "--help" || a == "-h" ? 0 : 2;
    };
    for (int i = 1; i < argc; i += 2) {
        const std::string a = argv[i];
        if (i + 1 == argc) // --help, or an option without its value
            return usage(a);
        if (a == "--count")
            opts.count = std::atoi(argv[i + 1]);
        else if (a == "--boots")
            opts.boots = std::max(1, std::atoi(argv[i + 1]));
        else if (a == "--clones")
            opts.clones = std::atoi(argv[i + 1]);
        else if (a == "--cold4")
            opts.cold4 = std::atoi(argv[i + 1]) != 0;
        else if (a == "--qmpkit")
            opts.qmpkit = argv[i + 1];
        else if (a == "--image")
            opts.image = argv[i + 1];
        else
            return usage(a);
    }
    if (!fs::exists(opts.image)) {
        std::fprintf(stderr, "debian_guest: %s is missing: run scripts/build-debian-guest\n",
                     opts.image.c_str());
        return 1;
    }
    std::setvbuf(stdout, nullptr, _IOLBF, 0);
    char tmpl[] = "/tmp/qmpkit-debian-bench-XXXXXX";
    scratch = ::mkdtemp(tmpl);
    state = scratch / "state";
    std::printf("qmpkit %s, image %s, state %s\n", opts.qmpkit.c_str(), opts.image.c_str(),
                state.c_str());
    const std::string vm = "deb";
    const auto yaml = definition(vm).string();

    // Cold boots.
    std::vector<double> first_boot, later_boots, start_calls;
    for (int i = 0; i < opts.boots; ++i) {
        const auto started = bench::clock_type::now();
        start_calls.push_back(call({"start", yaml}));
        until_ssh(vm);
        (i == 0 ? first_boot : later_boots).push_back(ms_since(started));
        if (i + 1 < opts.boots)
            call({"shutdown", vm, "--timeout", "120"});
    }

    // snapshot revert, then a standby reset to a reset point made right after the last revert
    // (the moment of the snapshot, a few seconds later). Reverts come first: a reset point
    // freezes the image that holds the snapshot, and a revert to it is then refused.
    call({"snapshot", "create", vm, "s1"});
    std::vector<double> reverts, revert_ssh, resets, reset_ssh;
    for (int i = 0; i < opts.count; ++i) {
        std::this_thread::sleep_for(1s);
        auto started = bench::clock_type::now();
        reverts.push_back(call({"snapshot", "revert", vm, "s1"}));
        until_ssh(vm);
        revert_ssh.push_back(ms_since(started));
    }
    call({"snapshot", "revert", vm, "s1"});
    call({"reset-point", "create", vm, "rp"});
    for (int i = 0; i < opts.count; ++i) {
        // A test runs between resets: the next standby gets ready meanwhile.
        std::this_thread::sleep_for(5s);
        auto started = bench::clock_type::now();
        resets.push_back(call({"reset", vm, "rp"}));
        until_ssh(vm);
        reset_ssh.push_back(ms_since(started));
    }

    // Four clones until all answer ssh, against four cold boots at once.
    std::vector<double> clone4;
    for (int round = 0; round < opts.clones; ++round) {
        const auto started = bench::clock_type::now();
        call({"clone", vm, "--count", "4", "--prefix", "c" + std::to_string(round) + "-"});
        std::vector<std::string> names;
        for (int i = 1; i <= 4; ++i)
            names.push_back("c" + std::to_string(round) + "-" + std::to_string(i));
        all_answer_ssh(names);
        clone4.push_back(ms_since(started));
        for (const auto& n : names) {
            call({"destroy", n});
            call({"remove", n});
        }
    }
    call({"destroy", vm});

    std::vector<double> cold4;
    if (opts.cold4) {
        std::vector<std::string> names;
        std::vector<std::string> files;
        for (int i = 1; i <= 4; ++i) {
            names.push_back("cold-" + std::to_string(i));
            files.push_back(definition(names.back()).string());
        }
        const auto started = bench::clock_type::now();
        for (const auto& f : files)
            call({"start", f});
        all_answer_ssh(names);
        cold4.push_back(ms_since(started));
        for (const auto& n : names)
            call({"destroy", n});
    }

    std::printf("\n%-58s %4s %10s %10s\n", "Debian 12, 1 GiB, 1 vCPU, UEFI (CLI, ms)", "n",
                "median", "p99");
    row("cold boot, first (cloud-init): start until ssh", first_boot);
    if (!later_boots.empty())
        row("cold boot, later: start until ssh", later_boots);
    row("  the start call alone", start_calls);
    row("snapshot revert (internal, RAM + disks): the call", reverts);
    row("snapshot revert until ssh", revert_ssh);
    row("reset to a reset point (standby): the call", resets);
    row("reset until ssh", reset_ssh);
    row("clone --count 4 until all four answer ssh", clone4);
    if (!cold4.empty())
        row("4 new VMs started at once until all answer ssh", cold4);

    const auto med = [](const std::vector<double>& v) { return percentile(v, 50); };
    std::printf("\nratios (medians)\n");
    std::printf("  revert / reset, until qemu runs:  %6.1fx  (target >= 20x)\n",
                med(reverts) / med(resets));
    std::printf("  revert / reset, until ssh:        %6.1fx  (target >= 3x)\n",
                med(revert_ssh) / med(reset_ssh));
    const auto boot = med(later_boots.empty() ? first_boot : later_boots);
    std::printf("  cold boot / reset until ssh:      %6.1fx\n", boot / med(reset_ssh));
    std::printf("  cold boot / revert until ssh:     %6.1fx\n", boot / med(revert_ssh));
    if (!cold4.empty())
        std::printf("  4 cold boots / 4 clones:          %6.1fx  (target >= 5x)\n",
                    med(cold4) / med(clone4));
    std::error_code ec;
    fs::remove_all(scratch, ec);
    return 0;
}
