#include <qmpkit/launcher/error.hpp>
#include <qmpkit/launcher/qemu_command.hpp>
#include <qmpkit/launcher/qemu_img.hpp>

#include <boost/json.hpp>

#include <fstream>
#include <sstream>
#include <string_view>
#include <sys/un.h>

namespace qmpkit::launcher {

namespace {

namespace fs = std::filesystem;
namespace json = boost::json;

// Under TCG the microvm kernel can hang calibrating a TSC whose speed it cannot
// measure; telling it the rate skips the calibration.
constexpr std::string_view microvm_tcg_tsc = "tsc_early_khz=";

// In qemu's "key=value,..." option strings a comma inside a value is written twice.
std::string escape_option(std::string_view value) {
    std::string out;
    out.reserve(value.size());
    for (char c : value) {
        out += c;
        if (c == ',')
            out += ',';
    }
    return out;
}

std::string escape_path(const fs::path& value) {
    return escape_option(std::string_view(value.native()));
}

void require_socket_path(const fs::path& p, std::string_view what) {
    // sun_path also holds the terminating NUL.
    constexpr std::size_t limit = sizeof(sockaddr_un{}.sun_path) - 1;
    if (p.empty())
        throw error("no " + std::string(what) + " path given");
    if (p.native().size() > limit)
        throw error(std::string(what) + " path is " + std::to_string(p.native().size()) +
                    " bytes, longer than the " + std::to_string(limit) +
                    " a UNIX socket allows: " + p.string());
}

// qemu's seccomp filter. qemu installs it while it parses its options, long before -runas
// switches users at the end of its start-up, so elevateprivileges=deny would kill qemu (SIGSYS)
// at that setgid(); =children denies set*id as well. With run_as the set*id calls stay allowed:
// once qemu has switched, all its uids and gids are the unprivileged user's and there is no
// privilege left for them to regain.
std::string sandbox_option(const security_definition& security) {
    return std::string("on,obsolete=deny,elevateprivileges=") +
           (security.run_as.empty() ? "deny" : "allow") + ",spawn=deny,resourcecontrol=deny";
}

bool sets_kernel_parameter(std::string_view append, std::string_view parameter) {
    auto name = parameter.substr(0, parameter.find('=') + 1);
    std::istringstream words{std::string(append)};
    std::string word;
    while (words >> word)
        if (word.starts_with(name))
            return true;
    return false;
}

class command_builder {
public:
    command_builder(const vm_definition& def, const launch_paths& paths, accel_mode accel,
                    const qemu_command_options& options)
        : def_(def)
        , paths_(paths)
        , accel_(accel)
        , options_(options)
        , microvm_(def.machine == machine_type::microvm) {}

    std::vector<std::string> build() {
        if (accel_ != accel_mode::kvm && accel_ != accel_mode::tcg)
            throw error("the accelerator must be resolved to kvm or tcg before building the qemu "
                        "command");
        if (paths_.qmp_listen_fd < 0)
            throw error("no QMP listening socket given");

        add({options_.qemu_binary, "-nodefaults", "-no-user-config", "-display", "none", "-name",
             "guest=" + escape_option(std::string_view(def_.name))});
        std::string machine(to_string(def_.machine));
        if (!paths_.memory_file.empty())
            machine += ",memory-backend=ram";
        if (const auto* nvram = nvram_disk(def_))
            machine += ",pflash0=" + std::string(uefi_code_node) + ",pflash1=" + nvram->node_name;
        add({"-machine", machine});
        if (def_.security.sandbox)
            add({"-sandbox", sandbox_option(def_.security)});
        if (!def_.security.run_as.empty())
            add({"-runas", def_.security.run_as});
        if (accel_ == accel_mode::kvm)
            add({"-accel", "kvm", "-cpu", "host"});
        else {
            // Under TCG an ioeventfd buys nothing (the vCPU thread emulates the notify either
            // way) but costs: every stop and start registers and unregisters one per virtqueue,
            // which made `cont` after a reset ~20 ms instead of ~2 ms. extra_args may override.
            add({"-accel", "tcg", "-global", "virtio-pci.ioeventfd=off", "-global",
                 "virtio-mmio.ioeventfd=off"});
        }
        add({"-smp", std::to_string(def_.cpus), "-m", std::to_string(def_.memory / mib) + "M"});
        if (!paths_.memory_file.empty()) {
            // RAM in a named file: a reset point saves only the device state and maps the RAM
            // back copy-on-write (share=off) instead of loading it.
            json::object ram{{"qom-type", "memory-backend-file"},
                             {"id", "ram"},
                             {"size", def_.memory},
                             {"mem-path", paths_.memory_file.string()},
                             {"share", paths_.memory_shared}};
            add({"-object", json::serialize(ram)});
        }
        if (options_.start_paused)
            add({"-S"});
        add_hotplug_ports();

        add({"-chardev",
             "socket,id=qmp,fd=" + std::to_string(paths_.qmp_listen_fd) + ",server=on,wait=off",
             "-mon", "chardev=qmp,mode=control"});
        if (paths_.events_listen_fd >= 0)
            add({"-chardev",
                 "socket,id=qmp-events,fd=" + std::to_string(paths_.events_listen_fd) +
                     ",server=on,wait=off",
                 "-mon", "chardev=qmp-events,mode=control"});
        if (paths_.supervisor_monitor_fd >= 0)
            add({"-chardev",
                 "socket,id=qmp-supervisor,fd=" + std::to_string(paths_.supervisor_monitor_fd),
                 "-mon", "chardev=qmp-supervisor,mode=control"});
        add_serial();
        add_command_channel();
        add_guest_agent();
        if (def_.vmgenid)
            add_device({{"driver", "vmgenid"}, {"id", "vmgenid0"}, {"guid", "auto"}});
        add_disks();
        add_cloud_init_seed();
        add_network();
        add_shares();
        add_kernel();
        argv_.insert(argv_.end(), def_.extra_args.begin(), def_.extra_args.end());
        return std::move(argv_);
    }

private:
    void add(std::initializer_list<std::string> args) {
        argv_.insert(argv_.end(), args.begin(), args.end());
    }

    void add_device(const json::object& properties) {
        add({"-device", json::serialize(properties)});
    }

    void add_serial() {
        auto log = serial_log_file(def_, paths_);
        if (def_.serial.log && log.empty())
            throw error("no serial log path given");
        std::string chardev;
        if (def_.serial.socket) {
            require_socket_path(paths_.console_socket, "console socket");
            chardev = "socket,id=serial0,path=" + escape_path(paths_.console_socket) +
                      ",server=on,wait=off";
            if (!log.empty())
                chardev += ",logfile=" + escape_path(log) + ",logappend=on";
        } else if (!log.empty()) {
            chardev = "file,id=serial0,path=" + escape_path(log) + ",append=on";
        } else {
            // The guest keeps its serial port even when nobody listens, so that turning the
            // console off does not change the machine a snapshot was taken of.
            chardev = "null,id=serial0";
        }
        add({"-chardev", chardev, "-serial", "chardev:serial0"});
    }

    void add_command_channel() {
        if (!def_.command_channel)
            return;
        require_socket_path(paths_.shell_socket, "shell socket");
        add_device(
            {{"driver", microvm_ ? "virtio-serial-device" : "virtio-serial-pci"}, {"id", "vser0"}});
        add({"-chardev",
             "socket,id=shell,path=" + escape_path(paths_.shell_socket) + ",server=on,wait=off"});
        add_device({{"driver", "virtserialport"},
                    {"id", "shell0"},
                    {"bus", "vser0.0"},
                    {"chardev", "shell"},
                    {"name", "org.qmpkit.shell"}});
    }

    void add_guest_agent() {
        if (!def_.guest_agent)
            return;
        require_socket_path(paths_.agent_socket, "guest agent socket");
        // The command channel's controller takes both ports.
        if (!def_.command_channel)
            add_device({{"driver", microvm_ ? "virtio-serial-device" : "virtio-serial-pci"},
                        {"id", "vser0"}});
        add({"-chardev",
             "socket,id=agent,path=" + escape_path(paths_.agent_socket) + ",server=on,wait=off"});
        add_device({{"driver", "virtserialport"},
                    {"id", "agent0"},
                    {"bus", "vser0.0"},
                    {"chardev", "agent"},
                    {"name", "org.qemu.guest_agent.0"}});
    }

    // q35's root complex cannot take hot-plugged devices: spare root ports can (attach-disk).
    void add_hotplug_ports() {
        if (def_.machine != machine_type::q35)
            return;
        for (int i = 0; i < hotplug_port_count; ++i)
            add_device(
                {{"driver", "pcie-root-port"}, {"id", hotplug_port_id(i)}, {"chassis", i + 1}});
    }

    void add_disks() {
        if (nvram_disk(def_)) {
            // The firmware code, shared by every VM and never written.
            const auto file = std::string(uefi_code_node) + "-file";
            add({"-blockdev",
                 json::serialize(json::object{{"driver", "file"},
                                              {"node-name", file},
                                              {"filename", uefi_code_file},
                                              {"read-only", true}}),
                 "-blockdev",
                 json::serialize(json::object{{"driver", "raw"},
                                              {"node-name", uefi_code_node},
                                              {"file", file},
                                              {"read-only", true}})});
        }
        bool scsi_controller = false;
        for (std::size_t i = 0; i < def_.disks.size(); ++i) {
            const auto& disk = def_.disks[i];
            if (disk.bus == disk_bus::scsi && !scsi_controller) {
                add_device({{"driver", "virtio-scsi-pci"}, {"id", "scsi0"}});
                scsi_controller = true;
            }
            add_blockdev(disk);
            if (disk.bus != disk_bus::pflash) // the machine's flash takes it (-machine pflash1)
                add_disk_device(disk, i == 0 && def_.boot == boot_mode::disk);
        }
    }

    void add_blockdev(const disk_definition& disk) {
        std::vector<image_info> chain;
        if (disk.encryption) {
            // qemu reads the passphrase from the key file itself: it is never on the command
            // line, and no copy of it is made.
            add({"-object",
                 json::serialize(json::object{{"qom-type", "secret"},
                                              {"id", disk_secret_id(disk)},
                                              {"format", "raw"},
                                              {"file", disk.encryption->key_file.string()}})});
            // An encrypted backing file opened from the image's header would get no key: the
            // whole chain is spelled out instead. A missing image is created encrypted, alone.
            if (const auto known = options_.encrypted_chains.find(disk.name);
                known != options_.encrypted_chains.end())
                chain = known->second;
        }
        for (const auto& node : disk_block_nodes(disk, chain))
            add({"-blockdev", json::serialize(node)});
    }

    void add_disk_device(const disk_definition& disk, bool boot) {
        add_device(disk_device(disk, def_.machine, boot));
    }

    // A read-only disk like any other, so the guest's devices stay the same from start to start.
    void add_cloud_init_seed() {
        if (!def_.cloud_init)
            return;
        if (paths_.cloud_init_seed.empty())
            throw error("no cloud-init seed image given");
        disk_definition seed;
        seed.name = std::string(cloud_init_seed_node);
        seed.node_name = seed.name;
        seed.file = paths_.cloud_init_seed;
        seed.format = disk_format::raw;
        seed.read_only = true;
        add_blockdev(seed);
        add_disk_device(seed, false);
    }

    void add_network() {
        if (!def_.network)
            return;
        const auto& forwards = def_.network->forwards;
        if (!paths_.forward_ports.empty() && paths_.forward_ports.size() != forwards.size())
            throw error("resolved host ports do not match network.forwards");
        std::string netdev = "user,id=net0";
        for (std::size_t i = 0; i < forwards.size(); ++i) {
            const auto& fwd = forwards[i];
            const auto port =
                paths_.forward_ports.empty() ? fwd.host_port : paths_.forward_ports[i];
            if (port == 0)
                throw error("network.forwards[" + std::to_string(i) +
                            "]: host_port auto was not resolved to a port");
            netdev += ",hostfwd=" + std::string(to_string(fwd.protocol)) + ":" + fwd.host_addr +
                      ":" + std::to_string(port) + "-:" + std::to_string(fwd.guest_port);
        }
        add({"-netdev", netdev});
        add_device({{"driver", microvm_ ? "virtio-net-device" : "virtio-net-pci"},
                    {"id", "net0"},
                    {"netdev", "net0"},
                    {"mac", def_.network->mac}});
    }

    // security_model=none: the guest's chown and chmod act on the host's files as far as the user
    // qemu runs as may (failures are not reported to the guest); no xattrs, so the host sees
    // plain files. multidevs=remap keeps inode numbers unique when the directory spans file
    // systems.
    void add_shares() {
        for (std::size_t i = 0; i < def_.shares.size(); ++i) {
            const auto& share = def_.shares[i];
            const auto id = "share" + std::to_string(i);
            add({"-fsdev", "local,id=" + id + ",path=" + escape_path(share.path) +
                               ",security_model=none,multidevs=remap" +
                               (share.read_only ? ",readonly=on" : "")});
            add_device({{"driver", microvm_ ? "virtio-9p-device" : "virtio-9p-pci"},
                        {"id", id + "-dev"},
                        {"fsdev", id},
                        {"mount_tag", share.tag}});
        }
    }

    void add_kernel() {
        if (def_.boot != boot_mode::kernel || !def_.kernel)
            return;
        add({"-kernel", def_.kernel->string()});
        if (def_.initrd)
            add({"-initrd", def_.initrd->string()});
        std::string append = def_.append.value_or("");
        if (microvm_ && accel_ == accel_mode::tcg &&
            !sets_kernel_parameter(append, microvm_tcg_tsc))
            append += (append.empty() ? "" : " ") + std::string(microvm_tcg_tsc) +
                      std::to_string(required_tsc_khz());
        if (def_.append || !append.empty())
            add({"-append", append});
    }

    const vm_definition& def_;
    const launch_paths& paths_;
    accel_mode accel_;
    const qemu_command_options& options_;

    std::uint64_t required_tsc_khz() const {
        if (options_.tsc_khz == 0)
            throw error("a microvm under TCG needs the host's TSC rate: set "
                        "qemu_command_options::tsc_khz (read_host_facts)");
        return options_.tsc_khz;
    }
    bool microvm_;
    std::vector<std::string> argv_;
};

} // namespace

std::array<boost::json::object, 2> disk_block_nodes(const disk_definition& disk,
                                                    std::span<const image_info> chain) {
    bool direct = disk.cache == cache_mode::none || disk.cache == cache_mode::directsync;
    bool no_flush = disk.cache == cache_mode::unsafe;
    // Every node carries the cache settings: with -blockdev nothing is inherited from a parent.
    json::object cache{{"direct", direct}, {"no-flush", no_flush}};
    auto protocol_node = disk.node_name + "-file";
    // The disk's key opens every encrypted layer: qmpkit encrypts a disk's overlays with it.
    auto encrypt = [&](std::size_t layer) -> json::value {
        if (!disk.encryption || (layer < chain.size() && !chain[layer].encrypted))
            return nullptr;
        return json::object{{"format", to_string(disk.encryption->format)},
                            {"key-secret", disk_secret_id(disk)}};
    };

    json::object file{{"driver", "file"},
                      {"node-name", protocol_node},
                      {"filename", disk.file.string()},
                      {"cache", cache},
                      {"read-only", disk.read_only}};
    json::object format{{"driver", to_string(disk.format)},
                        {"node-name", disk.node_name},
                        {"file", protocol_node},
                        {"cache", cache},
                        {"read-only", disk.read_only}};
    if (auto e = encrypt(0); !e.is_null())
        format["encrypt"] = std::move(e);
    // The backing layers, base last, each nested in the one above; below the last one given,
    // qemu follows the image headers.
    json::value backing;
    for (std::size_t layer = chain.size(); layer-- > 1;) {
        const auto& info = chain[layer];
        // Where the layer above says its backing file is: qemu-img prints a backing layer's
        // filename as recorded, which may be relative to that layer's directory.
        const auto file = chain[layer - 1].full_backing_file.value_or(info.filename.string());
        // No "read-only": qemu opens a backing file read-only by default, and an explicit
        // setting would stop block-commit from reopening it read-write to merge into it.
        json::object node{{"driver", info.format},
                          {"file", {{"driver", "file"}, {"filename", file}, {"cache", cache}}},
                          {"cache", cache}};
        if (auto e = encrypt(layer); !e.is_null())
            node["encrypt"] = std::move(e);
        if (!backing.is_null())
            node["backing"] = std::move(backing);
        backing = std::move(node);
    }
    if (!backing.is_null())
        format["backing"] = std::move(backing);
    return {std::move(file), std::move(format)};
}

std::array<boost::json::object, 2> overlay_block_nodes(const disk_definition& disk,
                                                       const std::filesystem::path& overlay,
                                                       const std::string& node) {
    auto layer = disk;
    layer.file = overlay;
    layer.format = disk_format::qcow2;
    layer.node_name = node;
    layer.read_only = false;
    auto nodes = disk_block_nodes(layer);
    nodes[1]["backing"] = nullptr;
    return nodes;
}

std::string disk_secret_id(const disk_definition& disk) {
    return "key-" + disk.name;
}

std::string image_file_of(std::string_view qemu_filename) {
    constexpr std::string_view prefix = "json:";
    if (!qemu_filename.starts_with(prefix))
        return std::string(qemu_filename);
    // A node with options beyond its file name (an encryption key, a spelled-out backing
    // chain) is named by all its options: the image is the innermost "file"'s filename.
    boost::system::error_code ec;
    auto value = json::parse(qemu_filename.substr(prefix.size()), ec);
    const json::object* node = ec ? nullptr : value.if_object();
    while (node) {
        const auto* file = node->if_contains("file");
        if (!file || !file->is_object()) {
            if (const auto* name = node->if_contains("filename"); name && name->is_string())
                return std::string(name->as_string());
            break;
        }
        node = &file->as_object();
    }
    return std::string(qemu_filename);
}

boost::json::object disk_device(const disk_definition& disk, machine_type machine, bool boot) {
    json::object dev;
    switch (disk.bus) {
    case disk_bus::virtio:
        dev["driver"] = machine == machine_type::microvm ? "virtio-blk-device" : "virtio-blk-pci";
        break;
    case disk_bus::scsi:
        dev["driver"] = "scsi-hd";
        dev["bus"] = "scsi0.0";
        break;
    case disk_bus::ide:
        dev["driver"] = "ide-hd";
        break;
    case disk_bus::pflash:
        throw error("disk '" + disk.name + "' is the UEFI variable store, not a device");
    }
    dev["id"] = disk_device_id(disk);
    dev["drive"] = disk.node_name;
    // The serial shows up in the guest as /dev/disk/by-id/*-<name>, a stable way to find it.
    if (disk.bus != disk_bus::ide)
        dev["serial"] = disk.name;
    if (disk.cache == cache_mode::writethrough || disk.cache == cache_mode::directsync)
        dev["write-cache"] = "off";
    if (boot)
        dev["bootindex"] = 0;
    return dev;
}

std::string disk_device_id(const disk_definition& disk) {
    return disk.name + "-dev";
}

std::string hotplug_port_id(int index) {
    return "hotplug" + std::to_string(index);
}

launch_paths default_launch_paths(const std::filesystem::path& state_dir, int qmp_listen_fd) {
    launch_paths paths;
    paths.state_dir = state_dir;
    paths.qmp_listen_fd = qmp_listen_fd;
    paths.serial_log = state_dir / "serial.log";
    paths.console_socket = state_dir / "console.sock";
    paths.shell_socket = state_dir / "shell.sock";
    paths.agent_socket = state_dir / "agent.sock";
    paths.cloud_init_seed = state_dir / "cidata.iso";
    return paths;
}

std::filesystem::path serial_log_file(const vm_definition& def, const launch_paths& paths) {
    if (!def.serial.log)
        return {};
    return def.serial.log_file.empty() ? paths.serial_log : def.serial.log_file;
}

std::uint64_t host_tsc_khz() {
    std::ifstream cpuinfo("/proc/cpuinfo");
    std::string line;
    while (std::getline(cpuinfo, line)) {
        if (line.rfind("cpu MHz", 0) != 0)
            continue;
        const auto colon = line.find(':');
        try {
            const double mhz = std::stod(line.substr(colon + 1));
            if (mhz > 0)
                return static_cast<std::uint64_t>(mhz * 1000);
        } catch (const std::exception&) {
        }
        break;
    }
    return 1000000;
}

void read_host_facts(const vm_definition& def, accel_mode accel, const qemu_img& img,
                     qemu_command_options& options) {
    if (def.machine == machine_type::microvm && accel == accel_mode::tcg && options.tsc_khz == 0)
        options.tsc_khz = host_tsc_khz();
    for (const auto& disk : def.disks) {
        std::error_code ec;
        if (disk.encryption && !options.encrypted_chains.contains(disk.name) &&
            fs::exists(disk.file, ec))
            options.encrypted_chains[disk.name] = img.info_chain(disk.file);
    }
}

std::vector<std::string> build_qemu_command(const vm_definition& def, const launch_paths& paths,
                                            accel_mode accel, const qemu_command_options& options) {
    return command_builder(def, paths, accel, options).build();
}

} // namespace qmpkit::launcher
