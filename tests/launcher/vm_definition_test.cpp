#include <qmpkit/launcher/definition_loader.hpp>
#include <qmpkit/launcher/error.hpp>
#include <qmpkit/launcher/source_map.hpp>
#include <qmpkit/launcher/vm_definition.hpp>

#include <gtest/gtest.h>

#include <string>

namespace qmpkit::launcher {
namespace {

template <class Enum, class Parse>
void expect_round_trip(std::initializer_list<Enum> values, Parse parse) {
    for (auto v : values) {
        SCOPED_TRACE(std::string(to_string(v)));
        EXPECT_EQ(parse(to_string(v)), v);
    }
}

TEST(vm_definition, enum_names_read_back) {
    expect_round_trip({machine_type::q35, machine_type::pc, machine_type::microvm},
                      machine_type_from_string);
    expect_round_trip({accel_mode::automatic, accel_mode::kvm, accel_mode::tcg},
                      accel_mode_from_string);
    expect_round_trip({boot_mode::kernel, boot_mode::disk}, boot_mode_from_string);
    expect_round_trip({disk_format::qcow2, disk_format::raw}, disk_format_from_string);
    expect_round_trip({disk_bus::virtio, disk_bus::scsi, disk_bus::ide}, disk_bus_from_string);
    expect_round_trip({cache_mode::writeback, cache_mode::none, cache_mode::writethrough,
                       cache_mode::directsync, cache_mode::unsafe},
                      cache_mode_from_string);
    expect_round_trip({network_mode::user}, network_mode_from_string);
    expect_round_trip({forward_protocol::tcp, forward_protocol::udp}, forward_protocol_from_string);
}

TEST(vm_definition, enum_names_are_the_yaml_spelling) {
    EXPECT_EQ(to_string(accel_mode::automatic), "auto");
    EXPECT_EQ(accel_mode_from_string("auto"), accel_mode::automatic);
    EXPECT_EQ(accel_mode_from_string("automatic"), std::nullopt);
    EXPECT_EQ(machine_type_from_string("Q35"), std::nullopt);
    EXPECT_EQ(to_string(cache_mode::directsync), "directsync");
}

TEST(vm_definition, default_mac_is_stable_and_local) {
    auto mac = default_mac_address("tiny");
    EXPECT_EQ(mac, default_mac_address("tiny"));
    EXPECT_NE(mac, default_mac_address("tiny-data"));
    ASSERT_EQ(mac.size(), 17u);
    EXPECT_EQ(mac.substr(0, 9), "52:54:00:");
    // Pinned: a change would give every existing VM a new MAC and a new DHCP lease.
    EXPECT_EQ(mac, "52:54:00:35:e6:6b");
}

TEST(vm_definition, require_qcow2_lists_every_writable_raw_disk) {
    auto def = load_definition_from_string(R"(name: vm
disks:
  - name: system
    file: /images/system.qcow2
  - name: scratch
    file: /images/scratch.img
    format: raw
  - name: iso
    file: /images/iso.img
    format: raw
    read_only: true
  - {name: swap, file: /images/swap.img, format: raw}
)",
                                           "/defs/vm.yaml");
    try {
        require_qcow2(def);
        FAIL() << "no error";
    } catch (const error& e) {
        ASSERT_EQ(e.diagnostics().size(), 2u);
        EXPECT_EQ(e.diagnostics()[0],
                  (diagnostic{"/defs/vm.yaml", 7, 13, "disks[1].format",
                              "raw disk 'scratch' does not support internal snapshots"}));
        EXPECT_EQ(e.diagnostics()[1].field, "disks[3].format");
        EXPECT_EQ(e.diagnostics()[1].line, 12);
        EXPECT_EQ(std::string(e.what()),
                  "/defs/vm.yaml:7:13: disks[1].format: raw disk 'scratch' does not support "
                  "internal snapshots\n"
                  "/defs/vm.yaml:12:50: disks[3].format: raw disk 'swap' does not support "
                  "internal snapshots");
    }
}

TEST(vm_definition, require_qcow2_accepts_qcow2_and_read_only_raw) {
    vm_definition def;
    def.name = "vm";
    def.disks.push_back({.name = "a", .file = "/a", .node_name = "a"});
    def.disks.push_back({.name = "b",
                         .file = "/b",
                         .format = disk_format::raw,
                         .read_only = true,
                         .node_name = "b"});
    EXPECT_NO_THROW(require_qcow2(def));
}

TEST(source_map, parent_fields) {
    EXPECT_EQ(parent_field("disks[1].size"), "disks[1]");
    EXPECT_EQ(parent_field("disks[1]"), "disks");
    EXPECT_EQ(parent_field("network.forwards[0].host_port"), "network.forwards[0]");
    EXPECT_EQ(parent_field("network"), "");
    EXPECT_EQ(parent_field(""), "");
}

TEST(source_map, locates_the_closest_written_field) {
    source_map map("vm.yaml");
    map.set("", 1, 1);
    map.set("disks[0]", 4, 5);
    map.set("disks[0].name", 4, 11);
    EXPECT_EQ(map.locate("disks[0].name"), (source_location{"vm.yaml", 4, 11}));
    EXPECT_EQ(map.locate("disks[0].format"), (source_location{"vm.yaml", 4, 5}));
    EXPECT_EQ(map.locate("memory"), (source_location{"vm.yaml", 1, 1}));
    EXPECT_EQ(map.find("memory"), nullptr);
    EXPECT_EQ(source_map("x.yaml").locate("memory"), (source_location{"x.yaml", 0, 0}));
}

TEST(diagnostic, formats_only_the_known_parts) {
    EXPECT_EQ(to_string(diagnostic{"vm.yaml", 3, 9, "memory", "bad"}), "vm.yaml:3:9: memory: bad");
    EXPECT_EQ(to_string(diagnostic{"vm.yaml", 3, 9, "", "bad"}), "vm.yaml:3:9: bad");
    EXPECT_EQ(to_string(diagnostic{"vm.yaml", 0, 0, "", "bad"}), "vm.yaml: bad");
    EXPECT_EQ(to_string(diagnostic{"", 0, 0, "cpus", "bad"}), "cpus: bad");
}

TEST(error, plain_message_has_no_diagnostics) {
    error e("qemu exited");
    EXPECT_STREQ(e.what(), "qemu exited");
    EXPECT_TRUE(e.diagnostics().empty());
}

} // namespace
} // namespace qmpkit::launcher
