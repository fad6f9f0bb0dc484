// The qmpkit command-line tool as a test harness sees it: one process per call, started as
// Python's subprocess starts one (posix_spawn), timed from just before the spawn to just after
// waitpid. Medians and p99 in ms, and the ratios the speed issues ask
// about, in one table from one run (these machines are noisy):
//
// - reset to a reset point against `snapshot revert` to an internal snapshot of the same
//   moment, with 1 s and 0.2 s between calls, and the library's reset call in-process (entry to
//   return) at the same spacings;
// - `--version`, `status`, `snapshot list`, an internal `snapshot create` and `snapshot delete`,
//   a two-disk external `--disk-only` create and its delete;
// - `start --wait-ready` against raw qemu booting the same guest with the same argv until the
//   same ready line.
//
// The VM is the tiny guest shaped like the virsh baseline's (/work/shared/virsh-baseline): pc,
// 128 MiB, 1 vCPU, two 64 MiB qcow2 virtio disks, direct kernel boot.
//
//   cli_latency [--count N] [--calls N] [--boots N] [--qmpkit PATH] [--guest DIR]

#include "bench_args.hpp"
#include "cli_timing.hpp"

#include <qmpkit/launcher/runtime_info.hpp>
#include <qmpkit/launcher/state_directory.hpp>
#include <qmpkit/snapshot/vm_reset.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <sstream>
#include <string>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>
#include <vector>

namespace {

using namespace qmpkit;
namespace fs = std::filesystem;
using bench::clock_type;
using namespace std::chrono_literals;

using bench::ms_since;
using bench::percentile;

struct options {
    fs::path qmpkit = QMPKIT_CLI_PATH;
    fs::path guest = fs::path(QMPKIT_BENCH_SOURCE_DIR) / "build" / "guest";
    int count = 50; // resets and reverts per spacing
    int calls = 30; // other calls
    int boots = 3;
};

options opts;
fs::path scratch, state;

// One call as a harness makes it (bench/cli_timing.hpp). Milliseconds.
double spawn(const fs::path& program, const std::vector<std::string>& args, bool check = true) {
    const auto r = bench::run_timed(program, args, state);
    if (check && !r.ok()) {
        std::string line;
        for (const auto& a : args)
            line += " " + a;
        std::fprintf(stderr, "cli_latency: %s%s failed (status %d)\n", program.c_str(),
                     line.c_str(), r.status);
        std::exit(1);
    }
    return r.ms;
}

double call(const std::vector<std::string>& args, bool check = true) {
    return spawn(opts.qmpkit, args, check);
}

struct row {
    std::string what;
    std::vector<double> ms;
    std::string note;
};
std::vector<row> rows;

const row& add(std::string what, std::vector<double> ms, std::string note = {}) {
    rows.push_back({std::move(what), std::move(ms), std::move(note)});
    return rows.back();
}

double median_of(const std::string& what) {
    for (const auto& r : rows)
        if (r.what == what)
            return percentile(r.ms, 50);
    return 0;
}

std::vector<double> repeat(int n, const std::function<double()>& once,
                           std::chrono::milliseconds spacing = 0ms) {
    std::vector<double> ms;
    for (int i = 0; i < n; ++i) {
        if (spacing.count() > 0)
            std::this_thread::sleep_for(spacing);
        ms.push_back(once());
    }
    return ms;
}

std::string definition() {
    std::ostringstream y;
    y << "name: bench\nmachine: pc\naccel: auto\ncpus: 1\nmemory: 128M\n"
      << "kernel: " << (opts.guest / "vmlinuz").string() << "\n"
      << "initrd: " << (opts.guest / "initramfs.img").string() << "\n"
      << "append: \"console=ttyS0 panic=-1\"\ncommand_channel: true\n"
      << "disks:\n"
      << "  - {name: system, file: " << (scratch / "system.qcow2").string() << ", size: 64M}\n"
      << "  - {name: data, file: " << (scratch / "data.qcow2").string() << ", size: 64M}\n";
    return y.str();
}

bool serial_says_ready(const fs::path& log) {
    std::ifstream in(log);
    std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    return text.find("QMPKIT-GUEST-READY") != std::string::npos;
}

// Raw qemu with the argv qmpkit used, its monitors on sockets of its own and its files under
// `dir`: milliseconds from fork until the ready line is in its serial log.
double raw_boot(std::vector<std::string> argv, const fs::path& from, const fs::path& dir) {
    fs::remove_all(dir);
    fs::create_directories(dir);
    int monitor = 0;
    for (auto& a : argv) {
        if (const auto at = a.find(",fd="); at != std::string::npos && a.starts_with("socket,")) {
            const auto end = a.find(',', at + 1);
            a = a.substr(0, at) + ",path=" + (dir / ("m" + std::to_string(monitor++))).string() +
                ",server=on,wait=off" + (end == std::string::npos ? "" : a.substr(end));
            // server=on,wait=off may now appear twice: keep the first
            const auto again = a.find(",server=on,wait=off", a.find(",server=on,wait=off") + 1);
            if (again != std::string::npos)
                a.erase(again, std::strlen(",server=on,wait=off"));
        }
        for (std::size_t p; (p = a.find(from.string())) != std::string::npos;)
            a.replace(p, from.string().size(), dir.string());
        // Sockets bound in a directory of their own (starting.<id>/): make it.
        if (const auto at = a.find("path="); at != std::string::npos) {
            const auto end = a.find(',', at);
            fs::create_directories(fs::path(a.substr(at + 5, end - at - 5)).parent_path());
        }
    }
    std::vector<char*> args;
    for (auto& a : argv)
        args.push_back(a.data());
    args.push_back(nullptr);
    const auto t0 = clock_type::now();
    const pid_t pid = ::fork();
    if (pid == 0) {
        const int null = ::open("/dev/null", O_RDWR);
        const int log = ::open((dir / "qemu.log").c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
        ::dup2(null, STDIN_FILENO);
        ::dup2(log, STDOUT_FILENO);
        ::dup2(log, STDERR_FILENO);
        ::execvp(args[0], args.data());
        ::_exit(127);
    }
    double ms = -1;
    while (ms_since(t0) < 120000) {
        if (serial_says_ready(dir / "serial.log")) {
            ms = ms_since(t0);
            break;
        }
        int status = 0;
        if (::waitpid(pid, &status, WNOHANG) == pid)
            break;
        std::this_thread::sleep_for(2ms);
    }
    ::kill(pid, SIGKILL);
    ::waitpid(pid, nullptr, 0);
    if (ms < 0) {
        std::fprintf(stderr, "cli_latency: raw qemu did not reach ready (see %s)\n",
                     (dir / "qemu.log").c_str());
        std::exit(1);
    }
    return ms;
}

void print_table() {
    std::printf("\n%-58s %6s %9s %9s  %s\n", "what (one process per call)", "n", "median", "p99",
                "note");
    for (const auto& r : rows)
        std::printf("%-58s %6zu %9.1f %9.1f  %s\n", r.what.c_str(), r.ms.size(),
                    percentile(r.ms, 50), percentile(r.ms, 99), r.note.c_str());
}

} // namespace

int main(int argc, char** argv) {
    if (auto code = parse_bench_args(
            argc, argv,
            "cli_latency [--count N] [--calls N] [--boots N] [--qmpkit PATH] [--guest DIR]",
            {{"--count", [](const char* v) { opts.count = std::atoi(v); }},
             {"--calls", [](const char* v) { opts.calls = std::atoi(v); }},
             {"--boots", [](const char* v) { opts.boots = std::atoi(v); }},
             {"--qmpkit", [](const char* v) { opts.qmpkit = v; }},
             {"--guest", [](const char* v) { opts.guest = v; }}}))
        return *code;
    char tmpl[] = "/tmp/qmpkit-cli-latency-XXXXXX";
    scratch = ::mkdtemp(tmpl);
    state = scratch / "state";
    std::ofstream(scratch / "bench.yaml") << definition();
    const auto yaml = (scratch / "bench.yaml").string();
    std::printf("qmpkit %s, state %s\n", opts.qmpkit.c_str(), state.c_str());

    // Boot to ready: qmpkit start --wait-ready, then raw qemu with the argv it used.
    std::vector<double> boots, raws;
    std::vector<std::string> argv0;
    const launcher::state_directory dir(state, "bench");
    for (int i = 0; i < opts.boots; ++i) {
        boots.push_back(call({"start", yaml, "--wait-ready"}));
        argv0 = launcher::read_runtime_info(dir)->command_line;
        call({"destroy", "bench"});
        raws.push_back(raw_boot(argv0, dir.path(), scratch / "raw"));
    }
    add("start --wait-ready (boot to ready)", boots);
    add("raw qemu, same argv, to the same ready line", raws);
    call({"start", yaml, "--wait-ready"});

    // What any call costs on this machine before the program runs at all: the floor under
    // --version.
    add("spawn of /bin/true (the floor of any call)",
        repeat(opts.calls, [] { return spawn("/bin/true", {}); }));
    add("--version", repeat(opts.calls, [] { return call({"--version"}); }));
    add("status", repeat(opts.calls, [] { return call({"status", "bench"}); }));
    call({"snapshot", "create", "bench", "s0"});
    add("snapshot list (1 snapshot)", repeat(opts.calls, [] {
            return call({"snapshot", "list", "bench"});
        }));
    std::vector<double> icreate, idelete, ecreate, edelete;
    for (int i = 0; i < std::max(3, opts.calls / 3); ++i) {
        icreate.push_back(call({"snapshot", "create", "bench", "i" + std::to_string(i)}));
        idelete.push_back(call({"snapshot", "delete", "bench", "i" + std::to_string(i)}));
        ecreate.push_back(
            call({"snapshot", "create", "bench", "e" + std::to_string(i), "--disk-only"}));
        edelete.push_back(call({"snapshot", "delete", "bench", "e" + std::to_string(i)}));
    }
    add("snapshot create (internal, RAM + 2 disks)", icreate);
    add("snapshot delete (internal)", idelete);
    add("snapshot create --disk-only (external, 2 disks, atomic)", ecreate);
    add("snapshot delete (external: block-commit)", edelete);

    // Reverts to s0, then a reset point at the moment of s0 (a revert, then the point).
    for (const auto spacing : {1000ms, 200ms})
        add("snapshot revert s0, " + std::to_string(spacing.count()) + " ms apart",
            repeat(
                opts.count,
                [] {
                    return call({"snapshot", "revert", "bench", "s0"});
                },
                spacing));
    call({"snapshot", "revert", "bench", "s0"});
    call({"reset-point", "create", "bench", "clean"});
    std::this_thread::sleep_for(2s); // the first standbys
    for (const auto spacing : {1000ms, 200ms})
        add("reset (auto), " + std::to_string(spacing.count()) + " ms apart",
            repeat(
                opts.count,
                [] {
                    return call({"reset", "bench"});
                },
                spacing));

    snapshot::manager_options library;
    library.state_root = state;
    for (const auto spacing : {1000ms, 200ms})
        add("library vm_reset::reset (in-process), " + std::to_string(spacing.count()) +
                " ms apart",
            repeat(
                opts.count,
                [&] {
                    const auto t0 = clock_type::now();
                    snapshot::vm_reset("bench", library).reset();
                    return ms_since(t0);
                },
                spacing));
    call({"destroy", "bench"});

    print_table();
    std::printf("\nratios of medians:\n");
    for (const auto* spacing : {"1000", "200"}) {
        const double reset = median_of(std::string("reset (auto), ") + spacing + " ms apart");
        const double revert =
            median_of(std::string("snapshot revert s0, ") + spacing + " ms apart");
        const double lib = median_of(std::string("library vm_reset::reset (in-process), ") +
                                     spacing + " ms apart");
        std::printf("  %s ms apart: revert / reset = %.1fx (target >= 5); reset / (1.5 x library "
                    "+ 5 ms) = %.2f (target <= 1)\n",
                    spacing, revert / reset, reset / (1.5 * lib + 5));
    }
    std::printf("  --version: %.1f ms above the floor of any call (target: under 3 ms in all)\n",
                median_of("--version") - median_of("spawn of /bin/true (the floor of any call)"));
    std::printf("  boot: qmpkit / raw qemu = %.2f (target <= 1.1)\n",
                median_of("start --wait-ready (boot to ready)") /
                    median_of("raw qemu, same argv, to the same ready line"));
    std::error_code ignored;
    fs::remove_all(scratch, ignored);
    return 0;
}
