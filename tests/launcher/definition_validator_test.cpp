#include "launcher/test_support.hpp"

#include <qmpkit/launcher/definition_loader.hpp>
#include <qmpkit/launcher/definition_validator.hpp>
#include <qmpkit/launcher/error.hpp>

#include <gtest/gtest.h>

#include <unistd.h>

namespace qmpkit::launcher {
namespace {

namespace fs = std::filesystem;

class definition_validator : public testing::Test {
protected:
    void SetUp() override {
        dir_.write("vmlinuz");
        dir_.write("initrd.img");
        dir_.write("images/system.qcow2");
        dir_.write("images/base.qcow2");
        dir_.write("images/cd.iso");
    }

    vm_definition load(std::string_view yaml) {
        return load_definition_from_string(yaml, dir_ / "vm.yaml");
    }

    std::vector<diagnostic> problems(std::string_view yaml, validate_options options = {}) {
        return check_definition(load(yaml), options);
    }

    test::temp_dir dir_;
};

TEST_F(definition_validator, accepts_a_complete_definition) {
    auto yaml = R"(name: tiny-1.a_b
machine: q35
cpus: 2
memory: 1G
kernel: vmlinuz
initrd: initrd.img
append: console=ttyS0
command_channel: true
disks:
  - {name: system, file: images/system.qcow2}
  - {name: data, file: images/data.qcow2, size: 64M, bus: scsi, cache: none}
  - {name: overlay, file: images/overlay.qcow2, backing: images/base.qcow2}
  - {name: cd, file: images/cd.iso, format: raw, read_only: true, node_name: cd.0}
serial: {log: serial.log}
network:
  forwards:
    - {host_port: 2222, guest_port: 22}
    - {protocol: udp, host_port: 2222, guest_port: 22}
    - {host_addr: 0.0.0.0, host_port: 2222, guest_port: 22}
  mac: "52:54:00:AB:CD:EF"
)";
    auto found = problems(yaml);
    for (const auto& d : found)
        ADD_FAILURE() << to_string(d);
}

TEST_F(definition_validator, a_missing_image_with_a_size_or_backing_can_be_created) {
    EXPECT_TRUE(problems(R"(name: vm
disks:
  - {name: a, file: images/new.qcow2, size: 1G}
  - {name: b, file: images/new2.qcow2, backing: images/base.qcow2}
  - {name: c, file: images/system.qcow2, size: 1G}
)")
                    .empty());
}

TEST_F(definition_validator, file_checks_can_be_skipped) {
    auto yaml = R"(name: vm
kernel: /nonexistent/vmlinuz
disks:
  - {name: a, file: /nonexistent/a.qcow2}
serial: {log: /nonexistent/serial.log}
)";
    EXPECT_EQ(problems(yaml).size(), 3u);
    EXPECT_TRUE(problems(yaml, {.check_files = false}).empty());
}

TEST_F(definition_validator, a_directory_is_not_a_kernel) {
    fs::create_directory(dir_ / "kernel.d");
    auto found = problems("name: vm\nkernel: kernel.d\n");
    ASSERT_EQ(found.size(), 1u);
    EXPECT_EQ(found[0].field, "kernel");
    EXPECT_NE(found[0].message.find("not a regular file"), std::string::npos);
}

TEST_F(definition_validator, a_read_only_disk_must_exist) {
    auto found = problems("name: vm\ndisks:\n  - {name: a, file: gone.img, read_only: true}\n");
    ASSERT_EQ(found.size(), 1u);
    EXPECT_EQ(found[0].field, "disks[0].file");
    EXPECT_NE(found[0].message.find("file not found"), std::string::npos);
}

TEST_F(definition_validator, a_duplicate_name_is_reported_once) {
    // The defaulted node names collide too, but that is the same mistake.
    auto found = problems(R"(name: vm
disks:
  - {name: a, file: images/system.qcow2}
  - {name: a, file: images/x.qcow2, size: 1M}
)");
    ASSERT_EQ(found.size(), 1u);
    EXPECT_EQ(found[0].field, "disks[1].name");
}

TEST_F(definition_validator, q35_has_six_ide_slots) {
    std::string yaml = "name: vm\nmachine: q35\ndisks:\n";
    for (int i = 0; i < 6; ++i)
        yaml += "  - {name: d" + std::to_string(i) + ", file: d" + std::to_string(i) +
                ".qcow2, size: 1M, bus: ide}\n";
    EXPECT_TRUE(problems(yaml).empty());
    yaml += "  - {name: d6, file: d6.qcow2, size: 1M, bus: ide}\n";
    auto found = problems(yaml);
    ASSERT_EQ(found.size(), 1u);
    EXPECT_EQ(found[0].field, "disks[6].bus");
}

TEST_F(definition_validator, run_as_names_a_host_user_that_is_not_root) {
    // Looked up through getent, as the statically linked tool does.
    const std::string head = "name: vm\nkernel: vmlinuz\nreset: {strategy: loadvm}\n";
    auto found = problems(head + "security: {run_as: no-such-user-qk}\n");
    ASSERT_EQ(found.size(), 1u);
    EXPECT_EQ(found[0].field, "security.run_as");
    EXPECT_NE(found[0].message.find("no such user 'no-such-user-qk'"), std::string::npos);
    found = problems(head + "security: {run_as: root}\n");
    ASSERT_EQ(found.size(), 1u);
    EXPECT_NE(found[0].message.find("is uid 0"), std::string::npos);
    found = problems(head + "security: {run_as: nobody}\n");
    if (::geteuid() == 0)
        EXPECT_TRUE(found.empty()) << to_string(found.at(0));
    else
        EXPECT_EQ(found.size(), 1u); // only root can make qemu switch users
}

TEST(definition_validator_code, a_definition_built_in_code_is_checked_without_positions) {
    vm_definition def;
    def.name = "vm";
    def.kernel = "/k";
    def.boot = boot_mode::kernel;
    def.disks.push_back({.name = "a", .file = "/a.qcow2"}); // node_name left empty
    auto found = check_definition(def, {.check_files = false});
    ASSERT_EQ(found.size(), 1u);
    EXPECT_EQ(to_string(found[0]),
              "disks[0].node_name: invalid node name '': use up to 26 letters, digits, '_', '.' "
              "or '-', starting with a letter");
}

TEST(definition_validator_code, validation_of_a_good_definition_does_not_throw) {
    vm_definition def;
    def.name = "vm";
    def.kernel = "/k";
    def.boot = boot_mode::kernel;
    EXPECT_NO_THROW(validate_definition(def, {.check_files = false}));
}

TEST(definition_validator_names, follow_the_documented_patterns) {
    EXPECT_TRUE(is_valid_vm_name("tiny"));
    EXPECT_TRUE(is_valid_vm_name("0vm.test_1-a"));
    EXPECT_TRUE(is_valid_vm_name(std::string(64, 'a')));
    EXPECT_FALSE(is_valid_vm_name(std::string(65, 'a')));
    EXPECT_FALSE(is_valid_vm_name(""));
    EXPECT_FALSE(is_valid_vm_name(".hidden"));
    EXPECT_FALSE(is_valid_vm_name("a/b"));
    EXPECT_FALSE(is_valid_vm_name("a,b"));
    EXPECT_FALSE(is_valid_vm_name("a b"));

    EXPECT_TRUE(is_valid_disk_name("system"));
    EXPECT_TRUE(is_valid_disk_name("d_1-x"));
    EXPECT_TRUE(is_valid_disk_name(std::string(24, 'd')));
    EXPECT_FALSE(is_valid_disk_name(std::string(25, 'd')));
    EXPECT_FALSE(is_valid_disk_name("1d"));
    EXPECT_FALSE(is_valid_disk_name("d.1"));

    EXPECT_TRUE(is_valid_node_name("sys.node-1_a"));
    EXPECT_TRUE(is_valid_node_name(std::string(26, 'n')));
    EXPECT_FALSE(is_valid_node_name(std::string(27, 'n')));
    EXPECT_FALSE(is_valid_node_name("_n"));
    EXPECT_FALSE(is_valid_node_name("n n"));
}

// Definitions used on one host, each valid alone: what two of them share is compared by the file
// it names, however the path is written.
TEST_F(definition_validator, definitions_together_conflict_on_what_one_host_has_once) {
    fs::create_directory_symlink(dir_.path() / "images", dir_.path() / "linked");
    const auto a = load_definition_from_string(R"(name: a
kernel: vmlinuz
firmware: uefi
nvram: images/shared-nvram.qcow2
disks:
  - {name: system, file: images/system.qcow2}
serial: {log: logs/console.log}
network:
  forwards:
    - {host_addr: 0.0.0.0, host_port: 2222, guest_port: 22}
    - {protocol: udp, host_port: 5353, guest_port: 53}
)",
                                               dir_ / "a.yaml");
    const auto b = load_definition_from_string(R"(name: b
kernel: vmlinuz
firmware: uefi
nvram: linked/shared-nvram.qcow2
disks:
  - {name: root, file: linked/../images/base.qcow2}
  - {name: other, file: linked/system.qcow2, read_only: true}
serial: {log: ./logs/console.log}
network:
  forwards:
    - {host_port: 2222, guest_port: 22}
    - {host_port: 5353, guest_port: 53}
)",
                                               dir_ / "b.yaml");
    const auto found = check_definitions_together({a, b});
    std::vector<std::string> fields;
    for (const auto& d : found) {
        EXPECT_EQ(d.file, (dir_ / "b.yaml").string());
        EXPECT_GT(d.line, 0) << d.field;
        fields.push_back(d.field);
    }
    // udp 5353 against tcp 5353 is no conflict, nor base.qcow2, which only b uses.
    EXPECT_EQ(fields, (std::vector<std::string>{"nvram", "disks[1].file", "serial.log",
                                                "network.forwards[0].host_port"}));
    EXPECT_NE(
        found.at(1).message.find("is also a disk of VM 'a' (" + (dir_ / "a.yaml").string() + ":6)"),
        std::string::npos)
        << found.at(1).message;

    // Alone, the same definition twice, or read-only users of one image: nothing.
    EXPECT_TRUE(check_definitions_together({a}).empty());
    EXPECT_TRUE(check_definitions_together({a, a}).empty());
    const auto reader = [&](std::string name) {
        return load_definition_from_string("name: " + name +
                                               "\nkernel: vmlinuz\ndisks:\n"
                                               "  - {name: cd, file: images/cd.iso, format: raw, "
                                               "read_only: true}\n",
                                           dir_ / (name + ".yaml"));
    };
    EXPECT_TRUE(check_definitions_together({reader("r1"), reader("r2")}).empty());
}

} // namespace
} // namespace qmpkit::launcher
