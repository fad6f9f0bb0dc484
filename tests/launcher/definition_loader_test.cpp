#include "launcher/test_support.hpp"

#include <qmpkit/launcher/definition_loader.hpp>
#include <qmpkit/launcher/definition_validator.hpp>
#include <qmpkit/launcher/error.hpp>

#include <gtest/gtest.h>

namespace qmpkit::launcher {
namespace {

namespace fs = std::filesystem;
using test::scoped_env;
using test::temp_dir;

TEST(definition_loader, fills_in_defaults) {
    auto def = load_definition_from_string("name: vm\n", "/defs/vm.yaml");
    EXPECT_EQ(def.name, "vm");
    EXPECT_EQ(def.machine, machine_type::q35);
    EXPECT_EQ(def.accel, accel_mode::automatic);
    EXPECT_EQ(def.cpus, 1);
    EXPECT_EQ(def.memory, 256 * mib);
    EXPECT_FALSE(def.kernel);
    EXPECT_FALSE(def.initrd);
    EXPECT_FALSE(def.append);
    EXPECT_EQ(def.boot, boot_mode::disk);
    EXPECT_FALSE(def.command_channel);
    EXPECT_FALSE(def.guest_agent);
    EXPECT_TRUE(def.disks.empty());
    EXPECT_TRUE(def.serial.log);
    EXPECT_TRUE(def.serial.log_file.empty());
    EXPECT_TRUE(def.serial.socket);
    EXPECT_FALSE(def.network);
    EXPECT_TRUE(def.extra_args.empty());
}

TEST(definition_loader, fills_in_disk_and_network_defaults) {
    auto def = load_definition_from_string(R"(name: vm
kernel: /boot/vmlinuz
disks:
  - {name: system, file: /images/system.qcow2}
network:
  forwards:
    - {host_port: 2222, guest_port: 22}
)",
                                           "/defs/vm.yaml");
    EXPECT_EQ(def.boot, boot_mode::kernel);
    ASSERT_EQ(def.disks.size(), 1u);
    const auto& disk = def.disks[0];
    EXPECT_EQ(disk.format, disk_format::qcow2);
    EXPECT_EQ(disk.bus, disk_bus::virtio);
    EXPECT_EQ(disk.cache, cache_mode::writeback);
    EXPECT_FALSE(disk.read_only);
    EXPECT_FALSE(disk.size);
    EXPECT_FALSE(disk.backing);
    EXPECT_EQ(disk.node_name, "system");
    ASSERT_TRUE(def.network);
    EXPECT_EQ(def.network->mode, network_mode::user);
    EXPECT_EQ(def.network->mac, default_mac_address("vm"));
    ASSERT_EQ(def.network->forwards.size(), 1u);
    EXPECT_EQ(def.network->forwards[0],
              (port_forward{forward_protocol::tcp, "127.0.0.1", 2222, 22}));
}

TEST(definition_loader, reads_every_field) {
    auto def = load_definition_from_string(R"(name: full
machine: microvm
accel: tcg
cpus: 4
memory: 1.5G
kernel: /k
initrd: /i
append: "console=ttyS0"
boot: kernel
command_channel: true
guest_agent: true
disks:
  - name: system
    file: /s.qcow2
    format: qcow2
    size: 1GiB
    backing: /base.qcow2
    bus: virtio
    read_only: false
    cache: unsafe
    node_name: sys.node
    encryption:
      format: luks
      key_file: keys/system.key
serial:
  log: /logs/full.log
  socket: false
network:
  mode: user
  forwards:
    - {protocol: udp, host_addr: 0.0.0.0, host_port: 5353, guest_port: 53}
  mac: "52:54:00:AB:cd:01"
extra_args: ["-rtc", "base=utc", 7]
security:
  sandbox: false
  run_as: qemu-vm
)",
                                           "/defs/full.yaml");
    EXPECT_EQ(def.machine, machine_type::microvm);
    EXPECT_EQ(def.accel, accel_mode::tcg);
    EXPECT_EQ(def.cpus, 4);
    EXPECT_EQ(def.memory, 1536 * mib);
    EXPECT_EQ(def.kernel, fs::path("/k"));
    EXPECT_EQ(def.initrd, fs::path("/i"));
    EXPECT_EQ(def.append, "console=ttyS0");
    EXPECT_TRUE(def.command_channel);
    EXPECT_TRUE(def.guest_agent);
    EXPECT_EQ(
        def.disks[0],
        (disk_definition{"system", "/s.qcow2", disk_format::qcow2, gib, fs::path("/base.qcow2"),
                         disk_bus::virtio, false, cache_mode::unsafe, "sys.node",
                         disk_encryption{encryption_format::luks, "/defs/keys/system.key"}}));
    EXPECT_EQ(def.serial, (serial_definition{true, "/logs/full.log", false}));
    EXPECT_EQ(def.network->forwards[0], (port_forward{forward_protocol::udp, "0.0.0.0", 5353, 53}));
    EXPECT_EQ(def.network->mac, "52:54:00:AB:cd:01");
    EXPECT_EQ(def.extra_args, (std::vector<std::string>{"-rtc", "base=utc", "7"}));
    EXPECT_EQ(def.security, (security_definition{false, "qemu-vm"}));
}

TEST(definition_loader, security_defaults_to_the_sandbox_and_qmpkits_user) {
    auto def = load_definition_from_string("name: vm\n", "/defs/vm.yaml");
    EXPECT_TRUE(def.security.sandbox);
    EXPECT_EQ(def.security.run_as, "");
    def = load_definition_from_string("name: vm\nsecurity: {run_as: nobody}\n", "/defs/vm.yaml");
    EXPECT_TRUE(def.security.sandbox);
    EXPECT_EQ(def.security.run_as, "nobody");
}

TEST(definition_loader, resolves_relative_paths_against_the_file) {
    auto def = load_definition_from_string(R"(name: vm
kernel: ../guest/vmlinuz
initrd: ./initrd.img
disks:
  - {name: a, file: images/a.qcow2, backing: ../base/./b.qcow2}
  - {name: b, file: /abs/b.qcow2}
serial: {log: logs/serial.log}
)",
                                           "/work/defs/vm.yaml");
    EXPECT_EQ(def.kernel, fs::path("/work/guest/vmlinuz"));
    EXPECT_EQ(def.initrd, fs::path("/work/defs/initrd.img"));
    EXPECT_EQ(def.disks[0].file, fs::path("/work/defs/images/a.qcow2"));
    EXPECT_EQ(def.disks[0].backing, fs::path("/work/base/b.qcow2"));
    EXPECT_EQ(def.disks[1].file, fs::path("/abs/b.qcow2"));
    EXPECT_EQ(def.serial.log_file, fs::path("/work/defs/logs/serial.log"));
}

TEST(definition_loader, a_relative_origin_is_taken_from_the_working_directory) {
    auto def = load_definition_from_string("name: vm\nkernel: vmlinuz\n", "defs/vm.yaml");
    EXPECT_EQ(def.kernel, fs::current_path() / "defs/vmlinuz");
    EXPECT_EQ(def.sources.file(), "defs/vm.yaml");
}

TEST(definition_loader, expands_environment_variables_in_paths) {
    scoped_env images("QMPKIT_TEST_IMAGES", "/srv/images");
    scoped_env empty("QMPKIT_TEST_EMPTY", "");
    auto def = load_definition_from_string(R"(name: vm
kernel: ${QMPKIT_TEST_IMAGES}/vmlinuz
disks:
  - {name: a, file: "${QMPKIT_TEST_IMAGES}/a${QMPKIT_TEST_EMPTY}.qcow2"}
  - {name: b, file: "rel/$HOME/$$x/cost$"}
append: "${QMPKIT_TEST_IMAGES} is not a path"
)",
                                           "/defs/vm.yaml");
    EXPECT_EQ(def.kernel, fs::path("/srv/images/vmlinuz"));
    EXPECT_EQ(def.disks[0].file, fs::path("/srv/images/a.qcow2"));
    // Only ${NAME} expands; "$$" is a literal dollar.
    EXPECT_EQ(def.disks[1].file, fs::path("/defs/rel/$HOME/$x/cost$"));
    EXPECT_EQ(def.append, "${QMPKIT_TEST_IMAGES} is not a path");
}

TEST(definition_loader, records_where_fields_were_written) {
    auto def = load_definition_from_string(R"(name: vm
memory: 512M
disks:
  - name: a
    file: /a.qcow2
  - {name: b, file: /b.qcow2, bus: scsi}
kernel:
)",
                                           "/defs/vm.yaml");
    const auto& s = def.sources;
    EXPECT_EQ(s.locate(""), (source_location{"/defs/vm.yaml", 1, 1}));
    EXPECT_EQ(s.locate("memory"), (source_location{"/defs/vm.yaml", 2, 9}));
    EXPECT_EQ(s.locate("disks"), (source_location{"/defs/vm.yaml", 4, 3}));
    EXPECT_EQ(s.locate("disks[0]"), (source_location{"/defs/vm.yaml", 4, 5}));
    EXPECT_EQ(s.locate("disks[0].file"), (source_location{"/defs/vm.yaml", 5, 11}));
    EXPECT_EQ(s.locate("disks[1].bus"), (source_location{"/defs/vm.yaml", 6, 36}));
    EXPECT_EQ(s.locate("disks[1].format"), (source_location{"/defs/vm.yaml", 6, 5}));
    // An empty value is placed at its key, not at the next token yaml-cpp would point to.
    EXPECT_EQ(s.locate("kernel"), (source_location{"/defs/vm.yaml", 7, 1}));
    EXPECT_FALSE(def.kernel);
}

TEST(definition_loader, null_values_mean_the_default) {
    auto def = load_definition_from_string("name: vm\nmachine: ~\ndisks:\nnetwork: null\n",
                                           "/defs/vm.yaml");
    EXPECT_EQ(def.machine, machine_type::q35);
    EXPECT_TRUE(def.disks.empty());
    EXPECT_FALSE(def.network);
}

TEST(definition_loader, quoted_log_word_is_a_path) {
    auto def = load_definition_from_string("name: vm\nserial: {log: \"yes\"}\n", "/d/vm.yaml");
    EXPECT_EQ(def.serial.log_file, fs::path("/d/yes"));
    def = load_definition_from_string("name: vm\nserial: {log: false}\n", "/d/vm.yaml");
    EXPECT_FALSE(def.serial.log);
}

TEST(definition_loader, loads_from_a_file) {
    temp_dir dir;
    auto file = dir.write("vm.yaml", "name: vm\ndisks:\n  - {name: a, file: a.qcow2}\n");
    auto def = load_definition(file);
    EXPECT_EQ(def.disks[0].file, dir.path() / "a.qcow2");
    EXPECT_EQ(def.sources.file(), file.string());
}

TEST(definition_loader, reports_an_unreadable_file) {
    temp_dir dir;
    try {
        load_definition(dir / "missing.yaml");
        FAIL() << "no error";
    } catch (const error& e) {
        ASSERT_EQ(e.diagnostics().size(), 1u);
        EXPECT_EQ(e.diagnostics()[0].file, (dir / "missing.yaml").string());
        EXPECT_NE(std::string(e.what()).find("cannot read the definition"), std::string::npos);
    }
}

TEST(definition_loader, reports_a_directory) {
    temp_dir dir;
    EXPECT_THROW(load_definition(dir.path()), error);
}

TEST(definition_loader, loading_creates_nothing) {
    temp_dir dir;
    auto file = dir.write("vm.yaml", R"(name: vm
disks:
  - {name: a, file: images/a.qcow2, size: 1G}
serial: {log: serial.log}
)");
    auto def = load_definition(file);
    validate_definition(def);
    EXPECT_EQ(std::distance(fs::directory_iterator(dir.path()), fs::directory_iterator()), 1);
}

void expect_round_trip(const vm_definition& def) {
    auto text = dump_definition(def);
    SCOPED_TRACE(text);
    auto again = load_definition_from_string(text, "/elsewhere/state/definition.yaml");
    EXPECT_EQ(again, def);
    EXPECT_EQ(dump_definition(again), text);
}

TEST(definition_loader, dump_loads_back_equal) {
    expect_round_trip(load_definition_from_string("name: vm\n", "/defs/vm.yaml"));
    expect_round_trip(load_definition_from_string(R"(name: full
machine: microvm
accel: kvm
cpus: 3
memory: 1.5G
kernel: "/boot/vm linuz,1"
initrd: /boot/initrd
append: 'console=ttyS0 quote=" back\slash'
command_channel: true
guest_agent: true
disks:
  - {name: system, file: "/images/$${x}.qcow2", size: 1000, backing: /base.qcow2,
     cache: none, node_name: sys, encryption: {key_file: "/keys/$${k}"}}
  - {name: iso, file: /images/iso.raw, format: raw, read_only: true, bus: scsi, cache: directsync}
serial: {log: "/logs/ü.log", socket: false}
network:
  forwards:
    - {host_port: 2222, guest_port: 22}
    - {protocol: udp, host_addr: 0.0.0.0, host_port: 5353, guest_port: 53}
extra_args: ["-rtc", "base=utc", "true", "", "a: b", "#x"]
security: {sandbox: false, run_as: "true"}
)",
                                                  "/defs/full.yaml"));
}

TEST(definition_loader, uefi_keeps_its_variable_store_beside_the_first_disk) {
    auto def = load_definition_from_string(R"(name: deb
firmware: uefi
disks:
  - {name: system, file: images/deb.qcow2}
  - {name: data, file: /data/deb-data.qcow2, size: 1G}
)",
                                           "/defs/deb.yaml");
    EXPECT_EQ(def.firmware, firmware_type::uefi);
    ASSERT_EQ(def.disks.size(), 3u);
    const auto* nvram = nvram_disk(def);
    ASSERT_EQ(nvram, &def.disks.back());
    EXPECT_EQ(nvram->name, "nvram");
    EXPECT_EQ(nvram->node_name, "nvram");
    EXPECT_EQ(nvram->file, fs::path("/defs/images/deb-nvram.qcow2"));
    EXPECT_EQ(nvram->format, disk_format::qcow2);
    EXPECT_EQ(nvram->bus, disk_bus::pflash);
    expect_round_trip(def);

    auto named = load_definition_from_string(
        "name: deb\nfirmware: uefi\nnvram: vars/deb.qcow2\nboot: disk\n", "/defs/deb.yaml");
    ASSERT_NE(nvram_disk(named), nullptr);
    EXPECT_EQ(nvram_disk(named)->file, fs::path("/defs/vars/deb.qcow2"));
    expect_round_trip(named);

    EXPECT_EQ(nvram_disk(load_definition_from_string("name: vm\n", "/defs/vm.yaml")), nullptr);
}

TEST(definition_loader, cloud_init_defaults_to_the_qmpkit_user_and_the_vms_name) {
    auto def = load_definition_from_string("name: web-1\nboot: disk\ncloud_init: {}\n"
                                           "disks: [{name: system, file: s.qcow2}]\n",
                                           "/defs/web.yaml");
    ASSERT_TRUE(def.cloud_init);
    EXPECT_EQ(def.cloud_init->user, "qmpkit");
    EXPECT_EQ(def.cloud_init->hostname, "web-1");
    EXPECT_TRUE(def.cloud_init->ssh_authorized_keys.empty());
    EXPECT_FALSE(def.cloud_init->user_data);
    expect_round_trip(def);
    EXPECT_FALSE(load_definition_from_string("name: vm\n", "/defs/vm.yaml").cloud_init);
}

TEST(definition_loader, cloud_init_reads_every_field_with_paths_beside_the_file) {
    auto def = load_definition_from_string(R"(name: web
boot: disk
disks: [{name: system, file: s.qcow2}]
network:
  forwards:
    - {host_port: auto, guest_port: 22}
    - {host_port: 8080, guest_port: 80}
cloud_init:
  user: ops
  hostname: web.lab.example
  ssh_authorized_keys: ["ssh-ed25519 AAAAC3Nza me@host"]
  user_data: seed/user-data.yaml
  network_config: /etc/lab/net.yaml
)",
                                           "/defs/web.yaml");
    ASSERT_TRUE(def.cloud_init);
    EXPECT_EQ(def.cloud_init->user, "ops");
    EXPECT_EQ(def.cloud_init->hostname, "web.lab.example");
    EXPECT_EQ(def.cloud_init->ssh_authorized_keys,
              std::vector<std::string>{"ssh-ed25519 AAAAC3Nza me@host"});
    EXPECT_EQ(def.cloud_init->user_data, fs::path("/defs/seed/user-data.yaml"));
    EXPECT_EQ(def.cloud_init->network_config, fs::path("/etc/lab/net.yaml"));
    ASSERT_TRUE(def.network);
    EXPECT_EQ(def.network->forwards.at(0).host_port, 0) << "auto";
    EXPECT_EQ(def.network->forwards.at(1).host_port, 8080);
    expect_round_trip(def);
}

TEST(definition_loader, dump_keeps_names_that_look_like_other_types) {
    vm_definition def;
    def.name = "true";
    def.disks.push_back({.name = "null", .file = "/a", .node_name = "1e3"});
    def.network = network_definition{.mac = "52:54:00:00:00:01"};
    def.serial.log = false;
    expect_round_trip(def);
}

TEST(definition_loader, dump_escapes_dollars_in_paths) {
    scoped_env var("QMPKIT_TEST_DOLLAR", "/x/${HOME}/$$");
    auto def =
        load_definition_from_string("name: vm\nkernel: ${QMPKIT_TEST_DOLLAR}/k\n", "/d/vm.yaml");
    EXPECT_EQ(def.kernel, fs::path("/x/${HOME}/$$/k"));
    expect_round_trip(def);
}

TEST(definition_loader, example_configs_load_and_validate_their_shape) {
    for (const char* name : {"tiny.yaml", "tiny-data.yaml"}) {
        SCOPED_TRACE(name);
        auto file = test::source_dir() / "configs" / name;
        auto def = load_definition(file);
        EXPECT_NO_THROW(validate_definition(def, {.check_files = false}));
        EXPECT_NO_THROW(require_qcow2(def));
        EXPECT_EQ(def.boot, boot_mode::kernel);
        EXPECT_TRUE(def.command_channel);
        EXPECT_TRUE(def.guest_agent);
        EXPECT_EQ(def.kernel, (test::source_dir() / "build/guest/vmlinuz").lexically_normal());
        expect_round_trip(def);
    }
    auto data = load_definition(test::source_dir() / "configs/tiny-data.yaml");
    ASSERT_EQ(data.disks.size(), 2u);
    EXPECT_EQ(data.disks[1].name, "data");
}

} // namespace
} // namespace qmpkit::launcher
