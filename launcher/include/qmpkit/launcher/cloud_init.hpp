#pragma once

// Seeding a guest with cloud-init (cloud_init: in the definition) and the VM's own SSH key.
//
// The seed is cloud-init's NoCloud data source: an ISO 9660 image labelled "cidata" holding
// meta-data, user-data and, when given, network-config. It lives in the VM's state directory and
// is built when the VM starts, again only when what goes into it changed. Its instance-id is a
// digest of that content, so a changed seed is applied by the guest's next boot and an unchanged
// one is not applied twice.

#include <qmpkit/launcher/state_directory.hpp>
#include <qmpkit/launcher/vm_definition.hpp>

#include <filesystem>
#include <optional>
#include <string>
#include <string_view>

namespace qmpkit::launcher {

// The VM's SSH key pair and known_hosts, in <state>/ssh/. Clones share their origin's (the
// guest in them is the origin's, host keys and all).
struct ssh_identity {
    std::filesystem::path private_key;
    std::filesystem::path known_hosts;
    std::string public_key; // one authorized_keys line
};

// Makes the key pair with ssh-keygen (ed25519, no passphrase) if the VM has none yet, and
// returns it. Throws launcher::error when ssh-keygen is missing or fails.
ssh_identity ensure_ssh_identity(const state_directory& dir);
// The identity the VM has, nullopt before its first start with cloud_init.
std::optional<ssh_identity> find_ssh_identity(const state_directory& dir);
// Gives `to` the identity of `from` (a clone its origin's): copies of both files.
void copy_ssh_identity(const state_directory& from, const state_directory& to);

// What the seed holds, as text.
struct cloud_init_seed_files {
    std::string meta_data;
    std::string user_data;
    std::optional<std::string> network_config;
};

// The seed's files for a definition with cloud_init, authorizing `vm_key` (the VM's own public
// key) for the user. Reads the user_data and network_config files it names (launcher::error when
// one cannot be read). Pure otherwise: the same inputs give the same text, instance-id included.
cloud_init_seed_files cloud_init_seed_contents(const vm_definition& def, std::string_view vm_key);

// Builds <state>/cidata.iso (state_directory::cloud_init_seed) with genisoimage unless the one
// there holds the same files, making the VM's SSH key first if needed. The image is written
// under a temporary name and renamed into place, so a qemu never sees half of one. When it
// replaces a seed of other content, the VM's known_hosts goes: the new instance-id makes
// cloud-init generate new SSH host keys at the next boot. Does nothing for a definition without
// cloud_init.
void make_cloud_init_seed(const vm_definition& def, const state_directory& dir);

} // namespace qmpkit::launcher
