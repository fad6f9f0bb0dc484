// `qmpkit reset` with a real qemu and the tiny guest: the template strategy (reset points) and
// loadvm, the seeds-style check after each reset, many resets without leaks, and a damaged
// reset point failing cleanly.

#include "bare_qemu.hpp"
#include "cli_runner.hpp"
#include "tiny_guest.hpp"

#include <qmpkit/launcher/runtime_info.hpp>
#include <qmpkit/launcher/state_directory.hpp>

#include <boost/json.hpp>
#include <gtest/gtest.h>

#include <fstream>
#include <thread>

namespace {

using namespace qmpkit;
using namespace std::chrono_literals;
namespace json = boost::json;

// Live processes whose command line mentions `needle` (and whose program name holds `program`).
int processes_mentioning(const std::string& needle, const std::string& program = "") {
    int count = 0;
    for (const auto& entry : std::filesystem::directory_iterator("/proc")) {
        const auto name = entry.path().filename().string();
        if (name.find_first_not_of("0123456789") != std::string::npos)
            continue;
        std::ifstream in(entry.path() / "cmdline");
        std::string args((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
        std::string stat_text;
        std::ifstream stat(entry.path() / "stat");
        std::getline(stat, stat_text);
        const auto close = stat_text.rfind(')');
        const bool zombie = close != std::string::npos && close + 2 < stat_text.size() &&
                            stat_text[close + 2] == 'Z';
        const std::string argv0 = args.substr(0, args.find('\0'));
        if (!zombie && args.find(needle) != std::string::npos &&
            argv0.find(program) != std::string::npos)
            ++count;
    }
    return count;
}

class reset_test : public ::testing::Test {
protected:
    void SetUp() override {
        if (!test::qemu_available())
            GTEST_SKIP() << "qemu-system-x86_64 is not installed (scripts/setup installs it)";
    }

    test::scratch_dir scratch_;
    test::cli_runner run_{scratch_.path() / "state"};

    void start(const std::string& vm, const std::string& strategy) {
        auto def = test::write_tiny_guest(vm, scratch_.path(), {{"system"}},
                                          "reset: {strategy: " + strategy + "}\n");
        auto r = run_({"start", def.string(), "--wait-ready"});
        ASSERT_EQ(r.code, 0) << r.out << r.err;
    }
};

TEST_F(reset_test, template_reset_brings_back_disk_and_ram_and_keeps_the_qmp_socket_path) {
    start("tpl", "template");
    run_.guest("tpl", "echo seed > /mnt/f; sync");
    const auto boot = run_.boot_id("tpl");
    const auto at_point = run_.counter("tpl");
    auto r = run_({"reset-point", "create", "tpl", "clean"});
    ASSERT_EQ(r.code, 0) << r.err;

    for (int round = 0; round < 3; ++round) {
        run_.guest("tpl", "echo dirty > /mnt/f; echo more > /mnt/g; sync");
        std::this_thread::sleep_for(500ms);
        const auto before = run_.counter("tpl");
        r = run_({"--json", "reset", "tpl"});
        ASSERT_EQ(r.code, 0) << r.err;
        auto result = json::parse(r.out).as_object();
        EXPECT_EQ(result.at("strategy").as_string(), "template");
        EXPECT_EQ(run_.guest("tpl", "cat /mnt/f"), "seed\n");
        EXPECT_EQ(run_({"shell", "tpl", "--", "test -e /mnt/g"}).code, 1)
            << "a file written after the point survived";
        const auto after = run_.counter("tpl");
        EXPECT_LT(after, before);
        EXPECT_GE(after, at_point);
        EXPECT_EQ(run_.boot_id("tpl"), boot) << "a reset is not a reboot";
        // The socket path people know keeps working.
        auto status = run_({"qmp", "tpl", "query-status", "--compact"});
        EXPECT_NE(status.out.find("\"running\":true"), std::string::npos)
            << status.out << status.err;
    }
    auto points = run_({"--json", "reset-point", "list", "tpl"});
    EXPECT_EQ(json::parse(points.out).as_array().size(), 1u);
    run_({"destroy", "tpl"});
}

TEST_F(reset_test, many_resets_leak_no_processes_or_files) {
    start("many", "template");
    ASSERT_EQ(run_({"reset-point", "create", "many", "p"}).code, 0);
    const auto state = scratch_.path() / "state" / "many";
    auto count_files = [&] {
        std::size_t n = 0;
        for (auto it = std::filesystem::recursive_directory_iterator(state);
             it != std::filesystem::recursive_directory_iterator(); ++it)
            ++n;
        return n;
    };
    ASSERT_EQ(run_({"reset", "many"}).code, 0);
    const auto files_before = count_files();
    const int resets = 20;
    for (int i = 0; i < resets; ++i) {
        auto r = run_({"reset", "many"});
        ASSERT_EQ(r.code, 0) << "reset " << i << ": " << r.err;
    }
    EXPECT_EQ(run_.guest("many", "echo alive"), "alive\n");
    // One qemu and one supervisor (a qmpkit process with this state root), whatever the number
    // of resets.
    EXPECT_EQ(processes_mentioning(state.string(), "qemu-system"), 1);
    EXPECT_EQ(processes_mentioning((scratch_.path() / "state").string(), "cli/qmpkit"), 1);
    EXPECT_EQ(count_files(), files_before);
    run_({"destroy", "many"});
    std::this_thread::sleep_for(500ms);
    EXPECT_EQ(processes_mentioning((scratch_.path() / "state").string()), 0);
    EXPECT_FALSE(std::filesystem::exists(
        launcher::state_directory(scratch_.path() / "state", "many").ram_file()))
        << "the RAM file of an ended VM must go";
}

TEST_F(reset_test, a_reset_point_missing_its_ram_fails_cleanly) {
    start("dmg", "template");
    ASSERT_EQ(run_({"reset-point", "create", "dmg", "p"}).code, 0);
    std::filesystem::remove(scratch_.path() / "state" / "dmg" / "reset" / "p" / "ram");
    auto r = run_({"reset", "dmg"});
    EXPECT_EQ(r.code, 1);
    EXPECT_NE(r.err.find("reset point 'p' is damaged"), std::string::npos) << r.err;
    // Refused before anything was touched: the VM runs on.
    EXPECT_EQ(run_.guest("dmg", "echo still here"), "still here\n");
    run_({"destroy", "dmg"});
}

TEST_F(reset_test, loadvm_strategy_resets_to_the_current_snapshot) {
    start("lvm", "loadvm");
    run_.guest("lvm", "echo seed > /mnt/f; sync");
    ASSERT_EQ(run_({"snapshot", "create", "lvm", "known"}).code, 0);
    auto refused = run_({"reset-point", "create", "lvm", "p"});
    EXPECT_EQ(refused.code, 1);
    EXPECT_NE(refused.err.find("not file-backed"), std::string::npos) << refused.err;

    run_.guest("lvm", "echo dirty > /mnt/f; sync");
    auto r = run_({"--json", "reset", "lvm"});
    ASSERT_EQ(r.code, 0) << r.err;
    EXPECT_EQ(json::parse(r.out).at("strategy").as_string(), "loadvm");
    EXPECT_EQ(run_.guest("lvm", "cat /mnt/f"), "seed\n");
    run_({"destroy", "lvm"});
}

} // namespace
