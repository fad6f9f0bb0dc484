#pragma once

// The definition's schema, written once. Each section of the YAML file is one describe() that
// names its fields in the order they are read, dumped and documented, with their type, default,
// meaning and the checks a value fails on its own. Visitors walk it:
//   definition_loader.cpp     reads YAML into a vm_definition, recording where each value was
//   definition_dump.cpp       writes a vm_definition back as YAML
//   definition_validator.cpp  runs each value's own checks (then checks how values fit together
//                             and against the host, which no single field can say)
//   definition_reference.cpp  prints the field tables of configs/README.md and the man page
// A visitor implements field (strings, paths, booleans, integers, enums, their optionals and
// lists of strings), size, section (a mapping, or an optional one), sections (a list of
// mappings) and the three fields whose YAML is not one plain type: nvram, serial_log and
// host_port.

#include "enum_names.hpp"

#include <qmpkit/launcher/vm_definition.hpp>

#include <concepts>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

namespace qmpkit::launcher::schema {

template <class T>
struct is_optional : std::false_type {};
template <class T>
struct is_optional<std::optional<T>> : std::true_type {};

// What a check looks at: an optional's value, a list's elements, else the value itself.
template <class T>
struct checked {
    using type = T;
};
template <class T>
struct checked<std::optional<T>> {
    using type = T;
};
template <class T>
struct checked<std::vector<T>> {
    using type = T;
};

// A problem of one value alone, as the message to report at its field; nullopt when it is fine.
template <class T>
using value_check = std::optional<std::string> (*)(const typename checked<T>::type&);

template <class T>
struct field_info {
    std::string_view meaning{};
    bool required = false;
    // The reference's type and default, where the value's type and default value do not say it.
    std::string_view type{};
    std::string_view default_text{};
    value_check<T> check = nullptr;
    // Integers: the range the reader accepts and the checker enforces.
    std::int64_t min = 0;
    std::int64_t max = 0;
    // An empty string means the field is not set: the writer leaves it out.
    bool empty_is_unset = false;
    // An optional section written with an empty value (`key:` alone) is there with its
    // defaults, as `key: {}` is; otherwise an empty value leaves it out, as for any field.
    bool empty_is_defaults = false;
};

// A section: the owner's type, const or not (reading fills it, writing reads it).
template <class Section, class Type>
concept section_of = std::same_as<std::remove_const_t<Section>, Type>;

// qemu keeps node names in a 32-byte array, and the protocol node is "<node_name>-file".
inline constexpr std::size_t max_node_name = 31 - (sizeof("-file") - 1);

std::optional<std::string> vm_name_problem(const std::string& name);
std::optional<std::string> memory_problem(const std::uint64_t& bytes);
std::optional<std::string> disk_name_problem(const std::string& name);
std::optional<std::string> disk_size_problem(const std::uint64_t& bytes);
std::optional<std::string> mac_problem(const std::string& mac);
std::optional<std::string> ipv4_problem(const std::string& addr);
std::optional<std::string> guest_user_problem(const std::string& user);
std::optional<std::string> hostname_problem(const std::string& name);
std::optional<std::string> public_key_problem(const std::string& key);
std::optional<std::string> share_tag_problem(const std::string& tag);
std::optional<std::string> guest_mount_problem(const std::string& dir);
std::optional<std::string> host_user_problem(const std::string& user);

template <class V>
void describe(V& v, section_of<disk_encryption> auto& e) {
    v.field("format", e.format,
            {.meaning = "qcow2's built-in LUKS encryption (`encrypt.format=luks`)."});
    v.field("key_file", e.key_file,
            {.meaning = "The passphrase is the file's whole content, byte for byte: a trailing "
                        "newline is part of it (`printf %s 'passphrase' > data.key` writes "
                        "none). It must be a regular file, not a symlink, not empty, and "
                        "reachable by its owner only (mode `0600` or `0400`).",
             .required = true});
}

template <class V>
void describe(V& v, section_of<disk_definition> auto& d) {
    v.field("name", d.name,
            {.meaning = "`[A-Za-z][A-Za-z0-9_-]{0,23}`, unique. The guest sees it as the disk's "
                        "serial number (virtio, scsi), e.g. `/dev/disk/by-id/virtio-system`. The "
                        "qemu device id is `<name>-dev`.",
             .required = true,
             .check = disk_name_problem});
    v.field("file", d.file,
            {.meaning = "The image. Two disks may not share one. If it does not exist it must be "
                        "creatable: it needs `size` or `backing`.",
             .required = true});
    v.field("format", d.format,
            {.meaning = "Internal snapshots need every writable disk to be qcow2."});
    v.size("size", d.size,
           {.meaning = "Used only to create the image when `file` is missing; an existing image "
                       "is left as it is.",
            .type = "size, multiple of 512 bytes",
            .check = disk_size_problem});
    v.field("backing", d.backing,
            {.meaning = "Used only when creating a missing image: it becomes a qcow2 overlay on "
                        "this file. qcow2 only. Must exist when the image has to be created."});
    v.field("bus", d.bus,
            {.meaning = "`virtio`: virtio-blk. `scsi`: a `scsi-hd` on one shared virtio-scsi "
                        "controller. `ide`: `ide-hd`, at most 4 on `pc` and 6 on `q35`, never "
                        "read-only. `microvm` takes only `virtio`."});
    v.field("read_only", d.read_only,
            {.meaning = "Opens the image read-only. A read-only disk is never created, so `size` "
                        "and `backing` are refused, and the image must exist."});
    v.field("cache", d.cache,
            {.meaning = "As qemu's `-drive cache=`: `none` and `directsync` bypass the host page "
                        "cache (`O_DIRECT`, which some file systems such as tmpfs refuse); "
                        "`writethrough` and `directsync` turn the guest's write cache off; "
                        "`unsafe` ignores flushes."});
    v.field("node_name", d.node_name,
            {.meaning = "The qemu block node name, used in QMP commands. A letter, then letters, "
                        "digits, `_`, `.`, `-`; at most 26 characters, because the protocol node "
                        "under it is `<node_name>-file` and qemu allows 31. Unique, including "
                        "against other disks' `-file` nodes.",
             .default_text = "the disk's `name`"});
    v.section("encryption", d.encryption,
              {.meaning = "The image's contents are encrypted: see below. qcow2 only."});
}

template <class V>
void describe(V& v, section_of<serial_definition> auto& s) {
    v.serial_log("log", s,
                 {.meaning = "`true` appends the console output to `<state>/serial.log`; a path "
                             "logs there instead (its directory must exist); `false` keeps no "
                             "log. A path spelled like an old boolean (`yes`, `on`, ...) must be "
                             "quoted.",
                  .type = "boolean or path",
                  .default_text = "`true`"});
    v.field("socket", s.socket, {.meaning = "Serves the live console on `<state>/console.sock`."});
}

template <class V>
void describe(V& v, section_of<port_forward> auto& f) {
    v.field("protocol", f.protocol, {});
    v.field("host_addr", f.host_addr,
            {.meaning = "The host address to listen on; `0.0.0.0` listens on all of them.",
             .type = "IPv4 address",
             .check = ipv4_problem});
    v.host_port("host_port", f.host_port,
                {.meaning = "The same protocol, address and port may be forwarded only once. "
                            "`auto` picks a free port each time a qemu of the VM starts (a "
                            "reset to a point or a clone starts one): `qmpkit status` shows it "
                            "(`--json`: `forwards`), and `qmpkit ssh` finds it. A fixed port "
                            "cannot be bound by two qemus at once, so a VM with one cannot be "
                            "cloned and its standby resets fail: use `auto` for VMs that are "
                            "reset or cloned.",
                 .required = true,
                 .type = "integer 1–65535 \\| `auto`",
                 .min = 1,
                 .max = 65535});
    v.field("guest_port", f.guest_port, {.required = true, .min = 1, .max = 65535});
}

template <class V>
void describe(V& v, section_of<network_definition> auto& n) {
    v.field("mode", n.mode,
            {.meaning = "User-mode networking (slirp): no privileges, NAT to the host."});
    v.sections("forwards", n.forwards,
               {.meaning = "Host ports forwarded into the guest; see below.",
                .type = "list of port forwards"});
    v.field("mac", n.mac,
            {.meaning = "`xx:xx:xx:xx:xx:xx`, unicast. The default is `52:54:00:` plus three "
                        "bytes of a hash of the VM name, so a VM keeps its MAC from one launch "
                        "to the next.",
             .default_text = "derived from `name`",
             .check = mac_problem});
}

template <class V>
void describe(V& v, section_of<cloud_init_definition> auto& c) {
    v.field("user", c.user,
            {.meaning = "The user cloud-init makes (passwordless `sudo`, locked password, bash) "
                        "and `qmpkit ssh` logs in as. It lingers (a `bootcmd` touches "
                        "`/var/lib/systemd/linger/USER`): logind keeps the user's systemd "
                        "instance running between logins instead of starting one for each, which "
                        "halves a login's cost in a TCG guest (1.4–1.7 s instead of 2.7–3.1 s on "
                        "the Debian guest).",
             .check = guest_user_problem});
    v.field("hostname", c.hostname,
            {.meaning = "`local-hostname` in meta-data; a valid host name.",
             .default_text = "the VM's `name`",
             .check = hostname_problem});
    v.field("ssh_authorized_keys", c.ssh_authorized_keys,
            {.meaning = "Your own public keys, authorized for `user` besides the VM's key.",
             .type = "list of SSH public keys",
             .check = public_key_problem});
    v.field("user_data", c.user_data,
            {.meaning = "A user-data file passed to the guest as it is, instead of the one qmpkit "
                        "writes (the VM's key still reaches the image's default user through "
                        "meta-data's `public-keys`)."});
    v.field("network_config", c.network_config,
            {.meaning = "cloud-init network configuration (version 1 or 2), passed as it is. "
                        "Without it cloud-init's default applies (DHCP on the first NIC)."});
}

template <class V>
void describe(V& v, section_of<share_definition> auto& s) {
    v.field("tag", s.tag,
            {.meaning = "The mount tag: up to 31 letters, digits, `_`, `.`, `-`; unique in the VM.",
             .required = true,
             .check = share_tag_problem});
    v.field("path", s.path,
            {.meaning = "The host directory (it must exist). With `security_model=none` files keep "
                        "the host's owners and modes; what the guest creates belongs to the user "
                        "qemu runs as (see `security.run_as`).",
             .required = true});
    v.field("read_only", s.read_only,
            {.meaning = "Exported read-only (`readonly=on`): writes in the guest fail with "
                        "\"Read-only file system\"."});
    v.field("mount", s.mount,
            {.meaning = "Where cloud-init mounts it (absolute, no blanks or quotes). Needs "
                        "`cloud_init:` without its own `user_data` (mount the tag from your "
                        "user-data there).",
             .type = "guest path",
             .check = guest_mount_problem,
             .empty_is_unset = true});
}

template <class V>
void describe(V& v, section_of<reset_definition> auto& r) {
    v.field("strategy", r.strategy,
            {.meaning = "How `qmpkit reset VM` brings the VM back to a known state: see the "
                        "strategies below."});
}

template <class V>
void describe(V& v, section_of<security_definition> auto& s) {
    v.field("sandbox", s.sandbox,
            {.meaning = "qemu's seccomp filter, "
                        "`-sandbox on,obsolete=deny,elevateprivileges=deny,spawn=deny,"
                        "resourcecontrol=deny`: qemu may not start programs (`fork`/`execve`), "
                        "change its user or group, change scheduling, priorities or CPU affinity, "
                        "or use obsolete system calls; a call outside the filter kills qemu "
                        "(`SIGSYS`). Everything qmpkit does works under it (see "
                        "[SECURITY.md](../SECURITY.md)). `false` is for debugging. It changes no "
                        "device, so snapshots load either way."});
    v.field("run_as", s.run_as,
            {.meaning = "qemu switches to this user and its groups (`-runas`) once it has opened "
                        "what it needs at start. qmpkit must run as root; the user must exist and "
                        "must not be uid 0. Use a user of its own (not `nobody`, which other "
                        "daemons share).",
             .type = "user name",
             .default_text = "none",
             .check = host_user_problem,
             .empty_is_unset = true});
}

template <class V>
void describe(V& v, section_of<vm_definition> auto& d) {
    v.field("name", d.name,
            {.meaning = "`[A-Za-z0-9][A-Za-z0-9_.-]{0,63}`. Names the qemu process "
                        "(`-name guest=`) and the VM's state.",
             .required = true,
             .check = vm_name_problem});
    v.field("machine", d.machine,
            {.meaning = "The qemu machine type. `microvm` has no PCI: only virtio disks, and it is "
                        "meant for direct kernel boot."});
    v.field("accel", d.accel,
            {.meaning = "`auto` uses KVM when the CPU flags show `vmx` or `svm` **and** `/dev/kvm` "
                        "opens read-write, TCG otherwise. An explicit `kvm` is used as is: if KVM "
                        "cannot work, qemu says so instead of the VM silently running under TCG. "
                        "With KVM the guest gets the host CPU (`-cpu host`)."});
    v.field("cpus", d.cpus, {.meaning = "`-smp`.", .min = 1, .max = 255});
    v.size(
        "memory", d.memory,
        {.meaning = "`-m`.", .type = "size, at least `16M`, whole MiB", .check = memory_problem});
    v.field("kernel", d.kernel,
            {.meaning = "A kernel to boot directly (`-kernel`). The file must exist."});
    v.field("initrd", d.initrd, {.meaning = "`-initrd`; needs `kernel`. The file must exist."});
    v.field("append", d.append,
            {.meaning = "The kernel command line (`-append`); needs `kernel`."});
    v.field("boot", d.boot,
            {.meaning = "`kernel` needs `kernel`. `disk` needs at least one disk, boots the first "
                        "one (`bootindex` 0), and refuses `kernel`/`initrd`/`append`, which it "
                        "would not use.",
             .default_text = "`kernel` when `kernel` is set, else `disk`"});
    v.field("firmware", d.firmware,
            {.meaning = "`uefi` boots with Debian's OVMF (package `ovmf`, "
                        "`/usr/share/OVMF/OVMF_CODE_4M.fd`, read-only, the machine's first flash) "
                        "and the VM's own UEFI variable store as its second flash. Not on "
                        "`microvm`."});
    v.nvram("nvram", d,
            {.meaning = "`uefi` only: the variable store. Made from OVMF's empty store "
                        "(`OVMF_VARS_4M.fd`) when missing, and kept as **qcow2**, so internal "
                        "snapshots, reverts, reset points and clones carry it like any disk (with "
                        "a raw store qemu refuses `savevm`: \"Device 'pflash1' is writable but "
                        "does not support snapshots\"). `qmpkit disks` lists it as disk `nvram`; "
                        "it cannot be detached, and no disk may be named `nvram`.",
             .type = "path",
             .default_text = "`<directory of the first disk>/<name>-nvram.qcow2`"});
    v.field("command_channel", d.command_channel,
            {.meaning = "Adds the tiny guest's shell port: a virtio-serial port named "
                        "`org.qmpkit.shell`, reachable on `<state>/shell.sock`."});
    v.field("guest_agent", d.guest_agent,
            {.meaning = "Adds the port of the QEMU guest agent (`qemu-ga`): a virtio-serial port "
                        "named `org.qemu.guest_agent.0`, reachable on `<state>/agent.sock`, on the "
                        "same controller as the command channel. The guest must run `qemu-ga` on "
                        "it (the tiny guest does). `qmpkit exec`, `qmpkit guest-ping`, `snapshot "
                        "create --disk-only --quiesce` need it; `qmpkit shutdown` asks the agent "
                        "first. After a reset to a point (template or standby) or a clone, the "
                        "agent sets the guest's clock to the host's (`guest-set-time`), which "
                        "would otherwise run from the point's time: off the reset's path, in a "
                        "process that holds the VM until it is done, so the VM's next `qmpkit` "
                        "command sees the right clock (on TCG it takes about 0.25 s)."});
    v.field("vmgenid", d.vmgenid,
            {.meaning = "Adds a VM generation ID device (`-device vmgenid,guid=auto`, ACPI; not "
                        "on `microvm`). Every qemu gets a new id, and loading a state writes the "
                        "loading qemu's id into the guest and notifies it, so a clone, or a guest "
                        "reset to a point by a new qemu (the `template` and `standby` "
                        "strategies), learns that it was copied: Linux reseeds its random number "
                        "generator on it. `qmpkit qmp VM query-vm-generation-id` shows the id. A "
                        "`loadvm` reset keeps the qemu and so the id. Changing this changes the "
                        "machine: snapshots taken without it do not load with it."});
    v.sections("disks", d.disks,
               {.meaning = "See below; order matters (it fixes device addresses and the boot "
                           "disk).",
                .type = "list of disks"});
    v.section("serial", d.serial, {.meaning = "The guest's first serial port (`ttyS0`)."});
    v.section("network", d.network,
              {.meaning = "See below.", .default_text = "none (no network card at all)"});
    v.section("cloud_init", d.cloud_init,
              {.meaning = "Seeds the guest through cloud-init's NoCloud source; see below. "
                          "`cloud_init: {}` (or `cloud_init:` alone) takes every default.",
               .empty_is_defaults = true});
    v.sections("shares", d.shares,
               {.meaning = "Host directories the guest mounts over virtio-9p; see below.",
                .type = "list of shares"});
    v.field("extra_args", d.extra_args,
            {.meaning = "Appended verbatim at the end of the qemu command line. An escape hatch: "
                        "nothing checks them.",
             .type = "list of strings"});
    v.section("reset", d.reset, {.meaning = "How `qmpkit reset` brings the VM back; see below."});
    v.section("security", d.security,
              {.meaning = "qemu's seccomp sandbox and the user qemu runs as."});
}

// The defaults that other fields decide, given which fields the YAML set (`given("boot")`,
// `given("disks[0].node_name")`). The nvram disk is the reader's: it is made from nvram: and
// firmware: (see definition_loader.cpp).
template <class Given>
void complete_defaults(vm_definition& d, const Given& given) {
    if (!given("boot"))
        d.boot = d.kernel ? boot_mode::kernel : boot_mode::disk;
    for (std::size_t i = 0; i < d.disks.size(); ++i)
        if (!given(disk_field(i) + ".node_name"))
            d.disks[i].node_name = d.disks[i].name;
    // An empty MAC or host name is a left-out one.
    if (d.network && d.network->mac.empty())
        d.network->mac = default_mac_address(d.name);
    if (d.cloud_init && d.cloud_init->hostname.empty())
        d.cloud_init->hostname = d.name;
}

} // namespace qmpkit::launcher::schema
