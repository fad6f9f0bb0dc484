#pragma once

// What every subcommand shares: global options, the logger, and the action chosen by parsing.

#include <CLI/CLI.hpp>

#include <functional>
#include <memory>
#include <string>

namespace spdlog {
class logger;
}

namespace qmpkit::cli {

struct context {
    bool json = false;
    int verbosity = 0; // -v: debug, -vv: trace (every QMP message)
    std::string state_dir;

    std::shared_ptr<spdlog::logger> logger; // on stderr, built after parsing
    std::function<int()> action;            // set by the chosen subcommand
};

void register_qmp_commands(CLI::App& app, context& ctx);

} // namespace qmpkit::cli
