#include <qmpkit/launcher/cloud_init.hpp>
#include <qmpkit/launcher/definition_loader.hpp>
#include <qmpkit/launcher/error.hpp>
#include <qmpkit/launcher/guest_ssh.hpp>
#include <qmpkit/launcher/launch.hpp>
#include <qmpkit/launcher/runtime_info.hpp>
#include <qmpkit/launcher/subprocess.hpp>

#include <thread>

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

void wait_for_ssh(const state_directory& dir, const std::string& user,
                  std::chrono::milliseconds timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    std::string last;
    for (;;) {
        const auto argv = ssh_command(dir, {user, {"true"}});
        subprocess_options options;
        options.timeout = 20s;
        const auto result = run(argv, options);
        if (result.ok())
            return;
        last = result.err.empty() ? "exit code " + std::to_string(result.exit_code) : result.err;
        while (!last.empty() && (last.back() == '\n' || last.back() == '\r'))
            last.pop_back();
        if (std::chrono::steady_clock::now() >= deadline)
            throw error(error_kind::timed_out,
                        "VM '" + dir.vm_name() + "': ssh did not get in within " +
                            std::to_string(timeout.count() / 1000) + " s (last: " + last + ")");
        std::this_thread::sleep_for(500ms);
    }
}

} // namespace qmpkit::launcher
