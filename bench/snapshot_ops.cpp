// Median create / revert / delete time for each kind of snapshot, on the tiny guest with
// 256 MiB of RAM under whatever accelerator `auto` picks (TCG on the project's build machines).
//
//   snapshot_ops [--iterations N] [--guest DIR]
//
// Reverts that restart qemu (external snapshots) are timed until qemu answers on QMP, not until
// the guest has booted again.

#include "bench_args.hpp"

#include <qmpkit/launcher/definition_loader.hpp>
#include <qmpkit/launcher/launch.hpp>
#include <qmpkit/launcher/supervisor.hpp>
#include <qmpkit/launcher/vm_control.hpp>
#include <qmpkit/snapshot/snapshot_manager.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <string>
#include <vector>

namespace {

using namespace qmpkit;
namespace fs = std::filesystem;
using clock_type = std::chrono::steady_clock;

double ms_of(const std::function<void()>& f) {
    const auto t0 = clock_type::now();
    f();
    return std::chrono::duration<double, std::milli>(clock_type::now() - t0).count();
}

double median(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v.empty() ? 0 : v[v.size() / 2];
}

snapshot::create_request named(const std::string& name) {
    snapshot::create_request r;
    r.name = name;
    return r;
}

struct row {
    std::string kind;
    std::vector<double> create, revert, remove;
};

} // namespace

int main(int argc, char** argv) {
    int iterations = 5;
    fs::path guest = QMPKIT_BENCH_SOURCE_DIR "/build/guest";
    if (const char* g = std::getenv("QMPKIT_GUEST_DIR"))
        guest = g;
    if (auto code =
            parse_bench_args(argc, argv, "snapshot_ops [--iterations N] [--guest DIR]",
                             {{"--iterations", [&](const char* v) { iterations = std::stoi(v); }},
                              {"--guest", [&](const char* v) { guest = v; }}}))
        return *code;
    if (!fs::exists(guest / "vmlinuz")) {
        std::fprintf(stderr, "no tiny guest in %s: run scripts/build-guest\n", guest.c_str());
        return 2;
    }
    std::string scratch_template = "/tmp/qkb-XXXXXX";
    const fs::path scratch = ::mkdtemp(scratch_template.data());
    const auto state = scratch / "state";
    const auto yaml = scratch / "bench.yaml";
    std::ofstream(yaml) << "name: bench\nmachine: pc\naccel: auto\nmemory: 256M\n"
                        << "kernel: " << (guest / "vmlinuz").string() << "\n"
                        << "initrd: " << (guest / "initramfs.img").string() << "\n"
                        << "append: \"console=ttyS0 panic=-1\"\ncommand_channel: true\n"
                        << "disks:\n  - {name: system, file: "
                        << (scratch / "system.qcow2").string() << ", size: 256M}\n";

    launcher::launch_options launch;
    launch.state_root = state;
    auto def = launcher::load_definition(yaml);
    launcher::start_in_background(def, launch, {});
    launcher::state_directory dir(state, "bench");
    launcher::wait_for_console_line(dir, "QMPKIT-GUEST-READY", std::chrono::minutes(2));

    snapshot::manager_options options;
    options.state_root = state;
    snapshot::snapshot_manager manager("bench", options);
    std::vector<row> rows;

    auto measure = [&](const std::string& kind,
                       const std::function<snapshot::create_request(int)>& request,
                       snapshot::revert_request revert) {
        row r;
        r.kind = kind;
        for (int i = 0; i < iterations; ++i) {
            auto req = request(i);
            r.create.push_back(ms_of([&] { manager.create(req); }));
            r.revert.push_back(ms_of([&] { manager.revert(req.name, revert); }));
            r.remove.push_back(ms_of([&] { manager.remove(req.name, {}); }));
        }
        rows.push_back(std::move(r));
    };

    snapshot::revert_request running;
    running.running = true;
    measure("internal (RAM + disks)", [](int i) { return named("int" + std::to_string(i)); }, {});
    measure(
        "external disk-only",
        [](int i) {
            auto r = named("disk" + std::to_string(i));
            r.disk_only = true;
            return r;
        },
        running);
    measure(
        "external with memory",
        [&](int i) {
            auto r = named("mem" + std::to_string(i));
            r.memory_file = scratch / ("mem" + std::to_string(i) + ".state");
            return r;
        },
        running);

    launcher::destroy_vm(dir);
    measure("internal, VM shut off (qemu-img)",
            [](int i) { return named("off" + std::to_string(i)); }, {});

    std::printf(
        "Snapshot operations on the tiny guest (256 MiB RAM, %d iterations, medians in ms)\n\n",
        iterations);
    std::printf("%-34s %10s %10s %10s\n", "kind", "create", "revert", "delete");
    for (const auto& r : rows)
        std::printf("%-34s %10.1f %10.1f %10.1f\n", r.kind.c_str(), median(r.create),
                    median(r.revert), median(r.remove));
    fs::remove_all(scratch);
    return 0;
}
