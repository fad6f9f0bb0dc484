// The GoogleTest integration (qmpkit::testing) as a user's suite meets it: examples/gtest_pool
// run against the tiny guest, once passing, once with a test failing on purpose, whose VM must
// then be kept with a snapshot qmpkit can revert to and the logs beside it.

#include "cli_suite.hpp"

#include <qmpkit/launcher/state_directory.hpp>

#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>
#include <sstream>

namespace {

using namespace qmpkit;
namespace fs = std::filesystem;

class pool_fixture_test : public test::cli_suite {
protected:
    static void SetUpTestSuite() { open_suite(); }
    static void TearDownTestSuite() { close_suite(); }

    // The example suite with `env` (NAME=value words); its exit code, output in `out`.
    static int run_example(const std::string& env, std::string& out) {
        const auto definition = test::write_tiny_guest("fx", scratch(), {{"system"}});
        const auto log = scratch() / "example.log";
        const auto command = "QMPKIT_STATE_DIR='" + run().state_root().string() + "' " + env +
                             " '" + std::string(QMPKIT_GTEST_POOL_EXAMPLE) + "' '" +
                             definition.string() + "' > '" + log.string() + "' 2>&1";
        const int status = std::system(command.c_str());
        std::ifstream in(log);
        std::stringstream text;
        text << in.rdbuf();
        out = text.str();
        return WIFEXITED(status) ? WEXITSTATUS(status) : 128;
    }
    static std::string read(const fs::path& file) {
        std::ifstream in(file);
        std::stringstream text;
        text << in.rdbuf();
        return text.str();
    }
};

TEST_F(pool_fixture_test, a_passing_suite_gets_a_clean_vm_per_test_and_leaves_nothing) {
    std::string out;
    ASSERT_EQ(run_example("", out), 0) << out;
    EXPECT_NE(out.find("[  PASSED  ] 3 tests"), std::string::npos) << out;
    EXPECT_TRUE(launcher::state_directory::list(run().state_root()).empty() ||
                qmpkit({"list"}).out.find("running") == std::string::npos)
        << qmpkit({"list"}).out;
    EXPECT_FALSE(fs::exists(run().state_root() / ".pools" / "fx-tests"));
}

TEST_F(pool_fixture_test, a_failed_test_keeps_its_vm_a_snapshot_to_revert_to_and_the_logs) {
    std::string out;
    const auto artifacts = scratch() / "artifacts";
    EXPECT_EQ(
        run_example("QMPKIT_EXAMPLE_FAIL=1 QMPKIT_ARTIFACTS='" + artifacts.string() + "'", out), 1)
        << out;
    const auto evidence = artifacts / "guest.fails_on_purpose_when_asked";
    ASSERT_TRUE(fs::exists(evidence / "README.txt")) << out;
    EXPECT_TRUE(fs::exists(evidence / "serial.log"));
    const auto readme = read(evidence / "README.txt");
    // The kept VM is named in the README's revert command.
    const auto at = readme.find("on VM ");
    ASSERT_NE(at, std::string::npos) << readme;
    const auto vm = readme.substr(at + 6, readme.find(',', at) - at - 6);
    EXPECT_NE(readme.find("qmpkit snapshot revert " + vm + " failed"), std::string::npos) << readme;
    // Still running as it failed; the snapshot brings that moment back after a change.
    EXPECT_EQ(run().guest(vm, "cat /run/evidence"), "evidence\n");
    run().guest(vm, "rm /run/evidence");
    auto r = qmpkit({"snapshot", "revert", vm, "failed"});
    ASSERT_EQ(r.code, 0) << r.err;
    EXPECT_EQ(run().guest(vm, "cat /run/evidence"), "evidence\n");
    EXPECT_EQ(qmpkit({"destroy", vm}).code, 0);
    EXPECT_EQ(qmpkit({"remove", vm}).code, 0);
}

} // namespace
