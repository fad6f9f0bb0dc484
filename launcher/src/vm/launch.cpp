#include "host/log_rotation.hpp"
#include "images/disk_creation.hpp"
#include "vm/instance_files.hpp"
#include "vm/qemu_environment.hpp"

#include <qmpkit/launcher/accel.hpp>
#include <qmpkit/launcher/atomic_file.hpp>
#include <qmpkit/launcher/cloud_init.hpp>
#include <qmpkit/launcher/definition_loader.hpp>
#include <qmpkit/launcher/error.hpp>
#include <qmpkit/launcher/launch.hpp>
#include <qmpkit/launcher/qemu_command.hpp>
#include <qmpkit/launcher/qemu_img.hpp>
#include <qmpkit/launcher/subprocess.hpp>
#include <qmpkit/launcher/vm_lock.hpp>

#include <spdlog/logger.h>

#include <algorithm>
#include <arpa/inet.h>
#include <cerrno>
#include <csignal>
#include <cstring>
#include <fcntl.h>
#include <netinet/in.h>
#include <optional>
#include <sstream>
#include <string_view>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>
#include <utility>

namespace qmpkit::launcher {
namespace {

// A descriptor closed on scope exit unless released.
class owned_fd {
public:
    explicit owned_fd(int fd = -1)
        : fd_(fd) {}
    owned_fd(owned_fd&& o) noexcept
        : fd_(std::exchange(o.fd_, -1)) {}
    owned_fd& operator=(owned_fd&& o) noexcept {
        reset(std::exchange(o.fd_, -1));
        return *this;
    }
    ~owned_fd() { reset(); }
    int get() const noexcept { return fd_; }
    int release() noexcept { return std::exchange(fd_, -1); }
    void reset(int fd = -1) {
        if (fd_ >= 0)
            ::close(fd_);
        fd_ = fd;
    }

private:
    int fd_;
};

// A listening UNIX socket at `path`, mode 0600, inheritable by qemu.
owned_fd listen_on(const std::filesystem::path& path) {
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    if (path.native().size() >= sizeof addr.sun_path)
        throw error("socket path " + path.string() + " is longer than " +
                    std::to_string(sizeof addr.sun_path - 1) +
                    " bytes: choose a shorter --state-dir");
    std::memcpy(addr.sun_path, path.c_str(), path.native().size() + 1);
    ::unlink(path.c_str()); // a stale socket from an earlier run

    owned_fd fd(::socket(AF_UNIX, SOCK_STREAM, 0)); // not CLOEXEC: qemu inherits it
    if (fd.get() < 0)
        throw error(std::string("socket: ") + std::strerror(errno));
    // The socket file takes the umask at bind time: make it owner-only from the start.
    const mode_t old_umask = ::umask(0177);
    const int bound = ::bind(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr);
    const int bind_errno = errno;
    ::umask(old_umask);
    if (bound != 0)
        throw error("cannot bind " + path.string() + ": " + std::strerror(bind_errno));
    if (::listen(fd.get(), 16) != 0)
        throw error("cannot listen on " + path.string() + ": " + std::strerror(errno));
    return fd;
}

std::uint64_t file_size_or_zero(const std::filesystem::path& file) {
    std::error_code ec;
    auto size = std::filesystem::file_size(file, ec);
    return ec ? 0 : size;
}

// The line a start writes into qemu.log before qemu's own output (then a description of it).
constexpr std::string_view start_marker = "--- qmpkit: starting ";

// A command line as a shell runs it, with the variables added to its environment in front.
std::string command_in_shell_words(const detail::environment_additions& environment,
                                   const std::vector<std::string>& argv) {
    std::string text;
    for (const auto& [name, value] : environment)
        text += name + "=" + describe(std::vector<std::string>{value}) + " ";
    return text + describe(argv);
}

// What qemu printed as errors in this start's part of its log: each "PROGRAM: message" line, with
// the lines that follow it unprefixed (qemu's hints, such as "Is another process using the
// image [...]?") joined to it.
std::vector<std::string> qemu_errors(const std::vector<std::string>& log_lines,
                                     const std::string& program) {
    const auto prefix = std::filesystem::path(program).filename().string() + ": ";
    std::vector<std::string> errors;
    for (const auto& line : log_lines) {
        if (line.starts_with(start_marker))
            errors.clear(); // an earlier start's
        else if (line.starts_with(prefix))
            errors.push_back(line.substr(prefix.size()));
        else if (!errors.empty() && !line.empty())
            errors.back() += " " + line;
    }
    return errors;
}

// qemu's own words first when it said why it quit: the QMP failure that revealed it ("the
// connection closed") is only the consequence.
std::string launch_failure(const std::string& what, const exit_status* status,
                           const std::vector<std::string>& argv, const state_directory& dir) {
    const auto lines = tail_lines(dir.qemu_log(), 20);
    const auto errors = status ? qemu_errors(lines, argv.front()) : std::vector<std::string>{};
    std::ostringstream text;
    text << "qemu failed to start: " << (errors.empty() ? what : errors.front());
    if (status)
        text << " (" << status->describe() << ")";
    text << "\n  command: " << describe(argv);
    if (!lines.empty()) {
        text << "\n  qemu said:";
        for (const auto& l : lines)
            text << "\n    " << l;
    }
    return text.str();
}

// The host ports of the definition's forwards, "auto" ones picked now: ports the kernel hands
// out free at this moment (all held until every one is picked, so two are never the same).
// Another program could take one before qemu binds it; qemu then fails to start and says so.
std::vector<std::uint16_t> resolve_forward_ports(const vm_definition& def) {
    std::vector<std::uint16_t> ports;
    if (!def.network)
        return ports;
    std::vector<owned_fd> held;
    for (const auto& fwd : def.network->forwards) {
        if (fwd.host_port != 0) {
            ports.push_back(fwd.host_port);
            continue;
        }
        owned_fd fd(::socket(
            AF_INET,
            (fwd.protocol == forward_protocol::udp ? SOCK_DGRAM : SOCK_STREAM) | SOCK_CLOEXEC, 0));
        sockaddr_in addr{};
        addr.sin_family = AF_INET;
        addr.sin_port = 0;
        socklen_t length = sizeof addr;
        if (fd.get() < 0 || ::inet_pton(AF_INET, fwd.host_addr.c_str(), &addr.sin_addr) != 1 ||
            ::bind(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
            ::getsockname(fd.get(), reinterpret_cast<sockaddr*>(&addr), &length) != 0)
            throw error("cannot pick a free host port on " + fwd.host_addr + " for guest port " +
                        std::to_string(fwd.guest_port) + ": " + std::strerror(errno));
        ports.push_back(ntohs(addr.sin_port));
        held.push_back(std::move(fd));
    }
    return ports;
}

std::vector<forwarded_port> forwarded_ports(const vm_definition& def,
                                            const std::vector<std::uint16_t>& ports) {
    std::vector<forwarded_port> out;
    for (std::size_t i = 0; def.network && i < def.network->forwards.size(); ++i) {
        const auto& fwd = def.network->forwards[i];
        out.push_back(
            {std::string(to_string(fwd.protocol)), fwd.host_addr, ports.at(i), fwd.guest_port});
    }
    return out;
}

} // namespace

launched_vm::launched_vm(vm_definition def, state_directory dir, qemu_process process,
                         qmp::client monitor, runtime_info runtime, qemu_instance instance)
    : definition_(std::move(def))
    , state_(std::move(dir))
    , process_(std::move(process))
    , monitor_(std::move(monitor))
    , runtime_(std::move(runtime))
    , instance_(std::move(instance)) {}

vm_definition with_recorded_overlays(vm_definition definition, const state_directory& dir) {
    std::error_code ec;
    if (!std::filesystem::exists(dir.definition_copy(), ec))
        return definition;
    vm_definition recorded;
    try {
        recorded = load_definition(dir.definition_copy());
    } catch (const error&) {
        return definition;
    }
    const qemu_img img;
    for (auto& disk : definition.disks) {
        auto it = std::find_if(recorded.disks.begin(), recorded.disks.end(),
                               [&](const disk_definition& d) { return d.name == disk.name; });
        if (it == recorded.disks.end() || it->file == disk.file ||
            !std::filesystem::exists(it->file, ec))
            continue;
        try {
            for (const auto& layer : img.info_chain(it->file)) {
                auto file = layer.filename;
                if (std::filesystem::weakly_canonical(file, ec) ==
                    std::filesystem::weakly_canonical(disk.file, ec)) {
                    disk.file = it->file;
                    disk.format = disk_format::qcow2;
                    disk.size.reset();
                    disk.backing.reset();
                    break;
                }
            }
        } catch (const error&) {
            // An unreadable overlay is no reason to prefer it.
        }
    }
    return definition;
}

bool is_running(const state_directory& dir) {
    auto info = read_runtime_info(dir);
    if (!info || !process_alive(info->qemu_pid))
        return false;
    // A recycled pid would not be running qemu with this state directory's sockets.
    return process_command_line(info->qemu_pid).find("qemu") != std::string::npos;
}

launched_vm launch(const vm_definition& definition, const launch_options& options) {
    const auto root = options.state_root.empty() ? default_state_root() : options.state_root;
    state_directory dir(root, definition.name);
    dir.create();
    std::optional<vm_lock> lock;
    if (!options.lock_held_by_caller && !options.standby)
        lock.emplace(vm_lock::acquire(dir.lock_file(), "starting the VM", options.lock_timeout));
    if (!options.standby && is_running(dir))
        throw error("VM '" + definition.name + "' is already running (pid " +
                    std::to_string(read_runtime_info(dir)->qemu_pid) +
                    "); stop it first with `qmpkit shutdown " + definition.name + "`");

    if (!options.standby)
        remove_stale_instance_directories(dir);
    const auto accel = resolve_accel(definition.accel);
    auto created = create_missing_disks(definition);
    try {
        make_cloud_init_seed(definition, dir);
    } catch (...) {
        remove_created_disks(created);
        throw;
    }
    qemu_instance instance;
    instance.standby = options.standby;
    instance.owned_files = options.owned_files;
    instance.dir = make_instance_directory(dir, options.standby ? "standby" : "starting");
    // The instance directory is a state directory of its own for the sockets and records.
    const state_directory own(dir.path(), instance.dir.filename().string());
    std::optional<qemu_process> process;
    std::filesystem::path created_ram; // removed again if the launch fails
    try {
        auto qmp_listener = listen_on(own.qmp_socket());
        auto events_listener = listen_on(own.events_socket());
        int pair[2];
        if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair) != 0)
            throw error(std::string("socketpair: ") + std::strerror(errno));
        owned_fd ours(pair[0]), theirs(pair[1]);

        auto paths = default_launch_paths(own.path(), qmp_listener.get());
        paths.state_dir = dir.path();
        paths.serial_log = dir.serial_log();
        paths.events_listen_fd = events_listener.get();
        paths.supervisor_monitor_fd = theirs.get();
        paths.cloud_init_seed = dir.cloud_init_seed();
        paths.forward_ports = resolve_forward_ports(definition);
        if (definition.reset.file_backed_memory()) {
            if (!options.memory_template.empty()) {
                paths.memory_file = options.memory_template;
                paths.memory_shared = false;
            } else {
                paths.memory_file = dir.ram_file();
                std::error_code ignored;
                std::filesystem::remove(paths.memory_file, ignored); // a stale one from a crash
                // Made here, owner-only and exclusively: /dev/shm is world-writable and the name
                // is predictable, so a file someone else slipped in must never become the RAM.
                owned_fd ram(::open(paths.memory_file.c_str(),
                                    O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600));
                if (ram.get() < 0)
                    throw error("cannot create the RAM file " + paths.memory_file.string() + ": " +
                                std::strerror(errno));
                created_ram = paths.memory_file;
            }
        }
        qemu_command_options command_options;
        command_options.qemu_binary = options.qemu_binary;
        command_options.start_paused = options.paused;
        read_host_facts(definition, accel, qemu_img(), command_options);
        auto argv = build_qemu_command(definition, paths, accel, command_options);
        argv.insert(argv.end(), options.extra_args.begin(), options.extra_args.end());

        // A standby leaves the VM's records alone until it is promoted.
        const state_directory& records = options.standby ? own : dir;
        if (!options.standby) {
            // Records of an earlier run would mislead anyone watching this one start.
            std::filesystem::remove(dir.exit_record());
            std::filesystem::remove(dir.runtime_file());
        }
        write_file_atomically(records.definition_copy(), dump_definition(definition));
        runtime_info runtime;
        runtime.accel = std::string(to_string(accel));
        runtime.serial_log_offset = file_size_or_zero(serial_log_file(definition, paths));
        runtime.command_line = argv;
        runtime.forwards = forwarded_ports(definition, paths.forward_ports);
        runtime.supervisor_pid = ::getpid();
        runtime.started_at = std::chrono::duration_cast<std::chrono::seconds>(
                                 std::chrono::system_clock::now().time_since_epoch())
                                 .count();
        const auto environment = detail::qemu_environment_additions();
        // Logged with the command line, so that the line can be run again in a shell.
        const auto command_text = command_in_shell_words(environment, argv);
        {
            // Created owner-only; the header line separates this run's output from earlier ones.
            owned_fd log(detail::open_log_to_append(dir.qemu_log()));
            const auto header = std::string(start_marker) + (options.standby ? "a standby: " : "") +
                                command_text + "\n";
            if (log.get() < 0 || ::write(log.get(), header.data(), header.size()) < 0)
                throw error("cannot write " + dir.qemu_log().string() + ": " +
                            std::strerror(errno));
        }
        if (options.logger)
            options.logger->debug("starting qemu: {}", command_text);

        spawn_options spawn;
        spawn.argv = argv;
        spawn.inherit_fds = {qmp_listener.get(), events_listener.get(), theirs.get()};
        spawn.log_file = dir.qemu_log();
        spawn.env = environment;
        process.emplace(qemu_process::spawn(spawn));
        // Only qemu holds the listening sockets and its monitor end now, so its death closes them.
        qmp_listener.reset();
        events_listener.reset();
        theirs.reset();

        qmp::client_options qmp_options;
        qmp_options.logger = options.logger;
        qmp_options.connect_timeout = options.qmp_timeout;
        qmp_options.command_timeout = options.qmp_timeout;
        qmp::client monitor(qmp_options);
        try {
            monitor.adopt(ours.release());
        } catch (const qmp::error& e) {
            auto status = process->wait_for(std::chrono::seconds(5));
            if (!status) {
                process->kill(SIGKILL);
                status = process->wait_for(std::chrono::seconds(5));
            }
            throw error(launch_failure(e.what(), status ? &*status : nullptr, argv, dir));
        }
        runtime.qemu_pid = process->pid();
        runtime.qemu_version = monitor.server_greeting().version_string();
        if (paths.memory_shared && !paths.memory_file.empty())
            instance.ram_inode = inode_of(paths.memory_file);
        // qemu answers on QMP only once every chardev has bound its socket.
        if (!options.standby) {
            move_sockets(own, dir);
            std::filesystem::remove_all(instance.dir);
        }
        write_runtime_info(records, runtime);
        return launched_vm(definition, std::move(dir), std::move(*process), std::move(monitor),
                           std::move(runtime), std::move(instance));
    } catch (...) {
        if (process && process->running()) {
            process->kill(SIGKILL);
            process->wait_for(std::chrono::seconds(5));
        }
        std::error_code ignored;
        std::filesystem::remove_all(instance.dir, ignored);
        if (!created_ram.empty())
            std::filesystem::remove(created_ram, ignored);
        remove_created_disks(created);
        throw;
    }
}

} // namespace qmpkit::launcher
