#include "launcher/test_support.hpp"

#include <qmpkit/launcher/definition_loader.hpp>
#include <qmpkit/launcher/definition_validator.hpp>
#include <qmpkit/launcher/error.hpp>
#include <qmpkit/launcher/qemu_command.hpp>

#include <boost/json.hpp>
#include <gtest/gtest.h>

#include <algorithm>
#include <string>
#include <vector>

namespace qmpkit::launcher {
namespace {

namespace json = boost::json;
using argv = std::vector<std::string>;

const launch_paths paths = default_launch_paths("/run/vm", 3);

vm_definition definition(std::string_view yaml) {
    auto def = load_definition_from_string(yaml, "/defs/vm.yaml");
    validate_definition(def, {.check_files = false});
    return def;
}

argv command(std::string_view yaml, accel_mode accel = accel_mode::tcg,
             const launch_paths& p = paths) {
    qemu_command_options options;
    options.tsc_khz = 1000000; // the host's rate would make the golden argv differ per machine
    return build_qemu_command(definition(yaml), p, accel, options);
}

argv concat(std::initializer_list<argv> parts) {
    argv out;
    for (const auto& part : parts)
        out.insert(out.end(), part.begin(), part.end());
    return out;
}

// The arguments every command starts with, for a VM named vm on q35 under TCG.
argv prologue(std::string_view machine = "q35", std::string_view name = "vm") {
    argv args{"qemu-system-x86_64",
              "-nodefaults",
              "-no-user-config",
              "-display",
              "none",
              "-name",
              "guest=" + std::string(name),
              "-machine",
              std::string(machine),
              "-sandbox",
              "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny",
              "-accel",
              "tcg",
              "-global",
              "virtio-pci.ioeventfd=off",
              "-global",
              "virtio-mmio.ioeventfd=off",
              "-smp",
              "1",
              "-m",
              "256M",
              "-chardev",
              "socket,id=qmp,fd=3,server=on,wait=off",
              "-mon",
              "chardev=qmp,mode=control",
              "-chardev",
              "socket,id=serial0,path=/run/vm/console.sock,server=on,wait=off,"
              "logfile=/run/vm/serial.log,logappend=on",
              "-serial",
              "chardev:serial0"};
    if (machine == "q35") {
        // Spare root ports for live attach, right after the memory size.
        const auto at = std::find(args.begin(), args.end(), "256M") + 1;
        args.insert(at, {"-device", R"({"driver":"pcie-root-port","id":"hotplug0","chassis":1})",
                         "-device", R"({"driver":"pcie-root-port","id":"hotplug1","chassis":2})",
                         "-device", R"({"driver":"pcie-root-port","id":"hotplug2","chassis":3})",
                         "-device", R"({"driver":"pcie-root-port","id":"hotplug3","chassis":4})"});
    }
    return args;
}

std::string file_node(std::string_view node, std::string_view file,
                      std::string_view cache = R"({"direct":false,"no-flush":false})",
                      bool read_only = false) {
    return R"({"driver":"file","node-name":")" + std::string(node) + R"(-file","filename":")" +
           std::string(file) + R"(","cache":)" + std::string(cache) + R"(,"read-only":)" +
           (read_only ? "true" : "false") + "}";
}

std::string format_node(std::string_view node, std::string_view format = "qcow2",
                        std::string_view cache = R"({"direct":false,"no-flush":false})",
                        bool read_only = false) {
    return R"({"driver":")" + std::string(format) + R"(","node-name":")" + std::string(node) +
           R"(","file":")" + std::string(node) + R"(-file","cache":)" + std::string(cache) +
           R"(,"read-only":)" + (read_only ? "true" : "false") + "}";
}

TEST(qemu_command, tiny_example) {
    auto def = load_definition(test::source_dir() / "configs/tiny.yaml");
    auto build = (test::source_dir() / "build").lexically_normal().string();
    EXPECT_EQ(build_qemu_command(def, paths, accel_mode::tcg),
              concat({prologue("pc", "tiny"),
                      {"-device",
                       R"({"driver":"virtio-serial-pci","id":"vser0"})",
                       "-chardev",
                       "socket,id=shell,path=/run/vm/shell.sock,server=on,wait=off",
                       "-device",
                       R"({"driver":"virtserialport","id":"shell0","bus":"vser0.0",)"
                       R"("chardev":"shell","name":"org.qmpkit.shell"})",
                       "-chardev",
                       "socket,id=agent,path=/run/vm/agent.sock,server=on,wait=off",
                       "-device",
                       R"({"driver":"virtserialport","id":"agent0","bus":"vser0.0",)"
                       R"("chardev":"agent","name":"org.qemu.guest_agent.0"})",
                       "-blockdev",
                       file_node("system", build + "/images/tiny-system.qcow2"),
                       "-blockdev",
                       format_node("system"),
                       "-device",
                       R"({"driver":"virtio-blk-pci","id":"system-dev","drive":"system",)"
                       R"("serial":"system"})",
                       "-kernel",
                       build + "/guest/vmlinuz",
                       "-initrd",
                       build + "/guest/initramfs.img",
                       "-append",
                       "console=ttyS0 panic=-1"}}));
}

TEST(qemu_command, guest_agent_shares_the_command_channels_controller) {
    const argv agent_port = {
        "-chardev", "socket,id=agent,path=/run/vm/agent.sock,server=on,wait=off", "-device",
        R"({"driver":"virtserialport","id":"agent0","bus":"vser0.0",)"
        R"("chardev":"agent","name":"org.qemu.guest_agent.0"})"};
    auto rest = [](const argv& args) { return argv(args.begin() + prologue().size(), args.end()); };

    // Alone, the agent brings its own controller.
    EXPECT_EQ(rest(command("name: vm\nkernel: /k\nguest_agent: true\n")),
              concat({{"-device", R"({"driver":"virtio-serial-pci","id":"vser0"})"},
                      agent_port,
                      {"-kernel", "/k"}}));
    // With the command channel, one controller takes both ports.
    EXPECT_EQ(rest(command("name: vm\nkernel: /k\ncommand_channel: true\nguest_agent: true\n")),
              concat({{"-device", R"({"driver":"virtio-serial-pci","id":"vser0"})", "-chardev",
                       "socket,id=shell,path=/run/vm/shell.sock,server=on,wait=off", "-device",
                       R"({"driver":"virtserialport","id":"shell0","bus":"vser0.0",)"
                       R"("chardev":"shell","name":"org.qmpkit.shell"})"},
                      agent_port,
                      {"-kernel", "/k"}}));
    // microvm: the MMIO controller.
    auto micro = command("name: vm\nmachine: microvm\nkernel: /k\nguest_agent: true\n");
    EXPECT_NE(
        std::find(micro.begin(), micro.end(), R"({"driver":"virtio-serial-device","id":"vser0"})"),
        micro.end());
    // Off (the default): no agent port.
    auto off = command("name: vm\nkernel: /k\ncommand_channel: true\n");
    EXPECT_EQ(std::find(off.begin(), off.end(), agent_port[1]), off.end());

    auto deep = default_launch_paths("/" + std::string(100, 'd'), 3);
    deep.console_socket = "/run/vm/console.sock";
    try {
        build_qemu_command(definition("name: vm\nkernel: /k\nguest_agent: true\n"), deep,
                           accel_mode::tcg);
        FAIL() << "no error";
    } catch (const error& e) {
        EXPECT_NE(std::string(e.what()).find("guest agent socket path is 112 bytes"),
                  std::string::npos)
            << e.what();
    }
}

TEST(qemu_command, two_disks) {
    auto def = load_definition(test::source_dir() / "configs/tiny-data.yaml");
    auto images = (test::source_dir() / "build/images").lexically_normal().string();
    auto args = build_qemu_command(def, paths, accel_mode::tcg);
    auto first = std::find(args.begin(), args.end(), "-blockdev");
    auto last = std::find(args.begin(), args.end(), "-kernel");
    EXPECT_EQ(argv(first, last),
              (argv{"-blockdev", file_node("system", images + "/tiny-data-system.qcow2"),
                    "-blockdev", format_node("system"), "-device",
                    R"({"driver":"virtio-blk-pci","id":"system-dev","drive":"system",)"
                    R"("serial":"system"})",
                    "-blockdev", file_node("data", images + "/tiny-data-data.qcow2"), "-blockdev",
                    format_node("data"), "-device",
                    R"({"driver":"virtio-blk-pci","id":"data-dev","drive":"data",)"
                    R"("serial":"data"})"}));
}

TEST(qemu_command, uefi_flash_holds_the_shared_code_and_the_vms_variable_store) {
    auto args = command(R"(name: vm
firmware: uefi
disks:
  - {name: system, file: /images/vm.qcow2}
)");
    auto machine = std::find(args.begin(), args.end(), "-machine");
    ASSERT_NE(machine, args.end());
    EXPECT_EQ(machine[1], "q35,pflash0=firmware-code,pflash1=nvram");
    auto first = std::find(args.begin(), args.end(), "-blockdev");
    auto last = std::find(first, args.end(), "-netdev");
    EXPECT_EQ(argv(first, last),
              (argv{"-blockdev",
                    R"({"driver":"file","node-name":"firmware-code-file",)"
                    R"("filename":"/usr/share/OVMF/OVMF_CODE_4M.fd","read-only":true})",
                    "-blockdev",
                    R"({"driver":"raw","node-name":"firmware-code","file":"firmware-code-file",)"
                    R"("read-only":true})",
                    "-blockdev", file_node("system", "/images/vm.qcow2"), "-blockdev",
                    format_node("system"), "-device",
                    R"({"driver":"virtio-blk-pci","id":"system-dev","drive":"system",)"
                    R"("serial":"system","bootindex":0})",
                    "-blockdev", file_node("nvram", "/images/vm-nvram.qcow2"), "-blockdev",
                    format_node("nvram")}));
}

TEST(qemu_command, disk_boot_with_scsi_and_ide) {
    EXPECT_EQ(command(R"(name: vm
disks:
  - {name: root, file: /img/root.qcow2, bus: scsi, node_name: n0}
  - {name: legacy, file: /img/legacy.qcow2, bus: ide}
  - {name: more, file: /img/more.qcow2, bus: scsi}
)"),
              concat({prologue(),
                      {"-device",
                       R"({"driver":"virtio-scsi-pci","id":"scsi0"})",
                       "-blockdev",
                       file_node("n0", "/img/root.qcow2"),
                       "-blockdev",
                       format_node("n0"),
                       "-device",
                       R"({"driver":"scsi-hd","bus":"scsi0.0","id":"root-dev","drive":"n0",)"
                       R"("serial":"root","bootindex":0})",
                       "-blockdev",
                       file_node("legacy", "/img/legacy.qcow2"),
                       "-blockdev",
                       format_node("legacy"),
                       "-device",
                       R"({"driver":"ide-hd","id":"legacy-dev","drive":"legacy"})",
                       "-blockdev",
                       file_node("more", "/img/more.qcow2"),
                       "-blockdev",
                       format_node("more"),
                       "-device",
                       R"({"driver":"scsi-hd","bus":"scsi0.0","id":"more-dev","drive":"more",)"
                       R"("serial":"more"})"}}));
}

TEST(qemu_command, read_only_and_cache_modes) {
    constexpr auto direct = R"({"direct":true,"no-flush":false})";
    constexpr auto cached = R"({"direct":false,"no-flush":false})";
    constexpr auto no_flush = R"({"direct":false,"no-flush":true})";
    EXPECT_EQ(command(R"(name: vm
kernel: /k
disks:
  - {name: iso, file: /img/iso.raw, format: raw, read_only: true, cache: none}
  - {name: wt, file: /img/wt.qcow2, cache: writethrough}
  - {name: ds, file: /img/ds.qcow2, cache: directsync}
  - {name: un, file: /img/un.qcow2, cache: unsafe}
)"),
              concat({prologue(),
                      {"-blockdev",
                       file_node("iso", "/img/iso.raw", direct, true),
                       "-blockdev",
                       format_node("iso", "raw", direct, true),
                       "-device",
                       R"({"driver":"virtio-blk-pci","id":"iso-dev","drive":"iso","serial":"iso"})",
                       "-blockdev",
                       file_node("wt", "/img/wt.qcow2", cached),
                       "-blockdev",
                       format_node("wt", "qcow2", cached),
                       "-device",
                       R"({"driver":"virtio-blk-pci","id":"wt-dev","drive":"wt","serial":"wt",)"
                       R"("write-cache":"off"})",
                       "-blockdev",
                       file_node("ds", "/img/ds.qcow2", direct),
                       "-blockdev",
                       format_node("ds", "qcow2", direct),
                       "-device",
                       R"({"driver":"virtio-blk-pci","id":"ds-dev","drive":"ds","serial":"ds",)"
                       R"("write-cache":"off"})",
                       "-blockdev",
                       file_node("un", "/img/un.qcow2", no_flush),
                       "-blockdev",
                       format_node("un", "qcow2", no_flush),
                       "-device",
                       R"({"driver":"virtio-blk-pci","id":"un-dev","drive":"un","serial":"un"})",
                       "-kernel",
                       "/k"}}));
}

TEST(qemu_command, network_forwards) {
    EXPECT_EQ(command(R"(name: vm
kernel: /k
network:
  forwards:
    - {host_port: 2222, guest_port: 22}
    - {protocol: udp, host_addr: 0.0.0.0, host_port: 5353, guest_port: 53}
  mac: "52:54:00:12:34:56"
)"),
              concat({prologue(),
                      {"-netdev",
                       "user,id=net0,hostfwd=tcp:127.0.0.1:2222-:22,hostfwd=udp:0.0.0.0:5353-:53",
                       "-device",
                       R"({"driver":"virtio-net-pci","id":"net0","netdev":"net0",)"
                       R"("mac":"52:54:00:12:34:56"})",
                       "-kernel", "/k"}}));
}

TEST(qemu_command, shares_are_9p_exports_by_tag_read_only_where_asked) {
    EXPECT_EQ(
        command(R"(name: vm
kernel: /k
shares:
  - {tag: data, path: /srv/data}
  - {tag: src.tree, path: "src,v2", read_only: true}
)"),
        concat({prologue(),
                {"-fsdev", "local,id=share0,path=/srv/data,security_model=none,multidevs=remap",
                 "-device",
                 R"({"driver":"virtio-9p-pci","id":"share0-dev","fsdev":"share0",)"
                 R"("mount_tag":"data"})",
                 "-fsdev",
                 "local,id=share1,path=/defs/src,,v2,security_model=none,multidevs=remap,"
                 "readonly=on",
                 "-device",
                 R"({"driver":"virtio-9p-pci","id":"share1-dev","fsdev":"share1",)"
                 R"("mount_tag":"src.tree"})",
                 "-kernel", "/k"}}));
}

TEST(qemu_command, network_without_forwards_uses_the_derived_mac) {
    auto args = command("name: vm\nkernel: /k\nnetwork: {}\n");
    EXPECT_NE(std::find(args.begin(), args.end(), "user,id=net0"), args.end());
    EXPECT_NE(std::find(args.begin(), args.end(),
                        R"({"driver":"virtio-net-pci","id":"net0","netdev":"net0","mac":")" +
                            default_mac_address("vm") + R"("})"),
              args.end());
}

constexpr std::string_view microvm_yaml = R"(name: vm
machine: microvm
kernel: /k
initrd: /i
append: console=ttyS0
command_channel: true
disks:
  - {name: root, file: /img/root.qcow2}
network: {mac: "52:54:00:00:00:01"}
)";

TEST(qemu_command, microvm_uses_mmio_devices) {
    EXPECT_EQ(command(microvm_yaml),
              concat({prologue("microvm"),
                      {"-device",
                       R"({"driver":"virtio-serial-device","id":"vser0"})",
                       "-chardev",
                       "socket,id=shell,path=/run/vm/shell.sock,server=on,wait=off",
                       "-device",
                       R"({"driver":"virtserialport","id":"shell0","bus":"vser0.0",)"
                       R"("chardev":"shell","name":"org.qmpkit.shell"})",
                       "-blockdev",
                       file_node("root", "/img/root.qcow2"),
                       "-blockdev",
                       format_node("root"),
                       "-device",
                       R"({"driver":"virtio-blk-device","id":"root-dev","drive":"root",)"
                       R"("serial":"root"})",
                       "-netdev",
                       "user,id=net0",
                       "-device",
                       R"({"driver":"virtio-net-device","id":"net0","netdev":"net0",)"
                       R"("mac":"52:54:00:00:00:01"})",
                       "-kernel",
                       "/k",
                       "-initrd",
                       "/i",
                       "-append",
                       "console=ttyS0 tsc_early_khz=1000000"}}));
}

std::string append_of(const argv& args) {
    auto it = std::find(args.begin(), args.end(), "-append");
    return it == args.end() || it + 1 == args.end() ? "<none>" : *(it + 1);
}

TEST(qemu_command, microvm_tsc_hint_only_under_tcg_and_only_once) {
    EXPECT_EQ(append_of(command(microvm_yaml, accel_mode::kvm)), "console=ttyS0");
    EXPECT_EQ(append_of(command("name: vm\nmachine: microvm\nkernel: /k\n")),
              "tsc_early_khz=1000000");
    EXPECT_EQ(append_of(command(
                  "name: vm\nmachine: microvm\nkernel: /k\nappend: tsc_early_khz=2000000 quiet\n")),
              "tsc_early_khz=2000000 quiet");
    EXPECT_EQ(append_of(command("name: vm\nmachine: q35\nkernel: /k\n")), "<none>");
    EXPECT_EQ(append_of(command("name: vm\nkernel: /k\nappend: \"\"\n")), "");
}

TEST(qemu_command, kvm_uses_the_host_cpu_and_tcg_no_ioeventfds) {
    auto tcg = command("name: vm\nkernel: /k\n", accel_mode::tcg);
    auto kvm = command("name: vm\nkernel: /k\n", accel_mode::kvm);
    auto at = std::find(tcg.begin(), tcg.end(), "-accel") - tcg.begin();
    EXPECT_EQ(argv(tcg.begin() + at, tcg.begin() + at + 6),
              (argv{"-accel", "tcg", "-global", "virtio-pci.ioeventfd=off", "-global",
                    "virtio-mmio.ioeventfd=off"}));
    EXPECT_EQ(argv(kvm.begin() + at, kvm.begin() + at + 4),
              (argv{"-accel", "kvm", "-cpu", "host"}));
    kvm.erase(kvm.begin() + at + 1, kvm.begin() + at + 4);
    tcg.erase(tcg.begin() + at + 1, tcg.begin() + at + 6);
    EXPECT_EQ(kvm, tcg);
}

TEST(qemu_command, commas_in_option_values_are_doubled) {
    auto p = default_launch_paths("/run/a,b", 7);
    auto def = definition(R"(name: vm
kernel: /boot/k,1
command_channel: true
disks:
  - {name: root, file: "/img/x,y.qcow2"}
)");
    auto args = build_qemu_command(def, p, accel_mode::tcg);
    auto has = [&](std::string_view arg) {
        return std::find(args.begin(), args.end(), arg) != args.end();
    };
    EXPECT_TRUE(has("socket,id=serial0,path=/run/a,,b/console.sock,server=on,wait=off,"
                    "logfile=/run/a,,b/serial.log,logappend=on"));
    EXPECT_TRUE(has("socket,id=shell,path=/run/a,,b/shell.sock,server=on,wait=off"));
    EXPECT_TRUE(has("socket,id=qmp,fd=7,server=on,wait=off"));
    // JSON and plain path arguments are not option strings: no doubling there.
    EXPECT_TRUE(has(file_node("root", "/img/x,y.qcow2")));
    EXPECT_TRUE(has("/boot/k,1"));
}

TEST(qemu_command, serial_variants_keep_the_serial_device) {
    auto serial_of = [](std::string_view yaml) {
        auto args = command(yaml);
        auto it = std::find(args.begin(), args.end(), "-serial");
        EXPECT_NE(it, args.end());
        EXPECT_EQ(*(it + 1), "chardev:serial0");
        return *(it - 1);
    };
    EXPECT_EQ(serial_of("name: vm\nkernel: /k\nserial: {socket: false}\n"),
              "file,id=serial0,path=/run/vm/serial.log,append=on");
    EXPECT_EQ(serial_of("name: vm\nkernel: /k\nserial: {log: false}\n"),
              "socket,id=serial0,path=/run/vm/console.sock,server=on,wait=off");
    EXPECT_EQ(serial_of("name: vm\nkernel: /k\nserial: {log: false, socket: false}\n"),
              "null,id=serial0");
    EXPECT_EQ(
        serial_of("name: vm\nkernel: /k\nserial: {log: \"../logs/vm,1.log\", socket: false}\n"),
        "file,id=serial0,path=/logs/vm,,1.log,append=on");
}

TEST(qemu_command, serial_log_file_prefers_the_definition) {
    auto def = definition("name: vm\nkernel: /k\n");
    EXPECT_EQ(serial_log_file(def, paths), "/run/vm/serial.log");
    def.serial.log_file = "/logs/vm.log";
    EXPECT_EQ(serial_log_file(def, paths), "/logs/vm.log");
    def.serial.log = false;
    EXPECT_EQ(serial_log_file(def, paths), "");
}

TEST(qemu_command, options_and_extra_args) {
    auto def = definition(R"(name: vm
cpus: 4
memory: 1.5G
kernel: /k
extra_args: ["-rtc", "base=utc,clock=vm", "-device", "{\"driver\":\"virtio-rng-pci\"}"]
)");
    auto args = build_qemu_command(
        def, paths, accel_mode::tcg,
        {.qemu_binary = "/opt/qemu/bin/qemu-system-x86_64", .start_paused = true});
    EXPECT_EQ(args.front(), "/opt/qemu/bin/qemu-system-x86_64");
    auto smp = std::find(args.begin(), args.end(), "-smp");
    EXPECT_EQ(argv(smp, smp + 5), (argv{"-smp", "4", "-m", "1536M", "-S"}));
    EXPECT_EQ(argv(args.end() - 6, args.end()),
              (argv{"-kernel", "/k", "-rtc", "base=utc,clock=vm", "-device",
                    R"({"driver":"virtio-rng-pci"})"}));
}

TEST(qemu_command, refuses_runtime_inputs_it_cannot_express) {
    auto def = definition("name: vm\nkernel: /k\n");
    EXPECT_THROW(build_qemu_command(def, paths, accel_mode::automatic), error);
    EXPECT_THROW(build_qemu_command(def, default_launch_paths("/run/vm", -1), accel_mode::tcg),
                 error);
    auto deep = default_launch_paths("/" + std::string(100, 'd'), 3);
    try {
        build_qemu_command(def, deep, accel_mode::tcg);
        FAIL() << "no error";
    } catch (const error& e) {
        EXPECT_NE(std::string(e.what()).find("console socket path is 114 bytes"), std::string::npos)
            << e.what();
    }
    def.serial.socket = false;
    EXPECT_NO_THROW(build_qemu_command(def, deep, accel_mode::tcg));
    auto no_log = paths;
    no_log.serial_log.clear();
    EXPECT_THROW(build_qemu_command(def, no_log, accel_mode::tcg), error);
}

TEST(qemu_command, sandbox_is_on_unless_turned_off) {
    auto value_after = [](const argv& args, std::string_view option) -> std::string {
        auto it = std::find(args.begin(), args.end(), option);
        return it == args.end() ? "<none>" : *(it + 1);
    };
    auto on = command("name: vm\nkernel: /k\n");
    EXPECT_EQ(value_after(on, "-sandbox"),
              "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny");
    EXPECT_EQ(value_after(on, "-runas"), "<none>");

    auto off = command("name: vm\nkernel: /k\nsecurity: {sandbox: false}\n");
    EXPECT_EQ(value_after(off, "-sandbox"), "<none>");
    // The sandbox changes no device: the rest is the same command.
    on.erase(std::find(on.begin(), on.end(), "-sandbox"),
             std::find(on.begin(), on.end(), "-sandbox") + 2);
    EXPECT_EQ(on, off);

    // qemu switches users after its filter is in place: set*id must stay allowed then.
    auto run_as = command("name: vm\nkernel: /k\nsecurity: {run_as: qemu-vm}\n");
    EXPECT_EQ(value_after(run_as, "-sandbox"),
              "on,obsolete=deny,elevateprivileges=allow,spawn=deny,resourcecontrol=deny");
    EXPECT_EQ(value_after(run_as, "-runas"), "qemu-vm");
    auto bare = command("name: vm\nkernel: /k\nsecurity: {sandbox: false, run_as: qemu-vm}\n");
    EXPECT_EQ(value_after(bare, "-sandbox"), "<none>");
    EXPECT_EQ(value_after(bare, "-runas"), "qemu-vm");
}

TEST(qemu_command, encrypted_disk_reads_its_key_from_the_key_file) {
    // The image does not exist, so there is no backing chain to read.
    auto args = command(R"(name: vm
kernel: /k
disks:
  - {name: data, file: /nowhere/data.qcow2, size: 1M, encryption: {key_file: /keys/data.key}}
)");
    auto first = std::find(args.begin(), args.end(), "-object");
    ASSERT_NE(first, args.end());
    EXPECT_EQ(argv(first, first + 6),
              (argv{"-object",
                    R"({"qom-type":"secret","id":"key-data","format":"raw",)"
                    R"("file":"/keys/data.key"})",
                    "-blockdev", file_node("data", "/nowhere/data.qcow2"), "-blockdev",
                    R"({"driver":"qcow2","node-name":"data","file":"data-file",)"
                    R"("cache":{"direct":false,"no-flush":false},"read-only":false,)"
                    R"("encrypt":{"format":"luks","key-secret":"key-data"}})"}));
}

TEST(qemu_command, an_encrypted_disks_backing_chain_is_spelled_out) {
    disk_definition disk{.name = "d", .file = "/img/top.qcow2", .node_name = "d"};
    disk.encryption = disk_encryption{encryption_format::luks, "/k"};
    std::vector<image_info> chain(3);
    chain[0].filename = "/img/top.qcow2";
    chain[0].format = "qcow2";
    chain[0].encrypted = true;
    chain[0].full_backing_file = "/img/mid.qcow2";
    chain[1].filename = "mid.qcow2"; // as qemu-img printed it; the layer above says where it is
    chain[1].format = "qcow2";
    chain[1].encrypted = true;
    chain[1].full_backing_file = "/img/base.raw";
    chain[2].filename = "/img/base.raw";
    chain[2].format = "raw";
    auto nodes = disk_block_nodes(disk, chain);
    EXPECT_EQ(json::serialize(nodes[1]),
              R"({"driver":"qcow2","node-name":"d","file":"d-file",)"
              R"("cache":{"direct":false,"no-flush":false},"read-only":false,)"
              R"("encrypt":{"format":"luks","key-secret":"key-d"},)"
              R"("backing":{"driver":"qcow2","file":{"driver":"file","filename":"/img/mid.qcow2",)"
              R"("cache":{"direct":false,"no-flush":false}},)"
              R"("cache":{"direct":false,"no-flush":false},)"
              R"("encrypt":{"format":"luks","key-secret":"key-d"},)"
              R"("backing":{"driver":"raw","file":{"driver":"file","filename":"/img/base.raw",)"
              R"("cache":{"direct":false,"no-flush":false}},)"
              R"("cache":{"direct":false,"no-flush":false}}}})");

    // A plain overlay above an encrypted base gets no key itself.
    chain[0].encrypted = false;
    nodes = disk_block_nodes(disk, chain);
    EXPECT_FALSE(nodes[1].contains("encrypt"));
    EXPECT_TRUE(nodes[1].at("backing").as_object().contains("encrypt"));
}

// The builder reads nothing: an encrypted image's chain and the host's TSC rate come in through
// the options (read_host_facts), and a missing fact is an error, not a read.
TEST(qemu_command, builds_from_its_inputs_alone) {
    auto def = definition(R"(name: vm
kernel: /k
disks:
  - {name: data, file: /nowhere/data.qcow2, size: 1M, encryption: {key_file: /keys/data.key}}
)");
    qemu_command_options options;
    std::vector<image_info> chain(2);
    chain[0].filename = "/nowhere/data.qcow2";
    chain[0].format = "qcow2";
    chain[0].encrypted = true;
    chain[0].full_backing_file = "/nowhere/base.qcow2";
    chain[1].filename = "/nowhere/base.qcow2";
    chain[1].format = "qcow2";
    chain[1].encrypted = true;
    options.encrypted_chains["data"] = chain;
    const auto args = build_qemu_command(def, paths, accel_mode::tcg, options);
    std::string nodes;
    for (const auto& a : args)
        nodes += a + "\n";
    EXPECT_NE(nodes.find(R"("filename":"/nowhere/base.qcow2")"), std::string::npos) << nodes;

    auto microvm = definition("name: vm\nmachine: microvm\nkernel: /k\n");
    try {
        build_qemu_command(microvm, paths, accel_mode::tcg, {});
        ADD_FAILURE() << "built a microvm TCG command without the host's TSC rate";
    } catch (const error& e) {
        EXPECT_NE(std::string(e.what()).find("tsc_khz"), std::string::npos) << e.what();
    }
    qemu_command_options facts;
    read_host_facts(microvm, accel_mode::tcg, qemu_img(), facts);
    EXPECT_EQ(facts.tsc_khz, host_tsc_khz());
    EXPECT_GT(facts.tsc_khz, 0u);
    EXPECT_NO_THROW(build_qemu_command(microvm, paths, accel_mode::tcg, facts));
}

TEST(qemu_command, encrypted_overlays_are_added_without_backing) {
    disk_definition disk{.name = "d", .file = "/img/d.qcow2", .read_only = false, .node_name = "d"};
    disk.encryption = disk_encryption{encryption_format::luks, "/k"};
    auto nodes = overlay_block_nodes(disk, "/img/d.s1.qcow2", "ov1");
    EXPECT_EQ(json::serialize(nodes[0]), file_node("ov1", "/img/d.s1.qcow2"));
    EXPECT_EQ(json::serialize(nodes[1]),
              R"({"driver":"qcow2","node-name":"ov1","file":"ov1-file",)"
              R"("cache":{"direct":false,"no-flush":false},"read-only":false,)"
              R"("encrypt":{"format":"luks","key-secret":"key-d"},"backing":null})");
}

TEST(qemu_command, image_file_of_unpacks_json_filenames) {
    EXPECT_EQ(image_file_of("/img/a.qcow2"), "/img/a.qcow2");
    EXPECT_EQ(image_file_of(R"(json:{"encrypt.key-secret": "key-d", "driver": "qcow2", )"
                            R"("file": {"driver": "file", "filename": "/img/a,b.qcow2"}})"),
              "/img/a,b.qcow2");
    // The backing member is not the image: the file is.
    EXPECT_EQ(image_file_of(R"(json:{"backing": {"driver": "qcow2", "file": {"driver": "file", )"
                            R"("filename": "/img/base.qcow2"}}, "driver": "qcow2", "file": )"
                            R"({"driver": "file", "filename": "/img/top.qcow2"}})"),
              "/img/top.qcow2");
    EXPECT_EQ(image_file_of("json:{broken"), "json:{broken");
    EXPECT_EQ(image_file_of(R"(json:{"driver": "nbd"})"), R"(json:{"driver": "nbd"})");
}

} // namespace
} // namespace qmpkit::launcher
