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

} // namespace
} // namespace qmpkit::snapshot
