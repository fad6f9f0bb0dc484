// Reset latency of the tiny guest per strategy and RAM size: median and p99 over N resets,
// measured from the call to qemu reporting `running` (the reset call's return) and to the guest
// answering a command on its channel again; and each strategy's ratio to loadvm. Between two
// resets the guest runs a moment (untimed), as it would run a test; for standby that moment
// lasts until the next standby is ready. Then the time to start 8 clones from a reset point
// against booting 8 VMs, both until every guest answers. One run, one table: these machines are
// noisy.
//
//   reset_latency [--resets N] [--clones N] [--guest DIR]

#include "bench_args.hpp"

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
#include <sstream>
#include <string>
#include <thread>
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
    int fallbacks = 0; // resets that had to use another strategy
};

std::string tiny_yaml(const fs::path& scratch, const fs::path& guest, const std::string& name,
                      const std::string& memory, const std::string& strategy) {
    std::ostringstream y;
    y << "name: " << name << "\nmachine: pc\naccel: auto\nmemory: " << memory << "\n"
      << "kernel: " << (guest / "vmlinuz").string() << "\n"
      << "initrd: " << (guest / "initramfs.img").string() << "\n"
      << "append: \"console=ttyS0 panic=-1\"\ncommand_channel: true\n"
      << "reset: {strategy: " << strategy << "}\n"
      << "disks:\n  - {name: system, file: " << (scratch / (name + ".qcow2")).string()
      << ", size: 64M}\n";
    return y.str();
}

void wait_until_answering(const launcher::state_directory& dir) {
    for (int attempt = 0;; ++attempt) {
        try {
            launcher::guest_shell shell(dir.shell_socket());
            shell.run("true", std::chrono::seconds(60));
            return;
        } catch (const std::exception&) {
            if (attempt > 600)
                throw;
            std::this_thread::sleep_for(std::chrono::milliseconds(100));
        }
    }
}

// Seconds until `count` VMs answer: booted from scratch, or cloned from a reset point.
std::pair<double, double> clones_against_boots(const fs::path& scratch, const fs::path& guest,
                                               int count) {
    const auto state = scratch / "state";
    launcher::launch_options launch;
    launch.state_root = state;
    const auto t0 = clock_type::now();
    {
        std::vector<launcher::background_start> starting;
        for (int i = 0; i < count; ++i) {
            const auto name = "boot" + std::to_string(i);
            std::ofstream(scratch / (name + ".yaml"))
                << tiny_yaml(scratch, guest, name, "128M", "template");
            starting.push_back(launcher::begin_start_in_background(
                launcher::load_definition(scratch / (name + ".yaml")), launch, {}));
        }
        for (auto& s : starting)
            s.wait();
        for (int i = 0; i < count; ++i)
            launcher::wait_for_console_line(
                launcher::state_directory(state, "boot" + std::to_string(i)), "QMPKIT-GUEST-READY",
                std::chrono::minutes(5));
    }
    const double booted = std::chrono::duration<double>(clock_type::now() - t0).count();

    snapshot::manager_options options;
    options.state_root = state;
    snapshot::vm_reset("boot0", options).create_point("known");
    for (int i = 1; i < count; ++i)
        launcher::destroy_vm(launcher::state_directory(state, "boot" + std::to_string(i)));
    const auto t1 = clock_type::now();
    snapshot::clone_request request;
    request.count = count;
    const auto cloned = snapshot::vm_reset("boot0", options).clone(request);
    for (const auto& name : cloned.names)
        wait_until_answering(launcher::state_directory(state, name));
    const double clones = std::chrono::duration<double>(clock_type::now() - t1).count();
    for (const auto& name : cloned.names)
        launcher::destroy_vm(launcher::state_directory(state, name));
    launcher::destroy_vm(launcher::state_directory(state, "boot0"));
    return {booted, clones};
}

measurement measure(const fs::path& scratch, const fs::path& guest, const std::string& strategy,
                    const std::string& memory, int resets) {
    const auto name = strategy + memory;
    const auto state = scratch / "state";
    const auto yaml = scratch / (name + ".yaml");
    std::ofstream(yaml) << tiny_yaml(scratch, guest, name, memory, strategy);
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
    auto standby_ready = [&] {
        for (const auto& e : fs::directory_iterator(dir.path()))
            if (e.path().filename().string().rfind("standby.", 0) == 0 &&
                fs::exists(e.path() / "standby.json"))
                return true;
        return false;
    };
    for (int i = 0; i < resets; ++i) {
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
        for (int wait = 0; strategy == "standby" && wait < 400 && !standby_ready(); ++wait)
            std::this_thread::sleep_for(std::chrono::milliseconds(25));
        const auto t0 = clock_type::now();
        const auto result = reset.reset("known");
        const auto running = clock_type::now();
        if (result.strategy != strategy)
            ++m.fallbacks;
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
    int clones = 8;
    fs::path guest = QMPKIT_BENCH_SOURCE_DIR "/build/guest";
    if (const char* g = std::getenv("QMPKIT_GUEST_DIR"))
        guest = g;
    if (auto code =
            parse_bench_args(argc, argv, "reset_latency [--resets N] [--clones N] [--guest DIR]",
                             {{"--resets", [&](const char* v) { resets = std::stoi(v); }},
                              {"--clones", [&](const char* v) { clones = std::stoi(v); }},
                              {"--guest", [&](const char* v) { guest = v; }}}))
        return *code;
    std::string scratch_template = "/tmp/qkr-XXXXXX";
    const fs::path scratch = ::mkdtemp(scratch_template.data());

    std::map<std::pair<std::string, std::string>, measurement> results;
    for (const std::string memory : {"128M", "1G"})
        for (const std::string strategy : {"loadvm", "template", "standby"})
            results[{strategy, memory}] = measure(scratch, guest, strategy, memory, resets);

    std::printf(
        "Reset latency, tiny guest, %d resets each (ms; 'running' = the reset call returned with\n"
        "qemu running, 'answering' = the guest answered a command)\n\n",
        resets);
    std::printf("%-10s %-6s %10s %10s %10s %12s %12s %10s %9s\n", "strategy", "RAM", "running",
                "p99", "vs loadvm", "answering", "p99", "vs loadvm", "fallback");
    for (const std::string memory : {"128M", "1G"}) {
        const auto base = percentile(results[{"loadvm", memory}].answering_ms, 50);
        const auto base_running = percentile(results[{"loadvm", memory}].running_ms, 50);
        for (const std::string strategy : {"loadvm", "template", "standby"}) {
            const auto& m = results[{strategy, memory}];
            const auto answering = percentile(m.answering_ms, 50);
            const auto running = percentile(m.running_ms, 50);
            std::printf("%-10s %-6s %10.1f %10.1f %9.2fx %12.1f %12.1f %9.2fx %9d\n",
                        strategy.c_str(), memory.c_str(), running, percentile(m.running_ms, 99),
                        base_running / running, answering, percentile(m.answering_ms, 99),
                        base / answering, m.fallbacks);
        }
    }
    for (const std::string strategy : {"template", "standby"}) {
        const auto& small = results[{strategy, "128M"}];
        const auto& big = results[{strategy, "1G"}];
        std::printf("\n%s at 1G / at 128M: running %.2f, answering %.2f (target: within 1.5)",
                    strategy.c_str(),
                    percentile(big.running_ms, 50) / percentile(small.running_ms, 50),
                    percentile(big.answering_ms, 50) / percentile(small.answering_ms, 50));
    }
    std::printf("\n");
    if (clones > 0) {
        const auto [booted, cloned] = clones_against_boots(scratch, guest, clones);
        std::printf("\n%d VMs until every guest answers: booted %.2f s, cloned from a reset point "
                    "%.2f s (%.1fx faster)\n",
                    clones, booted, cloned, booted / cloned);
    }
    fs::remove_all(scratch);
    return 0;
}
