// The snapshot walkthroughs people do with virsh and qemu-img, automated against a real qemu and
// the tiny guest: internal, offline, external disk-only and external with memory; the tree;
// revert with a changed configuration; delete; the raw-disk error.
//
// One VM (system + data disk) serves the cases that keep it running; reverts that restart qemu
// reuse it too. Offline and raw-disk cases use VMs of their own.

#include "cli_suite.hpp"

#include <qmpkit/launcher/qemu_img.hpp>
#include <qmpkit/launcher/state_directory.hpp>

#include <boost/json.hpp>
#include <gtest/gtest.h>

#include <thread>

namespace {

using namespace qmpkit;
using namespace std::chrono_literals;
namespace json = boost::json;

class snapshot_test : public test::cli_suite {
protected:
    static void SetUpTestSuite() {
        if (!open_suite())
            return;
        auto def = test::write_tiny_guest("snap", scratch(), {{"system"}, {"data", "32M"}});
        auto r = qmpkit({"start", def.string(), "--wait-ready"});
        ASSERT_EQ(r.code, 0) << r.out << r.err;
        ASSERT_TRUE(run().wait_for_mount("snap", "/data/data")) << "never mounted";
    }

    static void TearDownTestSuite() { close_suite(); }

    static std::string guest(const std::string& command) { return run().guest("snap", command); }

    static json::object snapshot_json(const std::string& vm, const std::string& name) {
        auto r = qmpkit({"--json", "snapshot", "info", vm, name});
        EXPECT_EQ(r.code, 0) << r.err;
        return json::parse(r.out).as_object();
    }

    static std::string parent_of(const std::string& vm, const std::string& name) {
        auto r = qmpkit({"snapshot", "parent", vm, name});
        return r.code == 0 ? r.out.substr(0, r.out.find('\n')) : std::string();
    }
};

// Walkthrough 1: write, snapshot, change, revert.
TEST_F(snapshot_test, internal_revert_brings_back_the_file_and_the_ram_counter) {
    guest("echo 123 > /mnt/abc; sync");
    const auto boot = run().boot_id("snap");
    const auto at_snapshot = run().counter("snap");
    auto r = qmpkit({"snapshot", "create", "snap", "first", "--description", "the file says 123"});
    ASSERT_EQ(r.code, 0) << r.err;

    guest("echo 456 >> /mnt/abc; sync");
    EXPECT_EQ(guest("cat /mnt/abc"), "123\n456\n");
    std::this_thread::sleep_for(1s);
    const auto before_revert = run().counter("snap");
    ASSERT_GT(before_revert, at_snapshot + 5);

    r = qmpkit({"snapshot", "revert", "snap", "first"});
    ASSERT_EQ(r.code, 0) << r.err;
    EXPECT_EQ(guest("cat /mnt/abc"), "123\n");
    const auto after_revert = run().counter("snap");
    EXPECT_LT(after_revert, before_revert)
        << "the RAM counter must come back to its snapshot value";
    EXPECT_GE(after_revert, at_snapshot);
    EXPECT_EQ(run().boot_id("snap"), boot) << "a memory snapshot is not a reboot";

    auto status = json::parse(qmpkit({"--json", "status", "snap"}).out).as_object();
    EXPECT_EQ(status.at("state").as_string(), "running");
    auto info = snapshot_json("snap", "first");
    EXPECT_EQ(info.at("location").as_string(), "internal");
    EXPECT_EQ(info.at("description").as_string(), "the file says 123");

    // Visible to qemu-img as well, in both images.
    auto images = launcher::qemu_img().info(scratch() / "snap-system.qcow2");
    EXPECT_TRUE(std::any_of(images.snapshots.begin(), images.snapshots.end(),
                            [](auto& s) { return s.name == "first"; }));

    auto taken = qmpkit({"snapshot", "create", "snap", "first"});
    EXPECT_EQ(taken.code, 1);
    EXPECT_NE(taken.err.find("already has a snapshot named 'first'"), std::string::npos)
        << taken.err;
}

// Walkthroughs 2 and 8: a tree, current moving on revert, deleting a middle snapshot.
TEST_F(snapshot_test, snapshots_form_a_tree_and_deleting_a_middle_one_reparents_its_children) {
    guest("echo a > /mnt/tree; sync");
    ASSERT_EQ(qmpkit({"snapshot", "create", "snap", "t-a"}).code, 0);
    guest("echo b > /mnt/tree; sync");
    ASSERT_EQ(qmpkit({"snapshot-create-as", "snap", "t-b"}).code, 0); // the virsh spelling
    guest("echo c > /mnt/tree; sync");
    ASSERT_EQ(qmpkit({"snapshot", "create", "snap", "t-c"}).code, 0);
    ASSERT_EQ(qmpkit({"snapshot", "revert", "snap", "t-a"}).code, 0);
    guest("echo d > /mnt/tree; sync");
    ASSERT_EQ(qmpkit({"snapshot", "create", "snap", "t-d"}).code, 0);

    EXPECT_EQ(parent_of("snap", "t-b"), "t-a");
    EXPECT_EQ(parent_of("snap", "t-c"), "t-b");
    EXPECT_EQ(parent_of("snap", "t-d"), "t-a");
    auto tree = qmpkit({"snapshot", "list", "snap", "--tree"}).out;
    EXPECT_NE(tree.find("t-a"), std::string::npos) << tree;
    EXPECT_LT(tree.find("t-b"), tree.find("t-c")) << tree;
    EXPECT_EQ(qmpkit({"snapshot-current", "snap"}).out, "t-d\n");

    ASSERT_EQ(qmpkit({"snapshot", "revert", "snap", "t-c"}).code, 0);
    EXPECT_EQ(qmpkit({"snapshot", "current", "snap"}).out, "t-c\n");
    auto leaves = qmpkit({"snapshot", "list", "snap", "--leaves"}).out;
    EXPECT_NE(leaves.find("t-c"), std::string::npos);
    EXPECT_EQ(leaves.find("t-b "), std::string::npos) << leaves;

    // Delete the middle one: t-c moves up to t-a, and every other snapshot keeps its data.
    auto del = qmpkit({"snapshot", "delete", "snap", "t-b"});
    ASSERT_EQ(del.code, 0) << del.err;
    EXPECT_EQ(parent_of("snap", "t-c"), "t-a");
    EXPECT_EQ(qmpkit({"snapshot", "info", "snap", "t-b"}).code, 1);
    ASSERT_EQ(qmpkit({"snapshot", "revert", "snap", "t-c"}).code, 0);
    EXPECT_EQ(guest("cat /mnt/tree"), "c\n");
    ASSERT_EQ(qmpkit({"snapshot", "revert", "snap", "t-a"}).code, 0);
    EXPECT_EQ(guest("cat /mnt/tree"), "a\n");
    ASSERT_EQ(qmpkit({"snapshot", "revert", "snap", "t-d"}).code, 0);
    EXPECT_EQ(guest("cat /mnt/tree"), "d\n");
    auto images = launcher::qemu_img().info(scratch() / "snap-system.qcow2");
    EXPECT_TRUE(std::none_of(images.snapshots.begin(), images.snapshots.end(),
                             [](auto& s) { return s.name == "t-b"; }));

    EXPECT_EQ(qmpkit({"snapshot", "check", "snap"}).code, 0);
}

// Walkthrough 3: two disks, one detached since the snapshot.
TEST_F(snapshot_test, revert_after_detaching_a_disk_needs_force_and_brings_the_disk_back) {
    guest("echo on-data > /data/data/f; sync");
    ASSERT_EQ(qmpkit({"snapshot", "create", "snap", "two-disks"}).code, 0);
    guest("umount /data/data");
    auto detach = qmpkit({"detach-disk", "snap", "data"});
    ASSERT_EQ(detach.code, 0) << detach.err;

    auto refused = qmpkit({"snapshot", "revert", "snap", "two-disks"});
    EXPECT_EQ(refused.code, 1);
    EXPECT_NE(refused.err.find("2 disk(s), the VM now has 1"), std::string::npos) << refused.err;
    EXPECT_NE(refused.err.find("--force"), std::string::npos) << refused.err;

    auto forced = qmpkit({"snapshot", "revert", "snap", "two-disks", "--force"});
    ASSERT_EQ(forced.code, 0) << forced.err;
    auto disks = qmpkit({"--json", "disks", "snap"}).out;
    EXPECT_NE(disks.find("snap-data.qcow2"), std::string::npos) << disks;
    ASSERT_TRUE(run().wait_for_mount("snap", "/data/data")) << "never mounted";
    EXPECT_EQ(guest("cat /data/data/f"), "on-data\n");
}

// Walkthrough 5: external disk-only snapshots across both disks, a failed transaction, revert,
// delete by commit.
TEST_F(snapshot_test, external_disk_only_snapshot_is_atomic_reverts_and_merges_back) {
    const auto system_overlay = scratch() / "snap-system.ext.qcow2";
    auto failed = qmpkit({"snapshot", "create", "snap", "ext", "--disk-only", "--diskspec",
                          "data,file=/nonexistent-dir/data.qcow2"});
    EXPECT_EQ(failed.code, 1);
    EXPECT_NE(failed.err.find("transaction failed"), std::string::npos) << failed.err;
    EXPECT_FALSE(std::filesystem::exists(system_overlay))
        << "the transaction's other overlay must be removed";
    EXPECT_EQ(qmpkit({"snapshot", "info", "snap", "ext"}).code, 1);
    EXPECT_EQ(guest("echo still running"), "still running\n");

    guest("echo before > /mnt/ext; echo before > /data/data/ext; sync");
    auto r = qmpkit({"snapshot", "create", "snap", "ext", "--disk-only"});
    ASSERT_EQ(r.code, 0) << r.err;
    EXPECT_TRUE(std::filesystem::exists(system_overlay));
    auto disks = qmpkit({"--json", "disks", "snap"}).out;
    EXPECT_NE(disks.find("snap-system.ext.qcow2"), std::string::npos) << disks;
    EXPECT_NE(disks.find("snap-data.ext.qcow2"), std::string::npos) << disks;
    EXPECT_EQ(snapshot_json("snap", "ext").at("location").as_string(), "external");

    guest("echo after > /mnt/ext; echo after > /data/data/ext; sync");
    r = qmpkit({"snapshot", "revert", "snap", "ext", "--running"});
    ASSERT_EQ(r.code, 0) << r.err;
    ASSERT_EQ(qmpkit({"wait-ready", "snap"}).code, 0);
    ASSERT_TRUE(run().wait_for_mount("snap", "/data/data")) << "never mounted";
    EXPECT_EQ(guest("cat /mnt/ext"), "before\n");
    EXPECT_EQ(guest("cat /data/data/ext"), "before\n");

    guest("echo merged > /mnt/ext; sync");
    r = qmpkit({"snapshot", "delete", "snap", "ext"});
    ASSERT_EQ(r.code, 0) << r.err;
    EXPECT_FALSE(std::filesystem::exists(system_overlay)) << "the overlay is merged into its base";
    disks = qmpkit({"--json", "disks", "snap"}).out;
    EXPECT_EQ(disks.find(".ext.qcow2"), std::string::npos) << disks;
    EXPECT_EQ(guest("cat /mnt/ext"), "merged\n");
}

// Walkthrough 6: external snapshot with memory.
TEST_F(snapshot_test, external_snapshot_with_memory_reverts_ram_too) {
    const auto memory = scratch() / "mem1.state";
    guest("echo kept > /mnt/mem; sync");
    const auto boot = run().boot_id("snap");
    const auto at_snapshot = run().counter("snap");
    auto r = qmpkit({"snapshot", "create", "snap", "mem1", "--memspec", memory.string()});
    ASSERT_EQ(r.code, 0) << r.err;
    EXPECT_GT(std::filesystem::file_size(memory), 1000000u);
    EXPECT_EQ(guest("echo running"), "running\n") << "the VM runs on after the snapshot";

    guest("echo lost > /mnt/mem; sync");
    std::this_thread::sleep_for(1s);
    const auto before_revert = run().counter("snap");
    r = qmpkit({"snapshot", "revert", "snap", "mem1"});
    ASSERT_EQ(r.code, 0) << r.err;
    EXPECT_EQ(guest("cat /mnt/mem"), "kept\n");
    EXPECT_LT(run().counter("snap"), before_revert);
    EXPECT_GE(run().counter("snap"), at_snapshot);
    EXPECT_EQ(run().boot_id("snap"), boot);
    auto info = snapshot_json("snap", "mem1");
    EXPECT_TRUE(info.at("memory").as_bool());
}

TEST_F(snapshot_test, delete_children_metadata_only_and_no_metadata) {
    for (const auto* n : {"k1", "k2", "k3"})
        ASSERT_EQ(qmpkit({"snapshot", "create", "snap", n}).code, 0) << n;
    auto r = qmpkit({"snapshot", "delete", "snap", "k1", "--children-only"});
    ASSERT_EQ(r.code, 0) << r.err;
    EXPECT_EQ(r.out, "Snapshot k3 deleted\nSnapshot k2 deleted\n") << "deepest first";
    EXPECT_EQ(qmpkit({"snapshot", "info", "snap", "k1"}).code, 0);
    EXPECT_EQ(qmpkit({"snapshot", "info", "snap", "k2"}).code, 1);

    // --metadata forgets the snapshot but leaves it in the image; check reports the drift.
    r = qmpkit({"snapshot", "delete", "snap", "k1", "--metadata"});
    ASSERT_EQ(r.code, 0) << r.err;
    // Internal snapshots live in the top image, an overlay after the external cases.
    std::string image;
    const auto disks = json::parse(qmpkit({"--json", "disks", "snap"}).out);
    for (const auto& d : disks.as_array())
        if (d.at("disk").as_string() == "system")
            image = d.at("file").as_string();
    auto listed = launcher::qemu_img().info(image).snapshots;
    EXPECT_TRUE(std::any_of(listed.begin(), listed.end(), [](auto& s) { return s.name == "k1"; }))
        << image;
    auto check = qmpkit({"snapshot", "check", "snap"});
    EXPECT_EQ(check.code, 1);
    EXPECT_NE(check.out.find("k1"), std::string::npos) << check.out;

    // --no-metadata: taken, not recorded.
    r = qmpkit({"snapshot", "create", "snap", "unrecorded", "--no-metadata"});
    ASSERT_EQ(r.code, 0) << r.err;
    EXPECT_EQ(qmpkit({"snapshot", "info", "snap", "unrecorded"}).code, 1);
    listed = launcher::qemu_img().info(image).snapshots;
    EXPECT_TRUE(
        std::any_of(listed.begin(), listed.end(), [](auto& s) { return s.name == "unrecorded"; }));
    // Leave the images as the metadata says, for the cases after this one.
    for (const auto* n : {"k1", "unrecorded"})
        ASSERT_EQ(
            qmpkit({"qmp", "snap", "human-monitor-command", std::string("command-line=delvm ") + n})
                .code,
            0);
    EXPECT_EQ(qmpkit({"snapshot", "check", "snap"}).code, 0)
        << qmpkit({"snapshot", "check", "snap"}).out;
}

// --print-plan prints the steps the executor would run (the same list), after the same checks,
// and changes nothing.
TEST_F(snapshot_test, print_plan_shows_the_steps_and_does_nothing) {
    auto steps_of = [](const test::cli_result& r) {
        EXPECT_EQ(r.code, 0) << r.err;
        return r.code == 0 ? json::parse(r.out).as_array() : json::array{};
    };
    auto find = [](const json::array& plan, std::string_view key, std::string_view value) {
        for (const auto& s : plan)
            if (const auto* v = s.as_object().if_contains(key);
                v && v->is_string() && v->as_string() == value)
                return s.as_object();
        return json::object{};
    };
    auto plan = steps_of(
        qmpkit({"--json", "snapshot", "create", "snap", "planned", "--disk-only", "--print-plan"}));
    ASSERT_FALSE(plan.empty());
    EXPECT_EQ(plan.front().at("write"), "journal");
    const auto transaction = find(plan, "execute", "transaction");
    ASSERT_FALSE(transaction.empty()) << json::serialize(plan);
    EXPECT_EQ(transaction.at("arguments").at("actions").as_array().size(), 2u);
    EXPECT_FALSE(find(plan, "write", "definition").empty()) << "restarts use the overlays";
    EXPECT_EQ(qmpkit({"snapshot", "info", "snap", "planned"}).code, 1);
    EXPECT_FALSE(std::filesystem::exists(scratch() / "snap-system.planned.qcow2"));
    EXPECT_FALSE(std::filesystem::exists(run().state_root() / "snap" / "snapshot-op.json"));

    // A plan is refused where the operation would be.
    ASSERT_EQ(qmpkit({"snapshot", "create", "snap", "planbase"}).code, 0);
    auto r = qmpkit({"snapshot", "create", "snap", "planbase", "--print-plan"});
    EXPECT_EQ(r.code, 1);
    EXPECT_NE(r.err.find("already has a snapshot named 'planbase'"), std::string::npos) << r.err;

    // A paused revert stops the guest before the load job, which would otherwise resume it.
    plan = steps_of(
        qmpkit({"--json", "snapshot", "revert", "snap", "planbase", "--paused", "--print-plan"}));
    ASSERT_GE(plan.size(), 3u) << json::serialize(plan);
    EXPECT_EQ(plan[1].at("run-state"), "paused");
    EXPECT_EQ(plan[2].at("execute"), "snapshot-load");
    EXPECT_EQ(plan[2].at("arguments").at("tag"), "planbase");
    r = qmpkit({"--json", "status", "snap"});
    ASSERT_EQ(r.code, 0) << r.err;
    EXPECT_EQ(json::parse(r.out).at("state"), "running") << "a printed plan changes nothing";
    EXPECT_EQ(qmpkit({"snapshot", "revert", "snap", "nosuch", "--print-plan"}).code, 1);

    plan = steps_of(qmpkit({"--json", "snapshot", "delete", "snap", "planbase", "--print-plan"}));
    EXPECT_FALSE(find(plan, "execute", "snapshot-delete").empty()) << json::serialize(plan);
    EXPECT_EQ(qmpkit({"snapshot", "info", "snap", "planbase"}).code, 0) << "still there";
    EXPECT_EQ(qmpkit({"snapshot", "delete", "snap", "planbase"}).code, 0);
}

// Walkthrough 4: a shut-off VM, the way libvirt does it (qemu-img snapshot).
TEST_F(snapshot_test, offline_internal_snapshots_of_a_shut_off_vm) {
    auto def = test::write_tiny_guest("offline", scratch());
    ASSERT_EQ(qmpkit({"start", def.string(), "--wait-ready"}).code, 0);
    run().guest("offline", "echo original > /mnt/o; sync");
    ASSERT_EQ(qmpkit({"shutdown", "offline", "--timeout", "30"}).code, 0);

    auto r = qmpkit({"snapshot", "create", "offline", "cold"});
    ASSERT_EQ(r.code, 0) << r.err;
    const auto image = scratch() / "offline-system.qcow2";
    auto listed = launcher::qemu_img().snapshot_list(image);
    ASSERT_EQ(listed.size(), 1u);
    EXPECT_EQ(listed[0].name, "cold");
    EXPECT_EQ(listed[0].vm_state_size, 0u) << "a shut-off VM has no memory to save";
    EXPECT_EQ(snapshot_json("offline", "cold").at("state").as_string(), "shutoff");

    ASSERT_EQ(qmpkit({"start", def.string(), "--wait-ready"}).code, 0);
    run().guest("offline", "echo changed > /mnt/o; sync");
    ASSERT_EQ(qmpkit({"shutdown", "offline", "--timeout", "30"}).code, 0);
    r = qmpkit({"snapshot", "revert", "offline", "cold", "--running"});
    ASSERT_EQ(r.code, 0) << r.err;
    ASSERT_EQ(qmpkit({"wait-ready", "offline"}).code, 0);
    EXPECT_EQ(run().guest("offline", "cat /mnt/o"), "original\n");
    ASSERT_EQ(qmpkit({"destroy", "offline"}).code, 0);

    r = qmpkit({"snapshot", "delete", "offline", "cold"});
    ASSERT_EQ(r.code, 0) << r.err;
    EXPECT_TRUE(launcher::qemu_img().snapshot_list(image).empty());
}

// Walkthrough 7: a raw disk gets a clear error and the command that fixes it.
TEST_F(snapshot_test, raw_disk_is_refused_with_the_convert_command_and_works_after_converting) {
    auto raw = scratch() / "rawvm-system.raw";
    auto def = test::write_tiny_guest("rawvm", scratch(), {{"system", "64M", "raw"}});
    ASSERT_EQ(qmpkit({"disk", "create", raw.string(), "64M", "--format", "raw"}).code, 0);
    const auto size_before = std::filesystem::file_size(raw);

    auto r = qmpkit({"snapshot", "create", def.string(), "s"});
    EXPECT_EQ(r.code, 1);
    EXPECT_NE(r.err.find("disk 'system'"), std::string::npos) << r.err;
    EXPECT_NE(r.err.find("qmpkit disk convert " + raw.string()), std::string::npos) << r.err;
    EXPECT_EQ(std::filesystem::file_size(raw), size_before);

    auto qcow = scratch() / "rawvm-system.qcow2";
    ASSERT_EQ(qmpkit({"disk", "convert", raw.string(), qcow.string()}).code, 0);
    EXPECT_TRUE(std::filesystem::exists(raw)) << "convert keeps the original";
    auto fixed = scratch() / "rawvm-fixed.yaml";
    test::write_text(fixed,
                     test::tiny_guest_yaml("rawvm", scratch(), {{"system", "64M", "qcow2"}}));
    // The new definition replaces the recorded one only while the VM is shut off.
    std::filesystem::remove(scratch() / "state" / "rawvm" / "definition.yaml");
    r = qmpkit({"snapshot", "create", fixed.string(), "s"});
    EXPECT_EQ(r.code, 0) << r.err;
}

} // namespace
