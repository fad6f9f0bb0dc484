#include <qmpkit/launcher/cloud_init.hpp>
#include <qmpkit/launcher/definition_loader.hpp>
#include <qmpkit/launcher/error.hpp>
#include <qmpkit/launcher/guest_ssh.hpp>
#include <qmpkit/launcher/launch.hpp>
#include <qmpkit/launcher/runtime_info.hpp>
#include <qmpkit/launcher/subprocess.hpp>

#include <arpa/inet.h>
#include <cerrno>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <thread>
#include <unistd.h>

namespace qmpkit::launcher {

using namespace std::chrono_literals;

std::vector<std::string> ssh_command(const state_directory& dir, const ssh_target& target) {
    const auto& vm = dir.vm_name();
    const auto runtime = read_runtime_info(dir);
    if (!runtime || !is_running(dir))
        throw error("VM '" + vm + "' is not running");
    const auto def = load_definition(dir.definition_copy());
    const auto identity = find_ssh_identity(dir);
    if (!def.cloud_init || !identity)
        throw error("VM '" + vm +
                    "' has no SSH key: give its definition a cloud_init section (the key is made "
                    "and authorized when it starts)");
    const auto port = forward_to(*runtime, 22);
    if (!port)
        throw error("VM '" + vm +
                    "' forwards no host port to its port 22: add {host_port: auto, guest_port: "
                    "22} to network.forwards and restart it");
    const auto user = target.user.empty() ? def.cloud_init->user : target.user;
    // A forward bound to every address is reached on loopback.
    const auto host = port->host_addr == "0.0.0.0" ? std::string("127.0.0.1") : port->host_addr;
    std::vector<std::string> argv{"ssh",
                                  "-i",
                                  identity->private_key.string(),
                                  "-p",
                                  std::to_string(port->host_port),
                                  "-o",
                                  "IdentitiesOnly=yes",
                                  "-o",
                                  "BatchMode=yes",
                                  "-o",
                                  "UserKnownHostsFile=" + identity->known_hosts.string(),
                                  "-o",
                                  "StrictHostKeyChecking=accept-new",
                                  "-o",
                                  "HostKeyAlias=qmpkit-" + vm,
                                  "-o",
                                  "ConnectTimeout=10",
                                  "-o",
                                  "LogLevel=ERROR",
                                  user + "@" + host};
    if (!target.command.empty()) {
        argv.push_back("--");
        argv.insert(argv.end(), target.command.begin(), target.command.end());
    }
    return argv;
}

namespace {

// Connects to host:port and reads until the SSH identification line starts ("SSH-"), all
// within `within`. qemu's user-mode network accepts every connection to a forwarded port and
// closes it when the guest does not: only the greeting says sshd is there.
bool greets(const std::string& host, std::uint16_t port, std::chrono::milliseconds within) {
    const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return false;
    struct closer {
        int fd;
        ~closer() { ::close(fd); }
    } close_it{fd};
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port);
    if (::inet_pton(AF_INET, host.c_str(), &addr.sin_addr) != 1)
        return false;
    const auto deadline = std::chrono::steady_clock::now() + within;
    auto wait_for = [&](short events) {
        const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
            deadline - std::chrono::steady_clock::now());
        if (left.count() <= 0)
            return false;
        pollfd p{fd, events, 0};
        return ::poll(&p, 1, static_cast<int>(left.count())) == 1 && (p.revents & events);
    };
    if (::connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0) {
        if (errno != EINPROGRESS || !wait_for(POLLOUT))
            return false;
        int err = 0;
        socklen_t len = sizeof err;
        if (::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0 || err != 0)
            return false;
    }
    std::string seen;
    while (seen.size() < 4) {
        if (!wait_for(POLLIN))
            return false;
        char buffer[64];
        const auto n = ::read(fd, buffer, sizeof buffer);
        if (n <= 0)
            return false;
        seen.append(buffer, static_cast<std::size_t>(n));
    }
    return seen.starts_with("SSH-");
}

} // namespace

void wait_for_ssh(const state_directory& dir, std::chrono::milliseconds timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    for (;;) {
        // Read each time: a reset or a restart moves the VM to a new qemu and a new port.
        ssh_command(dir, {}); // throws, saying what is missing, where ssh cannot work at all
        const auto runtime = read_runtime_info(dir);
        if (const auto port = runtime ? forward_to(*runtime, 22) : std::nullopt) {
            const auto host =
                port->host_addr == "0.0.0.0" ? std::string("127.0.0.1") : port->host_addr;
            if (greets(host, port->host_port, 2s))
                return;
        }
        if (std::chrono::steady_clock::now() >= deadline)
            throw error(error_kind::timed_out, "VM '" + dir.vm_name() +
                                                   "': its sshd did not answer within " +
                                                   std::to_string(timeout.count() / 1000) + " s");
        std::this_thread::sleep_for(200ms);
    }
}

} // namespace qmpkit::launcher
