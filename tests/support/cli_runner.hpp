#pragma once

// Drives the qmpkit tool the way a person does, for end-to-end tests.

#include <chrono>
#include <filesystem>
#include <string>
#include <vector>

namespace qmpkit::test {

struct cli_result {
    int code = 0; // exit code, or 128 + signal
    std::string out, err;
};

class cli_runner {
public:
    explicit cli_runner(std::filesystem::path state_root);

    cli_result operator()(std::vector<std::string> args,
                          std::chrono::milliseconds timeout = std::chrono::minutes(3)) const;

    // `qmpkit shell VM -- command`; a non-zero exit code is a test failure (use operator() to
    // expect one). Returns the output.
    std::string guest(const std::string& vm, const std::string& command) const;

    // The guest's RAM-only counter and boot id (the tiny guest keeps them in /run).
    long counter(const std::string& vm) const;
    std::string boot_id(const std::string& vm) const;

    // Whether the guest mounts `where` (the tiny guest mounts disks by itself) within the timeout.
    bool wait_for_mount(const std::string& vm, const std::string& where,
                        std::chrono::milliseconds timeout = std::chrono::seconds(15)) const;

    const std::filesystem::path& state_root() const { return state_root_; }

private:
    std::filesystem::path state_root_;
};

} // namespace qmpkit::test
