#include <qmpkit/launcher/atomic_file.hpp>
#include <qmpkit/launcher/cloud_init.hpp>
#include <qmpkit/launcher/error.hpp>
#include <qmpkit/launcher/subprocess.hpp>

#include <yaml-cpp/yaml.h>

#include <cstdint>
#include <cstdio>
#include <system_error>
#include <unistd.h>

namespace qmpkit::launcher {
namespace {

namespace fs = std::filesystem;

constexpr std::string_view key_name = "id_ed25519";

// For telling seeds apart, not for security: FNV-1a, spelled out so it is the same everywhere.
std::string digest(std::initializer_list<std::string_view> parts) {
    std::uint64_t h = 14695981039346656037ull;
    for (auto part : parts) {
        for (unsigned char c : part) {
            h ^= c;
            h *= 1099511628211ull;
        }
        h ^= 0xff; // a separator, so ("ab", "c") and ("a", "bc") differ
        h *= 1099511628211ull;
    }
    char out[17];
    std::snprintf(out, sizeof out, "%016llx", static_cast<unsigned long long>(h));
    return out;
}

std::string read_input(const fs::path& file, std::string_view field) {
    try {
        return read_file(file);
    } catch (const error& e) {
        throw error("cloud_init." + std::string(field) + ": " + e.what());
    }
}

std::string trimmed(std::string s) {
    while (!s.empty() && (s.back() == '\n' || s.back() == '\r' || s.back() == ' '))
        s.pop_back();
    return s;
}

} // namespace

std::optional<ssh_identity> find_ssh_identity(const state_directory& dir) {
    const auto key = dir.ssh_directory() / key_name;
    std::error_code ec;
    if (!fs::exists(key, ec) || !fs::exists(fs::path(key.string() + ".pub"), ec))
        return std::nullopt;
    return ssh_identity{key, dir.ssh_directory() / "known_hosts",
                        trimmed(read_file(key.string() + ".pub"))};
}

ssh_identity ensure_ssh_identity(const state_directory& dir) {
    if (auto found = find_ssh_identity(dir))
        return *found;
    // Made in a directory of its own and renamed into place whole: a key without its public
    // half (or the reverse) is never left behind.
    const auto ssh = dir.ssh_directory();
    const auto making = fs::path(ssh.string() + ".making-" + std::to_string(::getpid()));
    std::error_code ec;
    fs::remove_all(making, ec);
    fs::create_directories(making);
    fs::permissions(making, fs::perms::owner_all);
    subprocess_options options;
    options.not_found_hint = "install Debian's openssh-client package";
    options.timeout = std::chrono::seconds(30);
    try {
        run_checked({"ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C",
                     "qmpkit VM " + dir.vm_name(), "-f", (making / key_name).string()},
                    options);
        fs::remove_all(ssh, ec); // half of an identity, from an older qmpkit or by hand
        fs::rename(making, ssh);
    } catch (...) {
        fs::remove_all(making, ec);
        throw;
    }
    return *find_ssh_identity(dir);
}

void copy_ssh_identity(const state_directory& from, const state_directory& to) {
    const auto source = find_ssh_identity(from);
    if (!source)
        return;
    const auto ssh = to.ssh_directory();
    fs::create_directories(ssh);
    fs::permissions(ssh, fs::perms::owner_all);
    const auto copy = fs::copy_options::overwrite_existing;
    fs::copy_file(source->private_key, ssh / key_name, copy);
    fs::copy_file(source->private_key.string() + ".pub", ssh / (std::string(key_name) + ".pub"),
                  copy);
    std::error_code ec;
    if (fs::exists(source->known_hosts, ec))
        fs::copy_file(source->known_hosts, ssh / "known_hosts", copy);
}

namespace {

// bootcmd runs at every boot, early (before cloud-init makes the users, and before logind starts).
//  - The user lingers: systemd-logind keeps the user's own systemd running between logins, where
//    without it every `qmpkit ssh` starts and stops one (a TCG guest here: 1.4-1.7 s a login
//    instead of 2.7-3.1 s). A file named after the user is all it takes, also before the user
//    exists.
//  - shares[].mount: the share's line goes into /etc/fstab (replacing an older line of the same
//    tag, so a changed mount point or option takes) and it is mounted. Later boots would mount it
//    from fstab anyway; nofail keeps a boot going without it.
void add_boot_commands(YAML::Emitter& out, const vm_definition& def) {
    // The validator allows only [A-Za-z0-9_.-] in user names: no quoting needed.
    std::vector<std::string> scripts{"mkdir -p /var/lib/systemd/linger && touch "
                                     "/var/lib/systemd/linger/" +
                                     def.cloud_init->user};
    for (const auto& share : def.shares) {
        if (share.mount.empty())
            continue;
        // The validator allows no blanks or quotes in the mount point, and tags are
        // [A-Za-z0-9_.-]: single quotes suffice, and only '.' needs escaping in the pattern.
        std::string pattern;
        for (char c : share.tag)
            pattern += c == '.' ? std::string("\\.") : std::string(1, c);
        const auto line =
            share.tag + " " + share.mount + " 9p " + share_mount_options(share) + ",nofail 0 0";
        scripts.push_back("set -e; f=/etc/fstab; grep -v '^" + pattern +
                          "[[:space:]]' $f >$f.qmpkit "
                          "|| true; echo '" +
                          line + "' >>$f.qmpkit; mv $f.qmpkit $f; mkdir -p '" + share.mount +
                          "'; mountpoint -q '" + share.mount + "' || mount '" + share.mount + "'");
    }
    out << YAML::Key << "bootcmd" << YAML::Value << YAML::BeginSeq;
    for (const auto& script : scripts)
        out << YAML::Flow << YAML::BeginSeq << "sh"
            << "-c" << YAML::DoubleQuoted << script << YAML::EndSeq;
    out << YAML::EndSeq;
}

} // namespace

cloud_init_seed_files cloud_init_seed_contents(const vm_definition& def, std::string_view vm_key) {
    if (!def.cloud_init)
        throw error("VM '" + def.name + "' has no cloud_init section");
    const auto& ci = *def.cloud_init;
    cloud_init_seed_files files;

    if (ci.user_data) {
        files.user_data = read_input(*ci.user_data, "user_data");
    } else {
        YAML::Emitter out;
        out << YAML::BeginMap;
        out << YAML::Key << "users" << YAML::Value << YAML::BeginSeq << YAML::BeginMap;
        out << YAML::Key << "name" << YAML::Value << YAML::DoubleQuoted << ci.user;
        out << YAML::Key << "sudo" << YAML::Value << YAML::DoubleQuoted << "ALL=(ALL) NOPASSWD:ALL";
        out << YAML::Key << "shell" << YAML::Value << "/bin/bash";
        out << YAML::Key << "lock_passwd" << YAML::Value << true;
        out << YAML::Key << "ssh_authorized_keys" << YAML::Value << YAML::BeginSeq;
        out << YAML::DoubleQuoted << std::string(vm_key);
        for (const auto& key : ci.ssh_authorized_keys)
            out << YAML::DoubleQuoted << key;
        // No ssh_pwauth: the user has no password anyway (lock_passwd), and setting it makes
        // cloud-init restart sshd in its config stage, which drops the connections of whoever
        // logged in as soon as the key was in place.
        out << YAML::EndSeq << YAML::EndMap << YAML::EndSeq;
        add_boot_commands(out, def);
        out << YAML::EndMap;
        files.user_data = std::string("#cloud-config\n") + out.c_str() + "\n";
    }
    if (ci.network_config)
        files.network_config = read_input(*ci.network_config, "network_config");

    // public-keys reach the image's default user even when user_data is the user's own.
    YAML::Emitter meta;
    meta << YAML::BeginMap;
    meta << YAML::Key << "local-hostname" << YAML::Value << YAML::DoubleQuoted << ci.hostname;
    meta << YAML::Key << "public-keys" << YAML::Value << YAML::BeginSeq << YAML::DoubleQuoted
         << std::string(vm_key) << YAML::EndSeq;
    meta << YAML::EndMap;
    const std::string rest = std::string(meta.c_str()) + "\n";
    const auto id = "qmpkit-" + digest({rest, files.user_data, files.network_config.value_or("")});
    files.meta_data = "instance-id: " + id + "\n" + rest;
    return files;
}

void make_cloud_init_seed(const vm_definition& def, const state_directory& dir) {
    if (!def.cloud_init)
        return;
    const auto identity = ensure_ssh_identity(dir);
    const auto files = cloud_init_seed_contents(def, identity.public_key);
    const auto seed = dir.cloud_init_seed();
    // What the image there was built from: its meta-data, which names the instance-id.
    const auto built_from = fs::path(seed.string() + ".meta-data");
    std::error_code ec;
    const bool had_seed = fs::exists(seed, ec) && fs::exists(built_from, ec);
    if (had_seed && read_file(built_from) == files.meta_data)
        return;

    // Several qemus of one VM may start at once (standbys): each builds its own and renames it
    // into place, and the content is the same.
    const auto making = fs::path(seed.string() + ".making-" + std::to_string(::getpid()));
    fs::remove_all(making, ec);
    fs::create_directories(making);
    try {
        std::vector<std::string> argv{
            "genisoimage", "-quiet", "-output", (making / "cidata.iso").string(),
            "-volid",      "cidata", "-joliet", "-rock"};
        auto add = [&](const char* name, const std::string& text) {
            write_file_atomically(making / name, text,
                                  fs::perms::owner_read | fs::perms::owner_write,
                                  durability::atomic_only);
            argv.push_back((making / name).string());
        };
        add("meta-data", files.meta_data);
        add("user-data", files.user_data);
        if (files.network_config)
            add("network-config", *files.network_config);
        subprocess_options options;
        options.not_found_hint = "install Debian's genisoimage package";
        options.timeout = std::chrono::seconds(60);
        run_checked(argv, options);
        fs::permissions(making / "cidata.iso", fs::perms::owner_read | fs::perms::owner_write);
        fs::rename(making / "cidata.iso", seed);
        write_file_atomically(built_from, files.meta_data);
        fs::remove_all(making, ec);
        // A new instance-id: at its next boot cloud-init makes new SSH host keys (ssh_deletekeys),
        // and `qmpkit ssh` would refuse them as a changed key. The VM's known_hosts learns them
        // anew.
        if (had_seed)
            fs::remove(identity.known_hosts, ec);
    } catch (...) {
        fs::remove_all(making, ec);
        throw;
    }
}

} // namespace qmpkit::launcher
