// Reset latency of the tiny guest per strategy and RAM size: median and p99 over N resets,
// measured from the call to qemu reporting `running` (the reset call's return) and to the guest
// answering a command on its channel again; and each strategy's ratio to loadvm. One run, one
// table: these machines are noisy.
//
//   reset_latency [--resets N] [--guest DIR]

#include <qmpkit/launcher/definition_loader.hpp>
#include <qmpkit/launcher/guest_shell.hpp>
#include <qmpkit/launcher/launch.hpp>
#include <qmpkit/launcher/supervisor.hpp>
#include <qmpkit/launcher/vm_control.hpp>
#include <qmpkit/snapshot/vm_reset.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <vector>

namespace {

using namespace qmpkit;
namespace fs = std::filesystem;
using clock_type = std::chrono::steady_clock;

double percentile(std::vector<double> v, int p) {
    std::sort(v.begin(), v.end());
    return v.empty() ? 0 : v[std::min(v.size() - 1, v.size() * static_cast<std::size_t>(p) / 100)];
}

struct measurement {
    std::vector<double> running_ms, answering_ms;
};

measurement measure(const fs::path& scratch, const fs::path& guest, const std::string& strategy,
                    const std::string& memory, int resets) {
    const auto name = strategy + memory;
    const auto state = scratch / "state";
    const auto yaml = scratch / (name + ".yaml");
    std::ofstream(yaml) << "name: " << name << "\nmachine: pc\naccel: auto\nmemory: " << memory
                        << "\n"
                        << "kernel: " << (guest / "vmlinuz").string() << "\n"
                        << "initrd: " << (guest / "initramfs.img").string() << "\n"
                        << "append: \"console=ttyS0 panic=-1\"\ncommand_channel: true\n"
                        << "reset: {strategy: " << strategy << "}\n"
                        << "disks:\n  - {name: system, file: "
                        << (scratch / (name + ".qcow2")).string() << ", size: 64M}\n";
    launcher::launch_options launch;
    launch.state_root = state;
    launcher::start_in_background(launcher::load_definition(yaml), launch, {});
    launcher::state_directory dir(state, name);
    launcher::wait_for_console_line(dir, "QMPKIT-GUEST-READY", std::chrono::minutes(2));
    {
        launcher::guest_shell shell(dir.shell_socket());
        shell.run("echo seed > /mnt/f; sync", std::chrono::seconds(30));
    }

    snapshot::manager_options options;
    options.state_root = state;
    if (strategy == "loadvm") {
        snapshot::create_request r;
        r.name = "known";
        snapshot::snapshot_manager(name, options).create(r);
    } else {
        snapshot::vm_reset(name, options).create_point("known");
    }
    snapshot::vm_reset reset(name, options);
    measurement m;
    for (int i = 0; i < resets; ++i) {
        const auto t0 = clock_type::now();
        reset.reset("known");
        const auto running = clock_type::now();
        launcher::guest_shell shell(dir.shell_socket());
        shell.run("true", std::chrono::seconds(30));
        const auto answering = clock_type::now();
        m.running_ms.push_back(std::chrono::duration<double, std::milli>(running - t0).count());
        m.answering_ms.push_back(std::chrono::duration<double, std::milli>(answering - t0).count());
    }
    launcher::destroy_vm(dir);
    return m;
}

} // namespace

int main(int argc, char** argv) {
    int resets = 50;
    fs::path guest = QMPKIT_BENCH_SOURCE_DIR "/build/guest";
    if (const char* g = std::getenv("QMPKIT_GUEST_DIR"))
        guest = g;
    for (int i = 1; i + 1 < argc; ++i) {
        if (std::string_view(argv[i]) == "--resets")
            resets = std::stoi(argv[i + 1]);
        if (std::string_view(argv[i]) == "--guest")
            guest = argv[i + 1];
    }
    std::string scratch_template = "/tmp/qkr-XXXXXX";
    const fs::path scratch = ::mkdtemp(scratch_template.data());

    std::map<std::pair<std::string, std::string>, measurement> results;
    for (const std::string memory : {"128M", "1G"})
        for (const std::string strategy : {"loadvm", "template"})
            results[{strategy, memory}] = measure(scratch, guest, strategy, memory, resets);

    std::printf(
        "Reset latency, tiny guest, %d resets each (ms; 'running' = the reset call returned with\n"
        "qemu running, 'answering' = the guest answered a command)\n\n",
        resets);
    std::printf("%-10s %-6s %10s %10s %12s %12s %10s\n", "strategy", "RAM", "running", "p99",
                "answering", "p99", "vs loadvm");
    for (const std::string memory : {"128M", "1G"}) {
        const auto base = percentile(results[{"loadvm", memory}].answering_ms, 50);
        for (const std::string strategy : {"loadvm", "template"}) {
            const auto& m = results[{strategy, memory}];
            const auto answering = percentile(m.answering_ms, 50);
            std::printf("%-10s %-6s %10.1f %10.1f %12.1f %12.1f %9.2fx\n", strategy.c_str(),
                        memory.c_str(), percentile(m.running_ms, 50), percentile(m.running_ms, 99),
                        answering, percentile(m.answering_ms, 99), base / answering);
        }
    }
    const auto t128 = percentile(results[{"template", "128M"}].answering_ms, 50);
    const auto t1g = percentile(results[{"template", "1G"}].answering_ms, 50);
    std::printf("\ntemplate at 1G / at 128M: %.2f (target: within 1.5)\n", t1g / t128);
    fs::remove_all(scratch);
    return 0;
}
