// Reverts as a user drives them after the VM has moved on: an internal snapshot that a reset
// point, a reset or an external snapshot has put under an overlay; `revert --paused` checked
// byte for byte against the guest's RAM at the snapshot (pmemsave); overlays an external revert
// abandons; and deleting an external snapshot of a shut-off VM.
//
// One VM (file-backed RAM, so reset points work) serves every case; each case takes snapshots
// of its own names.

#include "cli_suite.hpp"

#include <boost/json.hpp>
#include <gtest/gtest.h>

#include <csignal>
#include <cstdlib>
#include <fstream>
#include <thread>

namespace {

using namespace qmpkit;
using namespace std::chrono_literals;
namespace fs = std::filesystem;
namespace json = boost::json;

class revert_test : public test::cli_suite {
protected:
    static void SetUpTestSuite() {
        if (!open_suite())
            return;
        auto def =
            test::write_tiny_guest("rv", scratch(), {{"system"}}, "reset: {strategy: template}\n");
        auto r = qmpkit({"start", def.string(), "--wait-ready"});
        ASSERT_EQ(r.code, 0) << r.out << r.err;
    }

    static void TearDownTestSuite() { close_suite(); }

    static std::string guest(const std::string& command) { return run().guest("rv", command); }

    // qemu's own run state, as query-status names it, and whether the guest runs.
    static std::pair<std::string, bool> run_state() {
        auto r = qmpkit({"qmp", "rv", "query-status", "--compact"});
        EXPECT_EQ(r.code, 0) << r.err;
        auto o = json::parse(r.out).as_object();
        return {std::string(o.at("status").as_string()), o.at("running").as_bool()};
    }

    // The file the VM's system disk writes to now, as qemu reports it.
    static fs::path active_file() {
        auto r = qmpkit({"--json", "disks", "rv"});
        EXPECT_EQ(r.code, 0) << r.err;
        const auto disks = json::parse(r.out);
        for (const auto& d : disks.as_array())
            if (d.at("disk").as_string() == "system")
                return std::string(d.at("file").as_string());
        return {};
    }

    static std::string snapshot_names() {
        auto r = qmpkit({"--json", "snapshot", "list", "rv"});
        EXPECT_EQ(r.code, 0) << r.err;
        return r.out;
    }

    static std::vector<std::string> overlays() {
        std::vector<std::string> names;
        std::error_code ec;
        for (const auto& e : fs::directory_iterator(scratch() / "state/rv/overlays", ec))
            names.push_back(e.path().filename().string());
        std::sort(names.begin(), names.end());
        return names;
    }

    // A refusal that changed nothing: exit 1 with `why` in the message, the guest still running
    // (never paused, never restore-vm), the same file and the same snapshots.
    static void expect_refused(const std::vector<std::string>& args, const std::string& why,
                               const std::string& file_says) {
        const auto snapshots = snapshot_names();
        const auto file = active_file();
        auto r = qmpkit(args);
        EXPECT_EQ(r.code, 1) << r.out << r.err;
        EXPECT_NE(r.err.find(why), std::string::npos) << r.err;
        EXPECT_NE(r.err.find("Nothing was changed"), std::string::npos) << r.err;
        EXPECT_EQ(run_state(), std::make_pair(std::string("running"), true));
        EXPECT_EQ(guest("cat /mnt/f"), file_says);
        EXPECT_EQ(active_file(), file);
        EXPECT_EQ(snapshot_names(), snapshots);
    }

    static bool same_bytes(const fs::path& a, const fs::path& b) {
        std::ifstream x(a, std::ios::binary), y(b, std::ios::binary);
        std::vector<char> p(1 << 20), q(1 << 20);
        for (;;) {
            x.read(p.data(), static_cast<std::streamsize>(p.size()));
            y.read(q.data(), static_cast<std::streamsize>(q.size()));
            if (x.gcount() != y.gcount() ||
                !std::equal(p.begin(), p.begin() + x.gcount(), q.begin()))
                return false;
            if (x.gcount() == 0)
                return true;
        }
    }

    static void pmemsave(const fs::path& to) {
        auto r =
            qmpkit({"qmp", "rv", "pmemsave", "val=0", "size=268435456", "filename=" + to.string()});
        ASSERT_EQ(r.code, 0) << r.err;
    }
};

// The first defect: snapshot, reset point, revert. The revert is refused with what to do
// (it would change what the reset point restores), also after a template reset; once the point
// is gone the revert brings the VM back onto the image that holds the snapshot.
TEST_F(revert_test, internal_snapshot_under_a_reset_point) {
    guest("echo one > /mnt/f; sync");
    const auto at_snapshot = run().counter("rv");
    const auto boot = run().boot_id("rv");
    const auto base = active_file();
    ASSERT_EQ(qmpkit({"snapshot", "create", "rv", "s1"}).code, 0);
    guest("echo two > /mnt/f; sync");
    auto r = qmpkit({"reset-point", "create", "rv", "rp1"});
    ASSERT_EQ(r.code, 0) << r.err;
    ASSERT_NE(active_file(), base) << "a reset point puts the VM on an overlay";

    expect_refused({"snapshot", "revert", "rv", "s1"}, "reset point 'rp1'", "two\n");
    // After a reset (a new qemu on a fresh overlay over the point's frozen image): the same.
    guest("echo three > /mnt/f; sync");
    r = qmpkit({"reset", "rv"});
    ASSERT_EQ(r.code, 0) << r.err;
    expect_refused({"snapshot-revert", "rv", "s1"}, "reset point 'rp1'", "two\n");

    // The reset put the VM on the point's RAM: the point goes once the VM is stopped.
    ASSERT_EQ(qmpkit({"destroy", "rv"}).code, 0);
    r = qmpkit({"reset-point", "delete", "rv", "rp1"});
    ASSERT_EQ(r.code, 0) << r.err;
    r = qmpkit({"snapshot", "revert", "rv", "s1"});
    ASSERT_EQ(r.code, 0) << r.err;
    EXPECT_EQ(run_state(), std::make_pair(std::string("running"), true));
    EXPECT_EQ(active_file(), base) << "back on the image that holds the snapshot";
    EXPECT_EQ(guest("cat /mnt/f"), "one\n");
    EXPECT_EQ(run().boot_id("rv"), boot) << "the guest's RAM is the snapshot's";
    EXPECT_GE(run().counter("rv"), at_snapshot);
    EXPECT_EQ(overlays(), std::vector<std::string>{}) << "the overlays the VM left are removed";
}

// The same defect after an external snapshot froze the image: refused, naming the external
// snapshot; once it is deleted (merged into the image) the revert works in place.
TEST_F(revert_test, internal_snapshot_under_an_external_one) {
    guest("echo four > /mnt/f; sync");
    ASSERT_EQ(qmpkit({"snapshot", "create", "rv", "s2"}).code, 0);
    auto r = qmpkit({"snapshot", "create", "rv", "e1", "--disk-only"});
    ASSERT_EQ(r.code, 0) << r.err;
    guest("echo five > /mnt/f; sync");
    expect_refused({"snapshot", "revert", "rv", "s2", "--paused"}, "external snapshot 'e1'",
                   "five\n");
    r = qmpkit({"snapshot", "delete", "rv", "e1"});
    ASSERT_EQ(r.code, 0) << r.err;
    r = qmpkit({"snapshot", "revert", "rv", "s2"});
    ASSERT_EQ(r.code, 0) << r.err;
    EXPECT_EQ(guest("cat /mnt/f"), "four\n");
}

// `revert --paused` leaves the guest exactly at the snapshot: its RAM, read by qemu, equals the
// RAM it had when the snapshot was taken, byte for byte.
TEST_F(revert_test, paused_revert_leaves_ram_exactly_at_the_snapshot) {
    guest("echo seven > /mnt/f; sync");
    ASSERT_EQ(qmpkit({"qmp", "rv", "stop"}).code, 0);
    pmemsave(scratch() / "at-snapshot.ram");
    auto r = qmpkit({"snapshot", "create", "rv", "p1"});
    ASSERT_EQ(r.code, 0) << r.err;
    ASSERT_EQ(qmpkit({"qmp", "rv", "cont"}).code, 0);
    guest("echo six > /mnt/f; sync");
    std::this_thread::sleep_for(500ms);

    r = qmpkit({"snapshot", "revert", "rv", "p1", "--paused"});
    ASSERT_EQ(r.code, 0) << r.err;
    EXPECT_EQ(run_state(), std::make_pair(std::string("paused"), false));
    pmemsave(scratch() / "after-revert.ram");
    EXPECT_TRUE(same_bytes(scratch() / "at-snapshot.ram", scratch() / "after-revert.ram"))
        << "the guest ran between the load and the pause";
    fs::remove(scratch() / "at-snapshot.ram");
    fs::remove(scratch() / "after-revert.ram");

    // The same from a running snapshot: the guest stays paused after the revert.
    r = qmpkit({"snapshot", "create", "rv", "p2"});
    ASSERT_EQ(r.code, 0) << r.err;
    r = qmpkit({"snapshot", "revert", "rv", "p2", "--paused"});
    ASSERT_EQ(r.code, 0) << r.err;
    EXPECT_EQ(run_state(), std::make_pair(std::string("paused"), false));
    ASSERT_EQ(qmpkit({"qmp", "rv", "cont"}).code, 0);
    EXPECT_EQ(guest("cat /mnt/f"), "seven\n") << "p1 was taken before 'six' was written";
}

// Reverting again and again to an external snapshot whose overlay another snapshot froze gives
// the VM a fresh overlay each time; the one it leaves is removed, not piled up.
TEST_F(revert_test, external_reverts_leave_no_abandoned_overlay) {
    auto r = qmpkit({"snapshot", "create", "rv", "ea", "--disk-only"});
    ASSERT_EQ(r.code, 0) << r.err;
    r = qmpkit({"snapshot", "create", "rv", "eb", "--disk-only"});
    ASSERT_EQ(r.code, 0) << r.err;
    for (int i = 0; i < 3; ++i) {
        r = qmpkit({"snapshot", "revert", "rv", "ea", "--running"});
        ASSERT_EQ(r.code, 0) << r.err;
        const auto files = overlays();
        ASSERT_EQ(files.size(), 1u) << "one overlay for the VM to run on";
        EXPECT_EQ(active_file().filename().string(), files.front());
    }
}

// Deleting an external snapshot of a shut-off VM merges its overlay with qemu-img commit, as a
// running VM's delete does with block-commit: the data written after the snapshot stays, and the
// VM starts on the merged image.
TEST_F(revert_test, external_snapshot_of_a_shut_off_vm_is_merged_offline) {
    auto def = test::write_tiny_guest("off", scratch(), {{"system"}});
    auto r = qmpkit({"start", def.string(), "--wait-ready"});
    ASSERT_EQ(r.code, 0) << r.err;
    run().guest("off", "echo before > /mnt/f; sync");
    r = qmpkit({"snapshot", "create", "off", "x1", "--disk-only"});
    ASSERT_EQ(r.code, 0) << r.err;
    run().guest("off", "echo after > /mnt/f; sync");
    ASSERT_EQ(qmpkit({"shutdown", "off", "--timeout", "60"}).code, 0);

    r = qmpkit({"snapshot", "delete", "off", "x1"});
    ASSERT_EQ(r.code, 0) << r.err;
    EXPECT_EQ(qmpkit({"snapshot", "list", "off"}).out.find("x1"), std::string::npos);
    EXPECT_FALSE(fs::exists(scratch() / "off-system.x1.qcow2"));
    r = qmpkit({"start", def.string(), "--wait-ready"});
    ASSERT_EQ(r.code, 0) << r.err;
    EXPECT_EQ(run().guest("off", "cat /mnt/f"), "after\n");
    auto disks = json::parse(qmpkit({"--json", "disks", "off"}).out).as_array();
    ASSERT_FALSE(disks.empty());
    EXPECT_TRUE(disks.front().at("backing_chain").as_array().empty())
        << "the VM runs on the merged image, with no overlay";
}

// A memory save raises qemu's migration bandwidth for its own run. qmpkit killed in the middle
// of it leaves the raised value in qemu: the next command on the VM puts the user's back.
TEST_F(revert_test, bandwidth_left_by_a_killed_memory_save_is_put_back) {
    ASSERT_EQ(qmpkit({"qmp", "rv", "migrate-set-parameters", "max-bandwidth=12345678"}).code, 0);
    ::setenv("QMPKIT_FAULT_AT", "snapshot.memory.migration-running", 1);
    auto r =
        qmpkit({"snapshot", "create", "rv", "m1", "--memspec", (scratch() / "m1.state").string()});
    ::unsetenv("QMPKIT_FAULT_AT");
    ASSERT_EQ(r.code, 128 + SIGKILL) << r.out << r.err;
    r = qmpkit({"snapshot", "check", "rv", "--repair"});
    EXPECT_EQ(r.code, 0) << r.out << r.err;
    r = qmpkit({"qmp", "rv", "query-migrate-parameters", "--compact"});
    ASSERT_EQ(r.code, 0) << r.err;
    EXPECT_EQ(json::parse(r.out).at("max-bandwidth").as_int64(), 12345678) << r.out;
    EXPECT_FALSE(fs::exists(scratch() / "state/rv/migration-bandwidth.json"));
    // The guest runs again (the save had paused it).
    EXPECT_EQ(run_state(), std::make_pair(std::string("running"), true));
}

} // namespace
