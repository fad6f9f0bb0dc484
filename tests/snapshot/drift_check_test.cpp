#include <qmpkit/launcher/error.hpp>
#include <qmpkit/snapshot/drift_check.hpp>

#include <gtest/gtest.h>

#include <map>
#include <set>
#include <stdexcept>

namespace qmpkit::snapshot {
namespace {

namespace fs = std::filesystem;
using kind = drift::kind;

// Images as qemu-img would describe them, without any file or qemu-img.
class fake_images {
public:
    launcher::image_info& image(const fs::path& p) {
        files.insert(p);
        auto& info = infos[p];
        info.filename = p;
        info.format = "qcow2";
        return info;
    }
    void snapshot(const fs::path& p, std::string name, std::uint64_t vm_state_size = 0) {
        auto& info = image(p);
        launcher::image_snapshot s;
        s.id = std::to_string(info.snapshots.size() + 1);
        s.name = std::move(name);
        s.vm_state_size = vm_state_size;
        info.snapshots.push_back(s);
    }
    void overlay(const fs::path& p, const fs::path& backing) {
        image(p).full_backing_file = backing.string();
        image(p).backing_file = backing.string();
    }

    image_info_function info() {
        return [this](const fs::path& p) {
            ++calls[p];
            if (broken.contains(p))
                throw launcher::error(launcher::error_kind::command_failed,
                                      "qemu-img: Could not open '" + p.string() +
                                          "': Image is not in qcow2 format");
            auto it = infos.find(p);
            if (it == infos.end())
                throw std::runtime_error("no such image " + p.string());
            return it->second;
        };
    }
    drift_options options(const launcher::vm_definition* def = nullptr) {
        return {def, [this](const fs::path& p) { return files.contains(p); }};
    }

    std::map<fs::path, launcher::image_info> infos;
    std::set<fs::path> files;
    std::set<fs::path> broken;
    std::map<fs::path, int> calls;
};

snapshot_record internal(std::string name, std::int64_t t, std::vector<std::string> disks,
                         std::optional<std::string> parent = std::nullopt) {
    snapshot_record r;
    r.name = std::move(name);
    r.created_at = t;
    r.parent = std::move(parent);
    for (const auto& d : disks)
        r.disks.push_back({d, disk_snapshot::mode::internal, "/img/" + d + ".qcow2", "", d});
    return r;
}

snapshot_record external(std::string name, std::int64_t t, const std::string& disk,
                         const fs::path& image, const fs::path& overlay,
                         std::optional<std::string> parent = std::nullopt) {
    snapshot_record r;
    r.name = std::move(name);
    r.created_at = t;
    r.location = snapshot_location::external;
    r.parent = std::move(parent);
    r.disks.push_back({disk, disk_snapshot::mode::external, image, overlay, "ov-" + disk});
    return r;
}

// s1, s2 internal on root and data; s3 external on root above them.
struct consistent : ::testing::Test {
    consistent() {
        tree.add(internal("s1", 1, {"root", "data"}));
        tree.add(internal("s2", 2, {"root", "data"}, "s1"));
        tree.add(external("s3", 3, "root", "/img/root.qcow2", "/img/root.s3.qcow2", "s2"));
        for (const char* d : {"/img/root.qcow2", "/img/data.qcow2"}) {
            images.snapshot(d, "s1");
            images.snapshot(d, "s2");
        }
        images.overlay("/img/root.s3.qcow2", "/img/root.qcow2");
    }
    std::vector<drift> check(const launcher::vm_definition* def = nullptr) {
        return check_drift(tree, images.info(), images.options(def));
    }

    snapshot_tree tree;
    fake_images images;
};

TEST_F(consistent, finds_nothing) {
    EXPECT_TRUE(check().empty());
    for (const auto& [path, n] : images.calls)
        EXPECT_EQ(n, 1) << path << " inspected once";
}

TEST_F(consistent, snapshot_deleted_from_an_image) {
    images.infos["/img/data.qcow2"].snapshots.erase(
        images.infos["/img/data.qcow2"].snapshots.begin());
    const auto found = check();
    ASSERT_EQ(found.size(), 1u);
    EXPECT_EQ(found[0].what, kind::missing_in_image);
    EXPECT_EQ(found[0].snapshot, "s1");
    EXPECT_EQ(found[0].disk, "data");
    EXPECT_EQ(found[0].file, fs::path("/img/data.qcow2"));
    EXPECT_EQ(found[0].description,
              "image \"/img/data.qcow2\" of disk \"data\" holds no internal snapshot named \"s1\"");
    EXPECT_EQ(to_string(found[0].what), "missing in image");
}

TEST_F(consistent, snapshot_made_by_another_tool) {
    images.snapshot("/img/root.qcow2", "manual $(x)");
    const auto found = check();
    ASSERT_EQ(found.size(), 1u);
    EXPECT_EQ(found[0].what, kind::unknown_to_qmpkit);
    EXPECT_EQ(found[0].snapshot, "manual $(x)");
    EXPECT_EQ(found[0].disk, "root");
    EXPECT_EQ(found[0].file, fs::path("/img/root.qcow2"));
    EXPECT_EQ(found[0].description, "image \"/img/root.qcow2\" of disk \"root\" holds internal "
                                    "snapshot \"manual $(x)\" (id 3); qmpkit has no snapshot by "
                                    "that name");
}

TEST_F(consistent, snapshot_name_known_but_not_for_this_image) {
    images.snapshot("/img/root.s3.qcow2", "s1");
    const auto found = check();
    ASSERT_EQ(found.size(), 1u);
    EXPECT_EQ(found[0].what, kind::unknown_to_qmpkit);
    EXPECT_EQ(found[0].file, fs::path("/img/root.s3.qcow2"));
    EXPECT_NE(found[0].description.find("does not include this image"), std::string::npos);
}

TEST_F(consistent, images_of_the_current_definition_are_searched_too) {
    images.snapshot("/img/extra.qcow2", "old");
    EXPECT_TRUE(check().empty()) << "not mentioned by any snapshot";
    launcher::vm_definition def;
    def.disks.push_back({.name = "root", .file = "/img/root.s3.qcow2"});
    def.disks.push_back({.name = "extra", .file = "/img/extra.qcow2"});
    def.disks.push_back({.name = "gone", .file = "/img/not-there.qcow2"});
    const auto found = check(&def);
    ASSERT_EQ(found.size(), 1u);
    EXPECT_EQ(found[0].what, kind::unknown_to_qmpkit);
    EXPECT_EQ(found[0].disk, "extra");
    EXPECT_EQ(found[0].snapshot, "old");
}

TEST_F(consistent, overlay_deleted) {
    images.files.erase("/img/root.s3.qcow2");
    const auto found = check();
    ASSERT_EQ(found.size(), 1u);
    EXPECT_EQ(found[0].what, kind::file_missing);
    EXPECT_EQ(found[0].snapshot, "s3");
    EXPECT_EQ(found[0].file, fs::path("/img/root.s3.qcow2"));
    EXPECT_EQ(found[0].description, "overlay \"/img/root.s3.qcow2\" of disk \"root\" is missing");
}

TEST_F(consistent, frozen_image_deleted) {
    images.files.erase("/img/root.qcow2");
    const auto found = check();
    ASSERT_EQ(found.size(), 3u);
    EXPECT_EQ(found[0].what, kind::file_missing); // s1's internal snapshot
    EXPECT_EQ(found[0].snapshot, "s1");
    EXPECT_EQ(found[1].snapshot, "s2");
    EXPECT_EQ(found[2].what, kind::file_missing);
    EXPECT_EQ(found[2].snapshot, "s3");
    EXPECT_EQ(found[2].description, "frozen image \"/img/root.qcow2\" of disk \"root\" is missing");
}

TEST_F(consistent, overlay_rebased_elsewhere) {
    images.overlay("/img/root.s3.qcow2", "/other/root.qcow2");
    const auto found = check();
    ASSERT_EQ(found.size(), 1u);
    EXPECT_EQ(found[0].what, kind::chain_broken);
    EXPECT_EQ(found[0].file, fs::path("/img/root.s3.qcow2"));
    EXPECT_EQ(found[0].description, "overlay \"/img/root.s3.qcow2\" of disk \"root\" is backed by "
                                    "\"/other/root.qcow2\", not \"/img/root.qcow2\"");
}

TEST_F(consistent, overlay_without_backing_file) {
    auto& info = images.image("/img/root.s3.qcow2");
    info.full_backing_file.reset();
    info.backing_file.reset();
    const auto found = check();
    ASSERT_EQ(found.size(), 1u);
    EXPECT_EQ(found[0].what, kind::chain_broken);
    EXPECT_NE(found[0].description.find("has no backing file"), std::string::npos);
}

TEST_F(consistent, backing_paths_compare_lexically_normal) {
    images.image("/img/root.s3.qcow2").full_backing_file = "/img/./sub/../root.qcow2";
    EXPECT_TRUE(check().empty());
    auto& info = images.image("/img/root.s3.qcow2");
    info.full_backing_file.reset();
    info.backing_file = "root.qcow2"; // relative: to the overlay's directory
    EXPECT_TRUE(check().empty());
}

TEST_F(consistent, unreadable_image_is_reported_once) {
    images.broken.insert("/img/data.qcow2");
    const auto found = check();
    ASSERT_EQ(found.size(), 2u) << "s1 and s2 each use it";
    EXPECT_EQ(found[0].what, kind::unreadable);
    EXPECT_EQ(found[0].snapshot, "s1");
    EXPECT_NE(found[0].description.find("Image is not in qcow2 format"), std::string::npos);
    EXPECT_EQ(found[1].snapshot, "s2");
    EXPECT_EQ(images.calls["/img/data.qcow2"], 1);
}

TEST(drift_check, memory_state_gone_from_internal_snapshot) {
    snapshot_tree tree;
    auto r = internal("live", 1, {"root", "data"});
    r.memory = true;
    tree.add(r);
    fake_images images;
    images.snapshot("/img/root.qcow2", "live", 0);
    images.snapshot("/img/data.qcow2", "live", 0);
    auto found = check_drift(tree, images.info(), images.options());
    ASSERT_EQ(found.size(), 1u);
    EXPECT_EQ(found[0].what, kind::memory_missing);
    EXPECT_EQ(found[0].snapshot, "live");
    EXPECT_EQ(found[0].disk, "");

    images.infos["/img/root.qcow2"].snapshots[0].vm_state_size = 1 << 20;
    EXPECT_TRUE(check_drift(tree, images.info(), images.options()).empty());
}

TEST(drift_check, memory_file_of_external_snapshot_deleted) {
    snapshot_tree tree;
    auto r = external("ext", 1, "root", "/img/root.qcow2", "/img/root.ext.qcow2");
    r.memory = true;
    r.memory_file = "/state/ext.mem";
    tree.add(r);
    fake_images images;
    images.image("/img/root.qcow2");
    images.overlay("/img/root.ext.qcow2", "/img/root.qcow2");
    auto found = check_drift(tree, images.info(), images.options());
    ASSERT_EQ(found.size(), 1u);
    EXPECT_EQ(found[0].what, kind::file_missing);
    EXPECT_EQ(found[0].file, fs::path("/state/ext.mem"));
    EXPECT_EQ(found[0].description,
              "memory file \"/state/ext.mem\" of snapshot \"ext\" is missing");
    images.files.insert("/state/ext.mem");
    EXPECT_TRUE(check_drift(tree, images.info(), images.options()).empty());
}

TEST(drift_check, excluded_disks_need_nothing) {
    snapshot_tree tree;
    snapshot_record r;
    r.name = "x";
    r.disks = {{"cd", disk_snapshot::mode::excluded, "/iso/boot.iso", "", ""}};
    tree.add(r);
    fake_images images;
    images.image("/iso/boot.iso").format = "raw";
    EXPECT_TRUE(check_drift(tree, images.info(), images.options()).empty());
}

TEST(drift_check, uses_the_real_file_system_by_default) {
    snapshot_tree tree;
    tree.add(
        external("e", 1, "root", "/nonexistent/qmpkit/a.qcow2", "/nonexistent/qmpkit/b.qcow2"));
    const auto found = check_drift(tree, [](const fs::path&) -> launcher::image_info {
        throw std::runtime_error("not called");
    });
    ASSERT_EQ(found.size(), 2u);
    EXPECT_EQ(found[0].what, kind::file_missing);
    EXPECT_EQ(found[1].what, kind::file_missing);
}

// --- repair: plan_repair -------------------------------------------------------------------

launcher::vm_definition two_disk_definition() {
    launcher::vm_definition def;
    def.name = "vm";
    def.disks.push_back({.name = "root", .file = "/img/root.qcow2", .node_name = "root"});
    def.disks.push_back({.name = "data", .file = "/img/data.qcow2", .node_name = "data"});
    return def;
}

repair_plan repair(consistent& c, const launcher::vm_definition* def = nullptr) {
    const auto found = c.check(def);
    auto options = c.images.options(def);
    return plan_repair(c.tree, found, c.images.info(), options);
}

TEST_F(consistent, repair_of_nothing_changes_nothing) {
    const auto plan = repair(*this);
    EXPECT_FALSE(plan.tree_changed);
    EXPECT_EQ(plan.tree, tree);
    EXPECT_TRUE(plan.remove.empty());
    EXPECT_TRUE(plan.done.empty());
    EXPECT_TRUE(plan.left.empty());
}

TEST_F(consistent, repair_forgets_a_snapshot_missing_in_an_image_and_reparents_its_child) {
    tree.set_current("s2");
    auto& sns = images.infos["/img/data.qcow2"].snapshots;
    sns.erase(sns.begin() + 1); // s2 gone from data
    const auto plan = repair(*this);
    EXPECT_TRUE(plan.tree_changed);
    EXPECT_FALSE(plan.tree.contains("s2"));
    EXPECT_EQ(plan.tree.parent("s3"), "s1") << "the child moves up";
    EXPECT_EQ(plan.tree.current(), "s1") << "current moves to the parent";
    ASSERT_EQ(plan.done.size(), 1u);
    EXPECT_NE(plan.done[0].find("forgot snapshot \"s2\""), std::string::npos) << plan.done[0];
    EXPECT_TRUE(plan.left.empty());
    EXPECT_TRUE(plan.remove.empty()) << "the half left in root is not deleted";
}

TEST_F(consistent,
       repair_forgets_a_snapshot_whose_frozen_image_is_gone_but_keeps_one_whose_overlay_is) {
    images.files.erase("/img/root.s3.qcow2");
    auto plan = repair(*this);
    EXPECT_FALSE(plan.tree_changed);
    ASSERT_EQ(plan.left.size(), 1u) << "a missing overlay is reported, the snapshot kept";
    EXPECT_EQ(plan.left[0].what, kind::file_missing);

    images.files.insert("/img/root.s3.qcow2");
    snapshot_tree t;
    t.add(external("e", 1, "root", "/img/gone.qcow2", "/img/root.s3.qcow2"));
    const auto found = check_drift(t, images.info(), images.options());
    plan = plan_repair(t, found, images.info(), images.options());
    EXPECT_TRUE(plan.tree_changed);
    EXPECT_TRUE(plan.tree.empty());
}

TEST_F(consistent, repair_follows_a_merged_intermediate_image) {
    // s4 was taken over s3's overlay; then s3's overlay was merged into root.qcow2 (block-commit)
    // before the metadata said so: s4's overlay now sits on root.qcow2.
    tree.add(external("s4", 4, "root", "/img/root.s3.qcow2", "/img/root.s4.qcow2", "s3"));
    images.overlay("/img/root.s4.qcow2", "/img/root.qcow2");
    const auto plan = repair(*this);
    EXPECT_TRUE(plan.tree_changed);
    EXPECT_EQ(plan.tree.at("s4").disks[0].image, fs::path("/img/root.qcow2"));
    EXPECT_TRUE(plan.left.empty());

    images.overlay("/img/root.s4.qcow2", "/elsewhere/x.qcow2");
    const auto other = repair(*this);
    EXPECT_FALSE(other.tree_changed) << "a chain qmpkit cannot explain is left alone";
    ASSERT_EQ(other.left.size(), 1u);
    EXPECT_EQ(other.left[0].what, kind::chain_broken);
}

TEST_F(consistent, repair_adopts_a_snapshot_every_disk_holds) {
    tree.set_current("s2");
    const auto def = two_disk_definition();
    images.snapshot("/img/root.qcow2", "found", 4096);
    images.snapshot("/img/data.qcow2", "found", 0);
    images.infos["/img/root.qcow2"].snapshots.back().date_sec = 1234;
    const auto plan = repair(*this, &def);
    ASSERT_TRUE(plan.tree.contains("found"));
    const auto& r = plan.tree.at("found");
    EXPECT_EQ(r.location, snapshot_location::internal);
    EXPECT_TRUE(r.memory);
    EXPECT_EQ(r.state, vm_state::running);
    EXPECT_EQ(r.created_at, 1234);
    EXPECT_EQ(r.parent, "s2");
    ASSERT_EQ(r.disks.size(), 2u);
    EXPECT_EQ(r.disks[1].image, fs::path("/img/data.qcow2"));
    EXPECT_EQ(plan.tree.current(), "s2") << "adopting does not move current";
    EXPECT_TRUE(plan.left.empty());
    ASSERT_EQ(plan.done.size(), 1u);
    EXPECT_NE(plan.done[0].find("adopted"), std::string::npos);
}

TEST_F(consistent, repair_reports_but_never_deletes_a_snapshot_only_some_disks_hold) {
    const auto def = two_disk_definition();
    images.snapshot("/img/root.qcow2", "half");
    const auto plan = repair(*this, &def);
    EXPECT_FALSE(plan.tree_changed);
    EXPECT_TRUE(plan.remove.empty());
    ASSERT_EQ(plan.left.size(), 1u);
    EXPECT_EQ(plan.left[0].what, kind::unknown_to_qmpkit);
    EXPECT_EQ(plan.left[0].snapshot, "half");

    // Without the definition there is nothing to adopt it into either.
    images.snapshot("/img/data.qcow2", "half");
    EXPECT_FALSE(repair(*this).tree_changed);
    EXPECT_TRUE(repair(*this, &def).tree.contains("half"));
}

TEST_F(consistent, repair_does_not_adopt_a_name_qmpkit_refuses) {
    const auto def = two_disk_definition();
    images.snapshot("/img/root.qcow2", "-x");
    images.snapshot("/img/data.qcow2", "-x");
    const auto plan = repair(*this, &def);
    EXPECT_FALSE(plan.tree_changed);
    EXPECT_EQ(plan.left.size(), 2u) << "one per image";
}

// --- files left in the state and image directories -------------------------------------------

struct with_directories : consistent {
    with_directories() {
        def = two_disk_definition();
        dirs["/state/vm"] = {"/state/vm/definition.yaml", "/state/vm/snapshots.json",
                             "/state/vm/qmp.sock"};
        dirs["/img"] = {"/img/root.qcow2", "/img/data.qcow2", "/img/root.s3.qcow2",
                        "/img/other.qcow2"};
    }
    drift_options options() {
        auto o = images.options(&def);
        o.state_dir = "/state/vm";
        o.list_dir = [this](const fs::path& d) { return dirs[d]; };
        return o;
    }
    std::vector<drift> check() { return check_drift(tree, images.info(), options()); }

    launcher::vm_definition def;
    std::map<fs::path, std::vector<fs::path>> dirs;
};

TEST_F(with_directories, a_clean_directory_has_nothing_to_report) {
    EXPECT_TRUE(check().empty());
}

TEST_F(with_directories, leftover_temporary_files_are_stray_and_repair_removes_them) {
    dirs["/state/vm"].push_back("/state/vm/.snapshots.json.a1B2c3");
    dirs["/state/vm"].push_back("/state/vm/.definition.yaml.Zz9999");
    dirs["/state/vm"].push_back("/state/vm/.snapshots.json.toolong7"); // not the writer's name
    dirs["/img"].push_back("/img/.vm-root.s9.qcow2.qmpkit-tmp-123");
    dirs["/img"].push_back("/img/.someone-else.qcow2.qmpkit-tmp-1"); // not this VM's
    const auto found = check();
    ASSERT_EQ(found.size(), 3u);
    for (const auto& d : found)
        EXPECT_EQ(d.what, kind::stray_file) << d.description;
    EXPECT_EQ(found[0].file, fs::path("/state/vm/.snapshots.json.a1B2c3"));
    EXPECT_NE(found[0].description.find("left by an interrupted qmpkit"), std::string::npos);
    const auto plan = plan_repair(tree, found, images.info(), options());
    ASSERT_EQ(plan.remove.size(), 3u);
    EXPECT_EQ(plan.remove[2], fs::path("/img/.vm-root.s9.qcow2.qmpkit-tmp-123"));
    EXPECT_TRUE(plan.left.empty());
}

TEST_F(with_directories, an_unrecorded_overlay_of_the_vm_is_reported_and_kept) {
    images.overlay("/img/vm-root.lost.qcow2", "/img/root.qcow2");
    dirs["/img"].push_back("/img/vm-root.lost.qcow2");
    images.overlay("/img/users-own.qcow2", "/img/root.qcow2"); // not named like qmpkit's
    dirs["/img"].push_back("/img/users-own.qcow2");
    const auto found = check();
    ASSERT_EQ(found.size(), 1u);
    EXPECT_EQ(found[0].what, kind::unknown_overlay);
    EXPECT_EQ(found[0].file, fs::path("/img/vm-root.lost.qcow2"));
    const auto plan = plan_repair(tree, found, images.info(), options());
    EXPECT_TRUE(plan.remove.empty()) << "it may hold the user's data";
    EXPECT_EQ(plan.left.size(), 1u);
}

TEST(drift_check, new_kinds_have_names) {
    EXPECT_EQ(to_string(kind::current_missing), "current missing");
    EXPECT_EQ(to_string(kind::interrupted), "interrupted");
    EXPECT_EQ(to_string(kind::stray_file), "stray file");
    EXPECT_EQ(to_string(kind::unknown_overlay), "unknown overlay");
}

} // namespace
} // namespace qmpkit::snapshot
