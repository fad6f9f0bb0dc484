#include "launcher/test_support.hpp"

#include <qmpkit/launcher/definition_loader.hpp>
#include <qmpkit/launcher/definition_validator.hpp>
#include <qmpkit/launcher/error.hpp>

#include <gtest/gtest.h>

#include <memory>
#include <ostream>
#include <string>
#include <string_view>

namespace qmpkit::launcher {
namespace {

// Every case is a definition with exactly one problem, and the one diagnostic it must produce.
struct bad_case {
    std::string_view id;
    std::string yaml;
    std::string_view field;
    int line;
    int column;
    std::string_view fragment;
};

void PrintTo(const bad_case& c, std::ostream* os) {
    *os << c.id;
}

// Two valid lines most cases start with: without something to boot, every case would also
// report "disk boot needs at least one disk".
const std::string head = "name: vm\nkernel: vmlinuz\n";

const bad_case bad_cases[] = {
    // Syntax.
    {"yaml_unclosed_flow", head + "disks: [a, b\n", "", 4, 1, "end of sequence flow not found"},
    {"yaml_tab", "name: vm\n\tkernel: x\n", "", 2, 1, "illegal tab"},
    {"yaml_bad_indent", head + "disks:\n  - name: a\n   file: x\n", "", 5, 4,
     "end of sequence not found"},
    {"two_documents", head + "---\nname: other\n", "", 4, 1, "only one YAML document"},
    {"empty", "# nothing here\n", "", 1, 1, "the definition is empty"},
    {"not_a_mapping", "- name: vm\n", "", 1, 1, "expected a mapping, got a list"},

    // Keys.
    {"unknown_top_key", head + "memroy: 1G\n", "memroy", 3, 1,
     "unknown key 'memroy' (did you mean 'memory'?)"},
    {"unknown_key_lists_keys", head + "flavour: large\n", "flavour", 3, 1,
     "unknown key 'flavour' (expected one of: name, machine, accel,"},
    {"unknown_disk_key", head + "disks:\n  - name: system\n    file: system.qcow2\n    sise: 1G\n",
     "disks[0].sise", 6, 5, "unknown key 'sise' (did you mean 'size'?)"},
    {"duplicate_key", head + "cpus: 1\ncpus: 2\n", "cpus", 4, 1,
     "duplicate key (first given on line 3)"},
    {"missing_name", "kernel: vmlinuz\ncpus: 1\n", "name", 1, 1, "required field is missing"},
    {"disk_missing_file", head + "disks:\n  - name: a\n", "disks[0].file", 4, 5,
     "required field is missing"},
    {"missing_guest_port", head + "network:\n  forwards:\n    - {host_port: 2222}\n",
     "network.forwards[0].guest_port", 5, 7, "required field is missing"},

    // Types.
    {"name_list", "name: [vm]\nkernel: vmlinuz\n", "name", 1, 7, "expected a string, got a list"},
    {"cpus_word", head + "cpus: two\n", "cpus", 3, 7, "expected an integer, got 'two'"},
    {"cpus_list", head + "cpus: [1]\n", "cpus", 3, 7, "expected an integer, got a list"},
    {"cpus_quoted", head + "cpus: \"2\"\n", "cpus", 3, 7, "expected an integer, got the string"},
    {"cpus_range", head + "cpus: 256\n", "cpus", 3, 7, "must be between 1 and 255, got 256"},
    {"bool_yes", head + "command_channel: yes\n", "command_channel", 3, 18,
     "expected true or false, got 'yes'"},
    {"serial_log_on", head + "serial:\n  log: on\n", "serial.log", 4, 8,
     "quote it if it is a path"},
    {"disks_not_list", head + "disks: {name: a}\n", "disks", 3, 8,
     "expected a list of disks, got a mapping"},
    {"disk_not_mapping", head + "disks:\n  - system.qcow2\n", "disks[0]", 4, 5,
     "expected a mapping, got a scalar"},
    {"extra_args_scalar", head + "extra_args: -rtc\n", "extra_args", 3, 13,
     "expected a list of strings, got a scalar"},
    {"port_range", head + "network:\n  forwards:\n    - {host_port: 70000, guest_port: 22}\n",
     "network.forwards[0].host_port", 5, 19, "must be between 1 and 65535, got 70000"},

    // Enumerations and sizes.
    {"bad_machine", head + "machine: virt\n", "machine", 3, 10,
     "unknown machine type 'virt' (expected q35, pc or microvm)"},
    {"bad_accel", head + "accel: hvf\n", "accel", 3, 8,
     "unknown accelerator 'hvf' (expected auto, kvm or tcg)"},
    {"bad_cache", head + "disks:\n  - name: a\n    file: system.qcow2\n    cache: fast\n",
     "disks[0].cache", 6, 12,
     "unknown cache mode 'fast' (expected writeback, none, writethrough, directsync or unsafe)"},
    {"bad_bus", head + "disks:\n  - name: a\n    file: system.qcow2\n    bus: usb\n",
     "disks[0].bus", 6, 10, "unknown disk bus 'usb' (expected virtio, scsi or ide)"},
    {"bad_protocol",
     head + "network:\n  forwards:\n    - {protocol: sctp, host_port: 1, guest_port: 1}\n",
     "network.forwards[0].protocol", 5, 18, "unknown protocol 'sctp' (expected tcp or udp)"},
    {"memory_unit", head + "memory: 12QB\n", "memory", 3, 9,
     "invalid size '12QB': unknown unit 'QB'"},
    {"memory_small", head + "memory: 8M\n", "memory", 3, 9, "must be at least 16M, got 8M"},
    {"memory_not_mib", head + "memory: 17000K\n", "memory", 3, 9, "must be a whole number of MiB"},
    {"disk_size_sector", head + "disks:\n  - {name: a, file: new.qcow2, size: 1000}\n",
     "disks[0].size", 4, 38, "must be a multiple of 512 bytes"},

    // Paths.
    {"unset_variable", "name: vm\nkernel: ${QMPKIT_TEST_UNSET}/vmlinuz\n", "kernel", 2, 9,
     "environment variable QMPKIT_TEST_UNSET is not set"},
    {"bad_variable_name", "name: vm\nkernel: ${1X}/vmlinuz\n", "kernel", 2, 9,
     "invalid variable name '${1X}'"},
    {"missing_kernel", "name: vm\nkernel: nope/vmlinuz\n", "kernel", 2, 9, "file not found"},
    {"uncreatable_disk", head + "disks:\n  - {name: a, file: missing.qcow2}\n", "disks[0].file", 4,
     21, "does not exist and cannot be created without a size"},
    {"missing_backing", head + "disks:\n  - {name: a, file: new.qcow2, backing: nope.qcow2}\n",
     "disks[0].backing", 4, 41, "file not found"},
    {"serial_log_dir", head + "serial:\n  log: nodir/serial.log\n", "serial.log", 4, 8,
     "directory not found"},

    // Names.
    {"bad_name", "name: -vm\nkernel: vmlinuz\n", "name", 1, 7, "invalid name '-vm'"},
    {"bad_disk_name", head + "disks:\n  - {name: 1disk, file: system.qcow2}\n", "disks[0].name", 4,
     12, "invalid disk name '1disk'"},
    {"duplicate_disk_name",
     head + "disks:\n  - {name: a, file: system.qcow2}\n  - {name: a, file: b.qcow2, size: 1M}\n",
     "disks[1].name", 5, 12, "disk name 'a' is also used by disks[0]"},
    {"duplicate_node_name",
     head + "disks:\n  - {name: a, file: system.qcow2}\n"
            "  - {name: b, file: b.qcow2, size: 1M, node_name: a}\n",
     "disks[1].node_name", 5, 51, "block node name 'a' is also used by disks[0]"},
    {"node_name_hits_protocol_node",
     head + "disks:\n  - {name: a, file: system.qcow2, node_name: x}\n"
            "  - {name: b, file: b.qcow2, size: 1M, node_name: x-file}\n",
     "disks[1].node_name", 5, 51, "block node name 'x-file' is also used by disks[0]"},
    {"long_node_name",
     head + "disks:\n  - {name: a, file: system.qcow2, node_name: abcdefghijklmnopqrstuvwxyz0}\n",
     "disks[0].node_name", 4, 46, "invalid node name 'abcdefghijklmnopqrstuvwxyz0': use up to 26"},
    {"same_image_twice",
     head + "disks:\n  - {name: a, file: system.qcow2}\n  - {name: b, file: ./system.qcow2}\n",
     "disks[1].file", 5, 21, "is also used by disks[0]"},

    // Combinations.
    {"raw_backing",
     head + "disks:\n  - name: a\n    file: a.img\n    format: raw\n    size: 1M\n"
            "    backing: base.qcow2\n",
     "disks[0].backing", 8, 14, "only qcow2 images can have a backing file"},
    {"read_only_with_size",
     head + "disks:\n  - name: a\n    file: system.qcow2\n    read_only: true\n    size: 1M\n",
     "disks[0].size", 7, 11, "a read-only disk is never created"},
    {"ide_read_only",
     head + "disks:\n  - {name: a, file: system.qcow2, bus: ide, read_only: true}\n",
     "disks[0].read_only", 4, 56, "ide disks cannot be read-only"},
    {"microvm_scsi",
     head + "machine: microvm\ndisks:\n  - {name: a, file: system.qcow2, bus: scsi}\n",
     "disks[0].bus", 5, 40, "microvm supports only virtio disks"},
    {"microvm_vmgenid", head + "machine: microvm\nvmgenid: true\n", "vmgenid", 4, 10, "needs ACPI"},
    {"bad_firmware", head + "firmware: efi\n", "firmware", 3, 11,
     "unknown firmware 'efi' (expected bios or uefi)"},
    {"nvram_with_bios", head + "nvram: vars.qcow2\n", "nvram", 3, 8,
     "only a VM with firmware: uefi has a variable store"},
    {"uefi_without_a_place_for_nvram", head + "firmware: uefi\n", "firmware", 3, 11,
     "say where the UEFI variable store is kept"},
    {"microvm_uefi", head + "machine: microvm\nfirmware: uefi\nnvram: vars.qcow2\n", "firmware", 4,
     11, "microvm has no flash for UEFI firmware"},
    {"disk_named_nvram",
     "name: vm\nfirmware: uefi\ndisks:\n  - {name: nvram, file: system.qcow2}\n", "disks[0].name",
     4, 12, "disk name 'nvram' is also used by the UEFI variable store"},
    {"cloud_init_root_user", head + "cloud_init: {user: root}\n", "cloud_init.user", 3, 20,
     "invalid user name 'root'"},
    {"cloud_init_bad_hostname", head + "cloud_init:\n  hostname: -web-\n", "cloud_init.hostname", 4,
     13, "invalid host name '-web-'"},
    {"cloud_init_bad_key", head + "cloud_init:\n  ssh_authorized_keys: [AAAAC3Nza]\n",
     "cloud_init.ssh_authorized_keys[0]", 4, 25, "expected one public key line"},
    {"cloud_init_unknown_key", head + "cloud_init: {users: [a]}\n", "cloud_init.users", 3, 14,
     "unknown key 'users'"},
    {"cloud_init_missing_user_data", head + "cloud_init: {user_data: nope.yaml}\n",
     "cloud_init.user_data", 3, 25, "file not found"},
    {"cloud_init_not_a_map", head + "cloud_init: yes\n", "cloud_init", 3, 13, "expected a map"},
    {"share_bad_tag", head + "shares:\n  - {tag: 'a b', path: .}\n", "shares[0].tag", 4, 11,
     "invalid tag 'a b'"},
    {"share_same_tag", head + "shares:\n  - {tag: d, path: .}\n  - {tag: d, path: .}\n",
     "shares[1].tag", 5, 11, "tag 'd' is also shares[0]'s"},
    {"share_without_path", head + "shares:\n  - {tag: d}\n", "shares[0].path", 4, 5,
     "required field is missing"},
    {"share_missing_directory", head + "shares:\n  - {tag: d, path: nope}\n", "shares[0].path", 4,
     20, "directory not found"},
    {"share_of_a_file", head + "shares:\n  - {tag: d, path: vmlinuz}\n", "shares[0].path", 4, 20,
     "not a directory"},
    {"share_mount_relative", head + "cloud_init: {}\nshares:\n  - {tag: d, path: ., mount: mnt}\n",
     "shares[0].mount", 5, 30, "'mnt' is not a guest directory"},
    {"share_mount_without_cloud_init", head + "shares:\n  - {tag: d, path: ., mount: /mnt}\n",
     "shares[0].mount", 4, 30, "needs a cloud_init: section"},
    {"disk_named_cidata",
     "name: vm\ncloud_init: {}\ndisks:\n  - {name: cidata, file: system.qcow2}\n", "disks[0].name",
     4, 12, "disk name 'cidata' is also used by the cloud-init seed"},
    {"auto_port_as_text", head + "network:\n  forwards: [{host_port: automatic, guest_port: 22}]\n",
     "network.forwards[0].host_port", 4, 26, "automatic"},
    {"too_many_ide",
     "name: vm\nmachine: pc\nboot: disk\ndisks:\n"
     "  - {name: d1, file: d1.qcow2, size: 1M, bus: ide}\n"
     "  - {name: d2, file: d2.qcow2, size: 1M, bus: ide}\n"
     "  - {name: d3, file: d3.qcow2, size: 1M, bus: ide}\n"
     "  - {name: d4, file: d4.qcow2, size: 1M, bus: ide}\n"
     "  - {name: d5, file: d5.qcow2, size: 1M, bus: ide}\n",
     "disks[4].bus", 9, 47, "too many ide disks: pc has 4 ide slots"},
    {"disk_boot_without_disks", "name: vm\nboot: disk\n", "boot", 2, 7,
     "disk boot needs at least one disk"},
    {"kernel_boot_without_kernel",
     "name: vm\nboot: kernel\ndisks:\n  - {name: a, file: system.qcow2}\n", "boot", 2, 7,
     "kernel boot needs a kernel"},
    {"kernel_with_disk_boot", head + "boot: disk\ndisks:\n  - {name: a, file: system.qcow2}\n",
     "boot", 3, 7, "disk boot does not use kernel, initrd or append"},
    {"initrd_without_kernel",
     "name: vm\ninitrd: initrd.img\ndisks:\n  - {name: a, file: system.qcow2}\n", "initrd", 2, 9,
     "needs a kernel"},

    // Security.
    {"sandbox_word", head + "security:\n  sandbox: off\n", "security.sandbox", 4, 12,
     "expected true or false, got 'off'"},
    {"run_as_typo", head + "security:\n  runas: nobody\n", "security.runas", 4, 3,
     "unknown key 'runas' (did you mean 'run_as'?)"},
    {"run_as_empty", head + "security: {run_as: \"\"}\n", "security.run_as", 3, 20,
     "must not be empty"},
    {"run_as_bad_name", head + "security: {run_as: \"nobody:nogroup\"}\n", "security.run_as", 3, 20,
     "invalid user name 'nobody:nogroup'"},
    {"run_as_unknown_user", head + "security: {run_as: qmpkit-no-such-user}\n", "security.run_as",
     3, 20, "no such user 'qmpkit-no-such-user' on this host"},
    {"run_as_with_standby_reset", head + "reset: {strategy: standby}\nsecurity: {run_as: nobody}\n",
     "security.run_as", 4, 20, "reset.strategy standby does not work with run_as"},
    {"run_as_root", head + "security: {run_as: root}\n", "security.run_as", 3, 20,
     "'root' is uid 0"},

    // Encryption.
    {"encryption_raw",
     head + "disks:\n  - name: a\n    file: a.img\n    format: raw\n    size: 1M\n"
            "    encryption: {key_file: key}\n",
     "disks[0].encryption", 8, 17, "only qcow2 images can be encrypted"},
    {"encryption_with_template_reset",
     head + "reset: {strategy: template}\ndisks:\n  - name: a\n    file: system.qcow2\n"
            "    encryption: {key_file: key}\n",
     "disks[0].encryption", 7, 17, "reset.strategy template does not support encrypted disks"},
    {"encryption_without_key",
     head + "disks:\n  - name: a\n    file: system.qcow2\n    encryption: {format: luks}\n",
     "disks[0].encryption.key_file", 6, 17, "required field is missing"},
    {"encryption_format",
     head + "disks:\n  - name: a\n    file: system.qcow2\n"
            "    encryption: {format: aes, key_file: key}\n",
     "disks[0].encryption.format", 6, 26, "unknown encryption format 'aes' (expected luks)"},
    {"encryption_key_typo",
     head + "disks:\n  - name: a\n    file: system.qcow2\n    encryption: {keyfile: key, key_file: "
            "key}\n",
     "disks[0].encryption.keyfile", 6, 18, "unknown key 'keyfile' (did you mean 'key_file'?)"},
    {"key_file_missing",
     head + "disks:\n  - name: a\n    file: system.qcow2\n    encryption: {key_file: nokey}\n",
     "disks[0].encryption.key_file", 6, 28, "cannot read key file"},
    {"key_file_readable_by_others",
     head + "disks:\n  - name: a\n    file: system.qcow2\n    encryption: {key_file: open.key}\n",
     "disks[0].encryption.key_file", 6, 28, "is accessible to other users (mode 0644): chmod 600"},
    {"key_file_empty",
     head + "disks:\n  - name: a\n    file: system.qcow2\n    encryption: {key_file: empty.key}\n",
     "disks[0].encryption.key_file", 6, 28, "is empty"},
    {"key_file_directory",
     head + "disks:\n  - name: a\n    file: system.qcow2\n    encryption: {key_file: keys}\n",
     "disks[0].encryption.key_file", 6, 28, "not a regular file"},

    // Network.
    {"bad_mac", head + "network:\n  mac: \"52:54:00:zz:00:01\"\n", "network.mac", 4, 8,
     "invalid MAC address '52:54:00:zz:00:01'"},
    {"multicast_mac", head + "network: {mac: \"01:00:5e:00:00:01\"}\n", "network.mac", 3, 16,
     "is a multicast address"},
    {"bad_host_addr",
     head + "network:\n  forwards:\n    - {host_addr: localhost, host_port: 2222, guest_port: "
            "22}\n",
     "network.forwards[0].host_addr", 5, 19, "invalid IPv4 address 'localhost'"},
    {"duplicate_forward",
     head + "network:\n  forwards:\n    - {host_port: 2222, guest_port: 22}\n"
            "    - {host_port: 2222, guest_port: 23}\n",
     "network.forwards[1].host_port", 6, 19,
     "tcp 127.0.0.1:2222 is already forwarded by network.forwards[0]"},
};

class bad_definition : public testing::TestWithParam<bad_case> {
protected:
    static void SetUpTestSuite() {
        dir_ = std::make_unique<test::temp_dir>();
        dir_->write("vmlinuz");
        dir_->write("initrd.img");
        dir_->write("system.qcow2");
        dir_->write("base.qcow2");
        std::filesystem::permissions(dir_->write("key", "secret"),
                                     std::filesystem::perms::owner_read |
                                         std::filesystem::perms::owner_write);
        std::filesystem::permissions(dir_->write("open.key", "secret"),
                                     std::filesystem::perms(0644));
        std::filesystem::permissions(dir_->write("empty.key", ""),
                                     std::filesystem::perms::owner_read);
        std::filesystem::create_directory(*dir_ / "keys");
    }
    static void TearDownTestSuite() { dir_.reset(); }

    static std::unique_ptr<test::temp_dir> dir_;
};

std::unique_ptr<test::temp_dir> bad_definition::dir_;

TEST_P(bad_definition, is_reported_at_its_field) {
    const auto& c = GetParam();
    test::scoped_env unset("QMPKIT_TEST_UNSET", std::nullopt);
    auto origin = dir_->path() / "vm.yaml";
    auto problems = test::problems_of(c.yaml, origin);
    ASSERT_EQ(problems.size(), 1u) << c.yaml;
    const auto& d = problems[0];
    EXPECT_EQ(d.file, origin.string());
    EXPECT_EQ(d.field, c.field);
    EXPECT_EQ(d.line, c.line);
    EXPECT_EQ(d.column, c.column);
    EXPECT_NE(d.message.find(c.fragment), std::string::npos) << d.message;
}

INSTANTIATE_TEST_SUITE_P(table, bad_definition, testing::ValuesIn(bad_cases),
                         [](const auto& info) { return std::string(info.param.id); });

TEST(bad_definitions, every_problem_is_reported_one_per_line) {
    auto yaml = R"(name: vm
cpus: zero
memory: 12QB
disks:
  - {name: a, file: a.qcow2, cache: fast, bus: usb}
turbo: true
)";
    try {
        load_definition_from_string(yaml, "/defs/vm.yaml");
        FAIL() << "no error";
    } catch (const error& e) {
        ASSERT_EQ(e.diagnostics().size(), 5u);
        EXPECT_EQ(std::string(e.what()),
                  "/defs/vm.yaml:2:7: cpus: expected an integer, got 'zero'\n"
                  "/defs/vm.yaml:3:9: memory: invalid size '12QB': unknown unit 'QB' (use K, M, "
                  "G or T, optionally followed by i, iB or B)\n"
                  "/defs/vm.yaml:5:37: disks[0].cache: unknown cache mode 'fast' (expected "
                  "writeback, none, writethrough, directsync or unsafe)\n"
                  "/defs/vm.yaml:5:48: disks[0].bus: unknown disk bus 'usb' (expected virtio, "
                  "scsi or ide)\n"
                  "/defs/vm.yaml:6:1: turbo: unknown key 'turbo' (expected one of: name, "
                  "machine, accel, cpus, memory, kernel, initrd, append, boot, firmware, nvram, "
                  "command_channel, "
                  "guest_agent, vmgenid, disks, serial, network, cloud_init, shares, extra_args, "
                  "reset, security)");
    }
}

TEST(bad_definitions, validation_reports_every_problem_in_file_order) {
    auto def = load_definition_from_string(R"(name: "bad name"
cpus: 1
memory: 8M
disks:
  - {name: a, file: /a.qcow2, format: raw, backing: /b.qcow2}
  - {name: a, file: /c.qcow2}
)",
                                           "/defs/vm.yaml");
    def.cpus = 0; // the loader refuses 0; a definition built in code can still hold it
    auto problems = check_definition(def, {.check_files = false});
    ASSERT_EQ(problems.size(), 5u);
    EXPECT_EQ(problems[0].field, "name");
    EXPECT_EQ(problems[1].field, "cpus");
    EXPECT_EQ(problems[2].field, "memory");
    EXPECT_EQ(problems[3].field, "disks[0].backing");
    EXPECT_EQ(problems[4].field, "disks[1].name");
    EXPECT_THROW(validate_definition(def, {.check_files = false}), error);
}

// Found by fuzzing (tests/fuzz/corpus/definition_loader/regression-invalid-utf8): bytes that are
// not UTF-8 loaded, and dump_definition wrote them back as U+FFFD, another definition.
TEST(bad_definitions, invalid_utf8_is_refused_with_its_position) {
    try {
        load_definition_from_string("name: vm\nkernel: /k\nextra_args: [\"ok\", tr\xc3ue]\n"
                                    "serial: {log: \"/logs/\xed\xa0\x80.log\"}\n",
                                    "/defs/vm.yaml");
        FAIL() << "no error";
    } catch (const error& e) {
        EXPECT_EQ(std::string(e.what()),
                  "/defs/vm.yaml:3:20: extra_args[1]: is not valid UTF-8 (at byte 2)\n"
                  "/defs/vm.yaml:4:15: serial.log: is not valid UTF-8 (at byte 6)");
    }
    EXPECT_EQ(load_definition_from_string("name: \"v\xc3\xbc\xf0\x9f\x98\x80\"\nkernel: /k\n",
                                          "/defs/vm.yaml")
                  .name,
              "v\xc3\xbc\xf0\x9f\x98\x80");
}

// Found by fuzzing (tests/fuzz/corpus/definition_loader/regression-stray-comma): a stray ','
// made yaml-cpp 0.7's LoadAll loop forever, allocating without end.
TEST(bad_definitions, stray_comma_is_a_syntax_error_not_a_hang) {
    const std::pair<std::string, std::string> cases[] = {
        {",", "1:1: unexpected ','"},
        {"name: vm\nkernel: /k\n---\n,\n", "4:1: unexpected ','"},
        {"name: vm\nkernel: /k\n,\n", "3:1: end of map not found"},
    };
    for (const auto& [yaml, expected] : cases) {
        try {
            load_definition_from_string(yaml, "/defs/vm.yaml");
            FAIL() << "no error for " << yaml;
        } catch (const error& e) {
            EXPECT_EQ(std::string(e.what()), "/defs/vm.yaml:" + expected);
        }
    }
}

} // namespace
} // namespace qmpkit::launcher
