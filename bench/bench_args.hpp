#pragma once

// The benchmarks' command lines: "--name VALUE" options only. --help (or -h) prints the usage and
// exits 0; an unknown option, or one without its value, prints it and exits 2 — a mistyped option
// never starts a run of minutes that boots qemus.

#include <cstdio>
#include <functional>
#include <initializer_list>
#include <optional>
#include <string_view>

struct bench_option {
    std::string_view name;
    std::function<void(const char* value)> set;
};

// nullopt: go on with the run; else the exit code for main to return.
inline std::optional<int> parse_bench_args(int argc, char** argv, const char* usage,
                                           std::initializer_list<bench_option> options) {
    for (int i = 1; i < argc; i += 2) {
        const std::string_view name = argv[i];
        const bench_option* known = nullptr;
        for (const auto& o : options)
            if (o.name == name)
                known = &o;
        if (!known || i + 1 == argc) {
            std::fprintf(stderr, "usage: %s\n", usage);
            return name == "--help" || name == "-h" ? 0 : 2;
        }
        known->set(argv[i + 1]);
    }
    return std::nullopt;
}
