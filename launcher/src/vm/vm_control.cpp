#include "images/disk_creation.hpp"

#include <qmpkit/launcher/definition_loader.hpp>
#include <qmpkit/launcher/error.hpp>
#include <qmpkit/launcher/launch.hpp>
#include <qmpkit/launcher/qemu_command.hpp>
#include <qmpkit/launcher/qemu_process.hpp>
#include <qmpkit/launcher/standby.hpp>
#include <qmpkit/launcher/vm_agent.hpp>
#include <qmpkit/launcher/vm_control.hpp>
#include <qmpkit/launcher/vm_lock.hpp>

#include <boost/json.hpp>

#include <csignal>
#include <fstream>
#include <thread>
#include <unistd.h>

namespace qmpkit::launcher {
namespace {

namespace json = boost::json;
using namespace std::chrono_literals;

// The supervisor records the end; give it a moment, and write it ourselves if it is gone too.
std::string settle_exit_record(const state_directory& dir, const runtime_info& runtime,
                               const std::string& reason, bool forced) {
    for (int i = 0; i < 100; ++i) {
        if (auto record = read_exit_record(dir))
            return record->state + " (" + record->reason + ")";
        if (!process_alive(runtime.supervisor_pid))
            break;
        std::this_thread::sleep_for(20ms);
    }
    exit_record record;
    record.state = "shutoff";
    record.reason = reason;
    record.forced = forced;
    record.exit = "ended without its supervisor";
    record.ended_at = std::chrono::duration_cast<std::chrono::seconds>(
                          std::chrono::system_clock::now().time_since_epoch())
                          .count();
    write_exit_record(dir, record);
    return record.state + " (" + record.reason + ")";
}

std::string disk_name_of(std::string_view qdev) {
    // The machine's own flash devices (firmware: uefi) have no id of ours: name them after
    // their nodes, which is what the definition calls them.
    if (qdev == "/machine/system.flash0")
        return std::string(uefi_code_node);
    if (qdev == "/machine/system.flash1")
        return std::string(nvram_disk_name);
    // "/machine/peripheral/<id>/virtio-backend" or "/machine/peripheral/<id>"
    constexpr std::string_view prefix = "/machine/peripheral/";
    if (!qdev.starts_with(prefix))
        return std::string(qdev);
    auto id = qdev.substr(prefix.size());
    id = id.substr(0, id.find('/'));
    if (id.ends_with("-dev"))
        id.remove_suffix(4);
    return std::string(id);
}

std::string string_at(const json::object& o, const char* key) {
    const auto* v = o.if_contains(key);
    return v && v->is_string() ? std::string(v->get_string()) : std::string();
}

// Which disk stopped the guest, from query-block's io-status ("nospace" or "failed").
std::string io_error_reason(qmp::client& qmp) {
    std::string reason;
    const auto reply = qmp.execute("query-block");
    for (const auto& entry : reply.as_array()) {
        const auto& o = entry.as_object();
        const auto io = string_at(o, "io-status");
        if (io.empty() || io == "ok")
            continue;
        std::string file;
        if (const auto* in = o.if_contains("inserted"); in && in->is_object())
            file = image_file_of(string_at(in->as_object(), "file"));
        if (!reason.empty())
            reason += "; ";
        reason += "I/O error on disk '" + disk_name_of(string_at(o, "qdev")) + "' (" + file +
                  "): " + (io == "nospace" ? "no space left on its file system" : "write failed");
    }
    return (reason.empty() ? std::string("I/O error") : reason) +
           "; the guest continues where it stopped once resumed";
}

} // namespace

vm_status query_status(const state_directory& dir, const connect_options& options) {
    vm_status st;
    st.name = dir.vm_name();
    st.state_dir = dir.path();
    if (!std::filesystem::exists(dir.definition_copy())) {
        st.state = "undefined";
        return st;
    }
    try {
        auto def = load_definition(dir.definition_copy());
        st.machine = std::string(to_string(def.machine));
        st.cpus = def.cpus;
        st.memory = def.memory;
    } catch (const error&) {
        // A damaged copy does not stop us from saying whether qemu runs.
    }
    auto runtime = read_runtime_info(dir);
    if (runtime) {
        st.qemu_pid = runtime->qemu_pid;
        st.supervisor_pid = runtime->supervisor_pid;
        st.accel = runtime->accel;
        st.qemu_version = runtime->qemu_version;
        st.started_at = runtime->started_at;
    }
    if (runtime && is_running(dir)) {
        st.forwards = runtime->forwards;
        try {
            auto vm = vm_connection::open(dir, "status", options);
            auto status = vm.qmp().execute("query-status").as_object();
            const auto runstate = string_at(status, "status");
            st.run_state = runstate;
            st.state = runstate == "prelaunch" ? "paused" : runstate;
            if (runstate == "io-error") {
                // qemu stopped the guest on a write error (werror=enospc is the default): the
                // guest is paused, and resumes where it was once the cause is gone.
                st.state = "paused";
                st.reason = io_error_reason(vm.qmp());
            }
            // The accelerator is the runtime record's: qemu was started with it (-accel), and
            // one that cannot have it does not start.
            for (const auto& key : ready_standby_keys(dir))
                st.standby = key.substr(0, key.rfind('@'));
        } catch (const std::exception& e) {
            st.state = "unresponsive";
            st.reason = e.what();
        }
        return st;
    }
    if (auto record = read_exit_record(dir)) {
        st.state = record->state;
        st.reason = record->reason;
    } else if (runtime) {
        st.state = "crashed";
        st.reason = "qemu is gone and nobody recorded its end (was its supervisor killed?)";
    } else {
        st.state = "shutoff";
        st.reason = "never started";
    }
    if (st.state == "crashed")
        st.log_tail = tail_lines(dir.qemu_log(), 10);
    st.qemu_pid = -1;
    return st;
}

std::string shutdown_vm(const state_directory& dir, std::chrono::milliseconds timeout,
                        const connect_options& options) {
    auto vm = vm_connection::open(dir, "shutdown", options);
    const auto runtime = vm.runtime();
    // The guest agent powers the guest off from inside; the ACPI button when the VM has none or
    // it does not answer in time.
    bool by_agent = false;
    try {
        by_agent = request_agent_shutdown(dir, vm.definition(), 2s, options.logger);
    } catch (const error&) {
        // A damaged definition copy: the button still works.
    }
    if (!by_agent)
        vm.qmp().execute("system_powerdown");
    if (wait_for_exit(runtime.qemu_pid, timeout))
        return settle_exit_record(dir, runtime, "guest-shutdown", false);
    try {
        vm.qmp().execute("quit");
    } catch (const qmp::error&) {
        // qemu may be ending on its own at this very moment.
    }
    if (!wait_for_exit(runtime.qemu_pid, 10s)) {
        ::kill(runtime.qemu_pid, SIGKILL);
        wait_for_exit(runtime.qemu_pid, 10s);
    }
    return settle_exit_record(dir, runtime, "stopped after the shutdown timeout", true);
}

void destroy_vm(const state_directory& dir, const connect_options& options) {
    auto runtime = read_runtime_info(dir);
    if (!runtime || !is_running(dir))
        throw error("VM '" + dir.vm_name() + "' is not running");
    try {
        auto vm = vm_connection::open(dir, "destroy", options);
        vm.qmp().execute("quit");
    } catch (const std::exception&) {
        // Unresponsive or busy: the signal below does it.
    }
    if (!wait_for_exit(runtime->qemu_pid, 5s)) {
        ::kill(runtime->qemu_pid, SIGKILL);
        wait_for_exit(runtime->qemu_pid, 10s);
    }
    settle_exit_record(dir, *runtime, "destroyed", true);
}

void remove_vm(const state_directory& dir) {
    if (!std::filesystem::exists(dir.definition_copy()))
        throw error("no VM named '" + dir.vm_name() + "' in " + dir.path().parent_path().string());
    auto lock = vm_lock::acquire(dir.lock_file(), "removing the VM", std::chrono::seconds(0));
    if (is_running(dir))
        throw error("VM '" + dir.vm_name() + "' is running; stop it first (qmpkit shutdown " +
                    dir.vm_name() + ")");
    const auto root = dir.path().parent_path();
    for (const auto& other : state_directory::list(root)) {
        const state_directory d(root, other);
        if (other == dir.vm_name() || !is_running(d))
            continue;
        const auto runtime = read_runtime_info(d);
        for (const auto& arg : runtime ? runtime->command_line : std::vector<std::string>{})
            if (arg.find(dir.reset_points().string() + "/") != std::string::npos)
                throw error("VM '" + other + "' runs on a reset point of VM '" + dir.vm_name() +
                            "'; stop it first");
    }
    discard_standbys(dir);
    std::error_code ignored;
    std::filesystem::remove(dir.ram_file(), ignored);
    // Symbolic links (a clone's reset points) are removed, not followed.
    std::filesystem::remove_all(dir.path());
}

std::vector<block_device> list_block_devices(qmp::client& qmp) {
    std::vector<block_device> devices;
    const auto reply = qmp.execute("query-block");
    for (const auto& entry : reply.as_array()) {
        const auto& o = entry.as_object();
        const auto* inserted = o.if_contains("inserted");
        if (!inserted || !inserted->is_object())
            continue;
        const auto& in = inserted->as_object();
        block_device d;
        d.disk = disk_name_of(string_at(o, "qdev"));
        d.node_name = string_at(in, "node-name");
        d.file = image_file_of(string_at(in, "file")); // "json:{...}" for an encrypted disk
        d.format = string_at(in, "drv");
        d.read_only = in.contains("ro") && in.at("ro").as_bool();
        const auto* image = in.if_contains("image");
        while (image && image->is_object()) {
            image = image->as_object().if_contains("backing-image");
            if (image && image->is_object())
                d.backing_chain.push_back(image_file_of(string_at(image->as_object(), "filename")));
        }
        devices.push_back(std::move(d));
    }
    return devices;
}

std::vector<block_node> list_block_nodes(qmp::client& qmp) {
    std::vector<block_node> nodes;
    const auto reply = qmp.execute("query-named-block-nodes");
    for (const auto& entry : reply.as_array()) {
        const auto& o = entry.as_object();
        block_node n;
        n.node_name = string_at(o, "node-name");
        n.driver = string_at(o, "drv");
        n.file = image_file_of(string_at(o, "file"));
        const auto* image = o.if_contains("image");
        const auto* list =
            image && image->is_object() ? image->as_object().if_contains("snapshots") : nullptr;
        if (list && list->is_array())
            for (const auto& s : list->as_array())
                n.snapshot_names.push_back(string_at(s.as_object(), "name"));
        nodes.push_back(std::move(n));
    }
    return nodes;
}

std::optional<block_node> format_node_of(const std::vector<block_node>& nodes,
                                         const std::filesystem::path& file) {
    std::error_code ec;
    const auto wanted = std::filesystem::weakly_canonical(file, ec);
    for (const auto& n : nodes)
        if (n.driver != "file" && std::filesystem::weakly_canonical(n.file, ec) == wanted)
            return n;
    return std::nullopt;
}

std::optional<block_node> format_node_of(qmp::client& qmp, const std::filesystem::path& file) {
    return format_node_of(list_block_nodes(qmp), file);
}

void attach_disk(vm_connection& vm, const disk_definition& disk) {
    auto def = vm.definition();
    for (const auto& d : def.disks) {
        if (d.name == disk.name)
            throw error("VM '" + def.name + "' already has a disk named '" + disk.name + "'");
        if (d.node_name == disk.node_name)
            throw error("VM '" + def.name + "' already has a block node named '" + disk.node_name +
                        "'");
    }
    if (disk.bus == disk_bus::scsi && std::none_of(def.disks.begin(), def.disks.end(),
                                                   [](auto& d) { return d.bus == disk_bus::scsi; }))
        throw error("cannot attach a scsi disk: VM '" + def.name +
                    "' has no SCSI controller (it gets one when started with a scsi disk)");

    vm_definition single = def;
    single.disks = {disk};
    auto created = create_missing_disks(single);
    auto nodes = disk_block_nodes(disk);
    std::vector<std::string> added;
    try {
        for (auto& node : nodes) {
            vm.qmp().execute("blockdev-add", node);
            added.push_back(std::string(node.at("node-name").as_string()));
        }
        auto device = disk_device(disk, def.machine, false);
        if (def.machine == machine_type::q35 && disk.bus == disk_bus::virtio) {
            // The first spare root port that is free. A root port has one slot a PCIe guest
            // scans (0): pinning it makes an occupied port refuse instead of taking slot 1.
            device["addr"] = "0";
            for (int port = 0;; ++port) {
                device["bus"] = hotplug_port_id(port);
                try {
                    vm.qmp().execute("device_add", device);
                    break;
                } catch (const qmp::error&) {
                    if (port + 1 == hotplug_port_count)
                        throw;
                }
            }
        } else {
            vm.qmp().execute("device_add", device);
        }
    } catch (const qmp::error& e) {
        for (auto it = added.rbegin(); it != added.rend(); ++it) {
            try {
                vm.qmp().execute("blockdev-del", {{"node-name", *it}});
            } catch (const qmp::error&) {
            }
        }
        remove_created_disks(created);
        throw error("cannot attach disk '" + disk.name + "': " + e.what());
    }
    def.disks.push_back(disk);
    vm.store_definition(def);
}

void detach_disk(vm_connection& vm, const std::string& disk_name,
                 std::chrono::milliseconds timeout) {
    auto def = vm.definition();
    auto it = std::find_if(def.disks.begin(), def.disks.end(),
                           [&](auto& d) { return d.name == disk_name; });
    if (it == def.disks.end())
        throw error("VM '" + def.name + "' has no disk named '" + disk_name + "'");
    if (it->bus == disk_bus::pflash)
        throw error("disk '" + disk_name + "' of VM '" + def.name +
                    "' is its UEFI variable store, which cannot be detached");
    const auto id = disk_device_id(*it);

    auto deleted = vm.qmp().listen({"DEVICE_DELETED"});
    vm.qmp().execute("device_del", {{"id", id}});
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    for (;;) {
        const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
            deadline - std::chrono::steady_clock::now());
        if (left.count() <= 0)
            throw error("the guest did not release disk '" + disk_name + "' within " +
                        std::to_string(timeout.count() / 1000) +
                        " s (is it still mounted or in use?)");
        auto e = vm.qmp().wait_event(deleted, left);
        if (e && e->data.contains("device") && e->data.at("device").as_string() == id)
            break;
    }
    // Nodes added with -blockdev or blockdev-add outlive the device: delete them, top first.
    for (const auto& node : {it->node_name, it->node_name + "-file"}) {
        try {
            vm.qmp().execute("blockdev-del", {{"node-name", node}});
        } catch (const qmp::error& e) {
            if (e.diag().error_class != "GenericError")
                throw;
        }
    }
    def.disks.erase(it);
    vm.store_definition(def);
}

std::string wait_for_console_line(const state_directory& dir, const std::string& marker,
                                  std::chrono::milliseconds timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    // A VM being started right now has no runtime record yet: wait for it to appear.
    auto runtime = read_runtime_info(dir);
    while (!runtime || !is_running(dir)) {
        if (std::chrono::steady_clock::now() >= deadline)
            throw error(error_kind::timed_out,
                        "VM '" + dir.vm_name() + "' is not running (waited " +
                            std::to_string(timeout.count() / 1000) + " s for it to start)");
        std::this_thread::sleep_for(50ms);
        runtime = read_runtime_info(dir);
    }
    auto def = load_definition(dir.definition_copy());
    auto paths = default_launch_paths(dir.path(), -1);
    const auto log = serial_log_file(def, paths);
    if (log.empty())
        throw error("VM '" + dir.vm_name() + "' does not log its console (serial.log: false)");

    std::uint64_t offset = runtime->serial_log_offset;
    std::string partial;
    for (;;) {
        std::ifstream in(log, std::ios::binary);
        if (in) {
            in.seekg(static_cast<std::streamoff>(offset));
            std::string chunk((std::istreambuf_iterator<char>(in)),
                              std::istreambuf_iterator<char>());
            offset += chunk.size();
            partial += chunk;
            std::size_t start = 0;
            for (auto nl = partial.find('\n'); nl != std::string::npos;
                 nl = partial.find('\n', start)) {
                std::string line = partial.substr(start, nl - start);
                start = nl + 1;
                if (line.find(marker) != std::string::npos) {
                    if (!line.empty() && line.back() == '\r')
                        line.pop_back();
                    return line;
                }
            }
            partial.erase(0, start);
        }
        if (!is_running(dir))
            throw error("VM '" + dir.vm_name() + "' stopped before its console showed '" + marker +
                        "'");
        if (std::chrono::steady_clock::now() >= deadline)
            throw error(error_kind::timed_out,
                        "VM '" + dir.vm_name() + "': no console line with '" + marker +
                            "' within " + std::to_string(timeout.count() / 1000) + " s (see " +
                            log.string() + ")");
        std::this_thread::sleep_for(50ms);
    }
}

} // namespace qmpkit::launcher
