#pragma once

// What every CLI suite that shares booted guests repeats: one scratch directory and one qmpkit
// runner for the whole suite, every VM it started destroyed at its end, and a clear skip where
// qemu is not installed.
//
//     class my_test : public test::cli_suite {
//     protected:
//         static void SetUpTestSuite() {
//             if (!open_suite())
//                 return;
//             auto r = qmpkit({"start", test::write_tiny_guest("vm", scratch()).string()});
//             ASSERT_EQ(r.code, 0) << r.err;
//         }
//         static void TearDownTestSuite() { close_suite(); }
//     };

#include "bare_qemu.hpp"
#include "cli_runner.hpp"
#include "tiny_guest.hpp"

#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

namespace qmpkit::test {

class cli_suite : public ::testing::Test {
protected:
    // Makes the scratch directory and the runner; false (and nothing made) without qemu.
    static bool open_suite();
    // Destroys every VM under the suite's state root, then removes the scratch directory.
    static void close_suite();
    // Skips the test where qemu is not installed.
    void SetUp() override;

    static cli_result qmpkit(std::vector<std::string> args);
    static const cli_runner& run() { return *run_; }
    static const std::filesystem::path& scratch() { return scratch_->path(); }

private:
    static inline std::unique_ptr<scratch_dir> scratch_;
    static inline std::unique_ptr<cli_runner> run_;
};

} // namespace qmpkit::test
