#pragma once

// What every subcommand shares: global options, the logger, and the action chosen by parsing.

#include <CLI/CLI.hpp>

#include <chrono>
#include <functional>
#include <memory>
#include <string>

namespace spdlog {
class logger;
}

namespace qmpkit::cli {

struct context {
    bool json = false;
    int verbosity = 0;        // -v: debug, -vv: trace (every QMP message)
    std::string state_dir;    // --state-dir; empty: the default root
    double lock_timeout = 60; // seconds to wait for another command on the same VM

    std::shared_ptr<spdlog::logger> logger; // on stderr, built after parsing
    std::function<int()> action;            // set by the chosen subcommand

    std::chrono::milliseconds lock_wait() const;
};

// Seconds as the command line gives them (fractions allowed), as a timeout.
inline std::chrono::milliseconds milliseconds_of(double seconds) {
    return std::chrono::milliseconds(static_cast<long>(seconds * 1000));
}

inline std::chrono::milliseconds context::lock_wait() const {
    return milliseconds_of(lock_timeout);
}

void register_qmp_commands(CLI::App& app, context& ctx);
void register_lifecycle_commands(CLI::App& app, context& ctx);
void register_device_commands(CLI::App& app, context& ctx);
void register_guest_commands(CLI::App& app, context& ctx);
void register_disk_commands(CLI::App& app, context& ctx);
void register_snapshot_commands(CLI::App& app, context& ctx);
void register_reset_commands(CLI::App& app, context& ctx);
void register_pool_commands(CLI::App& app, context& ctx);
void register_virsh_commands(CLI::App& app, context& ctx);
void register_help_command(CLI::App& app, context& ctx);

} // namespace qmpkit::cli
