#include "clone_identity.hpp"

#include <qmpkit/launcher/cloud_init.hpp>
#include <qmpkit/launcher/definition_validator.hpp>
#include <qmpkit/launcher/subprocess.hpp>
#include <qmpkit/launcher/vm_agent.hpp>
#include <qmpkit/snapshot/error.hpp>

#include <spdlog/logger.h>

#include <optional>
#include <sstream>
#include <unistd.h>

namespace qmpkit::snapshot::detail {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

// Lists the host key types the guest has ("ed25519", "rsa", ...), one a line.
constexpr const char* list_key_types = R"sh(for key in /etc/ssh/ssh_host_*_key; do
  [ -e "$key" ] || continue
  type=${key#/etc/ssh/ssh_host_}; echo "${type%_key}"
done)sh";

// The rest, in one guest command (each costs a process start in a TCG guest). Its input is a tar
// of the new host keys, or nothing; $1: "keys" when there is one; $2: the host name (empty:
// unchanged).
constexpr const char* apply_identity = R"sh(set -e
if [ "$1" = keys ]; then
  tar -x -o -C /etc/ssh
fi
if [ -e /etc/machine-id ]; then
  tr -d '-' </proc/sys/kernel/random/uuid >/etc/machine-id.qmpkit
  mv /etc/machine-id.qmpkit /etc/machine-id
fi
if [ "$1" = keys ] && [ -d /run/systemd/system ] && systemctl -q is-active ssh; then
  systemctl restart ssh
fi
if [ -n "$2" ]; then
  # What hostnamectl would do, without starting systemd-hostnamed (seconds under TCG).
  if [ -e /etc/hostname ]; then echo "$2" >/etc/hostname; fi
  hostname "$2"
  # Debian names its own host on 127.0.1.1; sudo warns about a name it cannot resolve.
  if grep -q '^127\.0\.1\.1[[:space:]]' /etc/hosts 2>/dev/null; then
    sed -i "s/^127\.0\.1\.1[[:space:]].*/127.0.1.1\t$2/" /etc/hosts
  fi
fi)sh";

qmp::guest_exec_status in_guest(qmp::guest_agent& agent, const std::string& vm,
                                std::vector<std::string> args,
                                std::optional<std::string> input = std::nullopt) {
    qmp::guest_exec_request request;
    request.path = "sh";
    request.args = std::move(args);
    request.input = std::move(input);
    auto status = agent.exec(request, 120s);
    if (!status.succeeded())
        throw error(error_kind::other,
                    "giving clone '" + vm +
                        "' an identity of its own failed in the guest: " + status.failure());
    return status;
}

bool known_key_type(const std::string& type) {
    return type == "rsa" || type == "ecdsa" || type == "ed25519" || type == "dsa";
}

} // namespace

void give_new_identity(const launcher::state_directory& dir, const launcher::vm_definition& def,
                       const std::shared_ptr<spdlog::logger>& logger) {
    qmp::guest_agent_options o;
    o.sync_timeout = 10s;
    o.command_timeout = 30s;
    o.logger = logger;
    auto session = launcher::open_guest_agent(dir, def, o);
    auto& agent = session.agent;
    const auto vm = dir.vm_name();

    std::vector<std::string> types;
    {
        std::istringstream lines(in_guest(agent, vm, {"-c", list_key_types}).out);
        for (std::string type; std::getline(lines, type);)
            if (known_key_type(type))
                types.push_back(type);
    }
    std::optional<std::string> keys_tar;
    if (!types.empty()) {
        // Private keys pass through a directory only this user can read, removed at once.
        const auto keys = dir.path() / ("new-host-keys." + std::to_string(::getpid()));
        std::error_code ignored;
        fs::remove_all(keys, ignored);
        fs::create_directory(keys);
        fs::permissions(keys, fs::perms::owner_all);
        try {
            std::vector<std::string> tar{"tar", "-c", "-C", keys.string()};
            for (const auto& type : types) {
                const auto name = "ssh_host_" + type + "_key";
                launcher::run_checked({"ssh-keygen", "-q", "-t", type, "-N", "", "-C", "root@" + vm,
                                       "-f", (keys / name).string()});
                fs::permissions(keys / (name + ".pub"),
                                fs::perms::owner_read | fs::perms::owner_write |
                                    fs::perms::group_read | fs::perms::others_read);
                tar.push_back(name);
                tar.push_back(name + ".pub");
            }
            keys_tar = launcher::run_checked(tar).out;
        } catch (const std::exception& e) {
            fs::remove_all(keys, ignored);
            throw error(error_kind::other,
                        "making SSH host keys for clone '" + vm + "' failed: " + e.what());
        }
        fs::remove_all(keys, ignored);
    }
    const auto host = launcher::is_valid_hostname(def.name) ? def.name : std::string();
    in_guest(agent, vm, {"-c", apply_identity, "qmpkit-new-identity", keys_tar ? "keys" : "", host},
             keys_tar);
    // The host keys changed: what the origin's known_hosts said about them is wrong now.
    if (const auto identity = launcher::find_ssh_identity(dir)) {
        std::error_code ignored;
        fs::remove(identity->known_hosts, ignored);
    }
    if (logger)
        logger->info("clone '{}' has a machine-id, host name and {} SSH host key(s) of its own", vm,
                     types.size());
}

} // namespace qmpkit::snapshot::detail
