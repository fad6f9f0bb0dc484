#include "schema.hpp"

#include <qmpkit/launcher/definition_validator.hpp>
#include <qmpkit/launcher/error.hpp>
#include <qmpkit/launcher/subprocess.hpp>

#include <algorithm>
#include <arpa/inet.h>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <optional>
#include <set>
#include <sys/stat.h>
#include <system_error>
#include <tuple>
#include <type_traits>
#include <unistd.h>
#include <utility>

namespace qmpkit::launcher {

namespace {

namespace fs = std::filesystem;

// The uid of a host user, as `getent passwd USER` reports it ("name:x:uid:gid:..."), or
// nullopt when there is no such user (getent exits 2) or getent cannot run.
std::optional<unsigned long> uid_of_user(const std::string& user) {
    subprocess_options options;
    options.timeout = std::chrono::seconds(10);
    const auto result = run({"getent", "passwd", user}, options);
    if (!result.ok())
        return std::nullopt;
    const auto first = result.out.find(':');
    const auto second = first == std::string::npos ? first : result.out.find(':', first + 1);
    if (second == std::string::npos)
        return std::nullopt;
    unsigned long uid = 0;
    const char* begin = result.out.data() + second + 1;
    const char* end = result.out.data() + result.out.size();
    if (std::from_chars(begin, end, uid).ec != std::errc{})
        return std::nullopt;
    return uid;
}

// Whether a program can be found the way run() looks it up.
bool program_in_path(std::string_view program) {
    const char* path = std::getenv("PATH");
    std::string_view dirs = path ? path : "/usr/bin:/bin";
    while (!dirs.empty()) {
        const auto colon = dirs.find(':');
        const auto dir = dirs.substr(0, colon);
        const auto candidate = fs::path(dir.empty() ? "." : dir) / program;
        if (::access(candidate.c_str(), X_OK) == 0)
            return true;
        dirs = colon == std::string_view::npos ? std::string_view() : dirs.substr(colon + 1);
    }
    return false;
}

std::string quoted(const fs::path& p) {
    return "'" + p.string() + "'";
}

// The visitor of describe() that runs each value's own checks (field_info::check, and the range
// of an integer) and reports them at the value's field.
class value_checker {
public:
    value_checker(std::vector<diagnostic>& out, const source_map& sources, std::string path)
        : out_(out)
        , sources_(sources)
        , path_(std::move(path)) {}

    template <class T>
    void field(std::string_view key, const T& value, const schema::field_info<T>& info) {
        const auto field = at(key);
        if constexpr (schema::is_optional<T>::value) {
            if (value && info.check)
                report(field, info.check(*value));
        } else if constexpr (std::is_same_v<T, std::vector<std::string>>) {
            for (std::size_t i = 0; i < value.size() && info.check; ++i)
                report(field + "[" + std::to_string(i) + "]", info.check(value[i]));
        } else {
            if constexpr (std::is_integral_v<T> && !std::is_same_v<T, bool>)
                if (info.min < info.max &&
                    (std::cmp_less(value, info.min) || std::cmp_greater(value, info.max)))
                    report(field, "must be between " + std::to_string(info.min) + " and " +
                                      std::to_string(info.max) + ", got " + std::to_string(value));
            if (info.check)
                report(field, info.check(value));
        }
    }

    template <class T>
    void size(std::string_view key, const T& value, const schema::field_info<T>& info) {
        field(key, value, info);
    }

    template <class Section>
    void section(std::string_view key, const Section& value, const schema::field_info<Section>&) {
        if constexpr (schema::is_optional<Section>::value) {
            if (value)
                check_section(at(key), *value);
        } else {
            check_section(at(key), value);
        }
    }

    template <class Section>
    void sections(std::string_view key, const std::vector<Section>& list,
                  const schema::field_info<std::vector<Section>>&) {
        for (std::size_t i = 0; i < list.size(); ++i) {
            // The UEFI variable store is nvram:, which the checker below looks at.
            if constexpr (std::is_same_v<Section, disk_definition>)
                if (list[i].bus == disk_bus::pflash)
                    continue;
            check_section(at(key) + "[" + std::to_string(i) + "]", list[i]);
        }
    }

    // Checked with the fields they depend on (checker below).
    void nvram(std::string_view, const vm_definition&, const schema::field_info<fs::path>&) {}
    void serial_log(std::string_view, const serial_definition&, const schema::field_info<bool>&) {}
    void host_port(std::string_view, const std::uint16_t&,
                   const schema::field_info<std::uint16_t>&) {}

private:
    std::string at(std::string_view key) const {
        return path_.empty() ? std::string(key) : path_ + "." + std::string(key);
    }

    template <class Section>
    void check_section(std::string path, const Section& section) {
        value_checker inner(out_, sources_, std::move(path));
        schema::describe(inner, section);
    }

    void report(const std::string& field, std::optional<std::string> problem) {
        if (problem)
            out_.push_back(sources_.make_diagnostic(field, std::move(*problem)));
    }

    std::vector<diagnostic>& out_;
    const source_map& sources_;
    std::string path_;
};

class checker {
public:
    checker(const vm_definition& def, const validate_options& options)
        : def_(def)
        , options_(options) {}

    std::vector<diagnostic> run() {
        value_checker values(diagnostics_, def_.sources, "");
        schema::describe(values, def_);
        check_boot();
        check_disks();
        check_serial();
        check_network();
        check_security();
        check_cloud_init();
        check_shares();
        sort_by_position(diagnostics_);
        return std::move(diagnostics_);
    }

private:
    void fail(std::string field, std::string message) {
        diagnostics_.push_back(def_.sources.make_diagnostic(std::move(field), std::move(message)));
    }

    // A file qemu will open: it must exist and be a regular file (or a block device for disks).
    void check_existing(const std::string& field, const fs::path& p, bool block_ok) {
        std::error_code ec;
        auto status = fs::status(p, ec);
        if (ec && status.type() != fs::file_type::not_found) {
            fail(field, "cannot access " + quoted(p) + ": " + ec.message());
            return;
        }
        if (!fs::exists(status)) {
            fail(field, "file not found: " + quoted(p));
            return;
        }
        if (!fs::is_regular_file(status) && !(block_ok && fs::is_block_file(status)))
            fail(field, "not a regular file: " + quoted(p));
    }

    void check_boot() {
        if (def_.vmgenid && def_.machine == machine_type::microvm)
            fail("vmgenid", "needs ACPI, which microvm does not have here; use pc or q35");
        if (def_.boot == boot_mode::kernel) {
            if (!def_.kernel)
                fail("boot", "kernel boot needs a kernel");
        } else {
            // Without a kernel, initrd and append are reported below, on their own lines.
            if (def_.kernel)
                fail("boot", "disk boot does not use kernel, initrd or append; remove them or "
                             "use boot: kernel");
            if (def_.disks.empty())
                fail("boot", "disk boot needs at least one disk");
        }
        if (!def_.kernel) {
            if (def_.initrd)
                fail("initrd", "needs a kernel");
            if (def_.append)
                fail("append", "needs a kernel");
        }
        if (def_.firmware == firmware_type::uefi && def_.machine == machine_type::microvm)
            fail("firmware", "microvm has no flash for UEFI firmware; use q35 or pc");
        if (options_.check_files) {
            if (def_.firmware == firmware_type::uefi)
                check_firmware_file(uefi_code_file);
            if (def_.kernel)
                check_existing("kernel", *def_.kernel, false);
            if (def_.initrd)
                check_existing("initrd", *def_.initrd, false);
        }
    }

    void check_disks() {
        std::map<std::string, std::string> names; // disk name -> field of its first use
        std::map<std::string, std::string> nodes; // every block node name -> disk field
        std::map<fs::path, std::string> files;    // image -> disk field
        std::size_t ide_disks = 0;
        if (nvram_disk(def_)) {
            const std::string store = "the UEFI variable store (firmware: uefi)";
            names.emplace(nvram_disk_name, store);
            nodes.emplace(nvram_disk_name, store);
            nodes.emplace(std::string(nvram_disk_name) + "-file", store);
            nodes.emplace(uefi_code_node, "the UEFI firmware (firmware: uefi)");
            nodes.emplace(std::string(uefi_code_node) + "-file",
                          "the UEFI firmware (firmware: uefi)");
        }
        if (def_.cloud_init) {
            const std::string seed = "the cloud-init seed (cloud_init:)";
            names.emplace(cloud_init_seed_node, seed);
            nodes.emplace(cloud_init_seed_node, seed);
            nodes.emplace(std::string(cloud_init_seed_node) + "-file", seed);
        }
        for (std::size_t i = 0; i < def_.disks.size(); ++i) {
            const auto& disk = def_.disks[i];
            if (disk.bus == disk_bus::pflash) {
                check_nvram(disk, files);
                continue;
            }
            auto field = disk_field(i);
            auto sub = [&](std::string_view key) { return field + "." + std::string(key); };

            // An empty or invalid name is the schema's to report (schema::disk_name_problem).
            bool name_reported = !is_valid_disk_name(disk.name);
            if (!name_reported)
                if (auto [it, fresh] = names.emplace(disk.name, field); !fresh) {
                    fail(sub("name"),
                         "disk name '" + disk.name + "' is also used by " + it->second);
                    name_reported = true;
                }

            // A node name defaulted from a bad disk name is the same mistake: report it once.
            if (!(name_reported && disk.node_name == disk.name))
                check_node_name(disk, field, nodes);

            if (disk.file.empty()) {
                fail(sub("file"), "must not be empty");
            } else if (auto [it, fresh] = files.emplace(disk.file.lexically_normal(), field);
                       !fresh) {
                fail(sub("file"), "image " + quoted(disk.file) + " is also used by " + it->second);
            }

            if (disk.size && disk.read_only)
                fail(sub("size"), "a read-only disk is never created; remove size");
            if (disk.backing) {
                if (disk.format != disk_format::qcow2)
                    fail(sub("backing"), "only qcow2 images can have a backing file");
                if (disk.read_only)
                    fail(sub("backing"), "a read-only disk is never created; remove backing");
            }

            if (def_.machine == machine_type::microvm && disk.bus != disk_bus::virtio)
                fail(sub("bus"), "microvm supports only virtio disks");
            if (disk.bus == disk_bus::ide) {
                if (disk.read_only)
                    fail(sub("read_only"), "ide disks cannot be read-only (use virtio or scsi)");
                std::size_t slots = def_.machine == machine_type::pc ? 4 : 6;
                if (def_.machine != machine_type::microvm && ++ide_disks > slots)
                    fail(sub("bus"), "too many ide disks: " + std::string(to_string(def_.machine)) +
                                         " has " + std::to_string(slots) + " ide slots");
            }

            if (options_.check_files && !disk.file.empty())
                check_image(disk, field);
            if (disk.encryption)
                check_encryption(disk, field);
        }
    }

    void check_firmware_file(std::string_view file) {
        std::error_code ec;
        if (!fs::is_regular_file(fs::path(file), ec))
            fail("firmware", "UEFI firmware " + quoted(fs::path(file)) +
                                 " not found (install Debian's ovmf package)");
    }

    // The loader made this disk from firmware: and nvram:, so only its file can be wrong.
    void check_nvram(const disk_definition& nvram, std::map<fs::path, std::string>& files) {
        if (nvram.file.empty())
            fail("nvram", "must not be empty");
        else if (auto [it, fresh] = files.emplace(nvram.file.lexically_normal(), "nvram"); !fresh)
            fail("nvram", "image " + quoted(nvram.file) + " is also used by " + it->second);
        if (!options_.check_files)
            return;
        // A missing store is made from OVMF's empty one when the VM starts.
        std::error_code ec;
        if (!fs::exists(nvram.file, ec)) {
            check_firmware_file(uefi_vars_template);
            if (auto dir = nvram.file.parent_path(); !fs::is_directory(dir, ec))
                fail("nvram", "directory not found: " + quoted(dir));
        } else if (!fs::is_regular_file(nvram.file, ec)) {
            fail("nvram", "not a regular file: " + quoted(nvram.file));
        }
    }

    void check_encryption(const disk_definition& disk, const std::string& field) {
        if (disk.format != disk_format::qcow2)
            fail(field + ".encryption", "only qcow2 images can be encrypted");
        // A reset gives each disk a fresh overlay that vm_reset makes without the key: what the
        // guest writes after a reset would be stored in clear.
        if (def_.reset.strategy == reset_strategy::template_ram ||
            def_.reset.strategy == reset_strategy::standby)
            fail(field + ".encryption", "reset.strategy " +
                                            std::string(to_string(def_.reset.strategy)) +
                                            " does not support encrypted disks yet (use loadvm)");
        const auto& key = disk.encryption->key_file;
        const auto key_field = field + ".encryption.key_file";
        if (!options_.check_files || key.empty())
            return;
        // lstat, not stat: a symlink could be swapped for another file between this check and
        // qemu reading it.
        struct stat st {};
        if (::lstat(key.c_str(), &st) != 0) {
            fail(key_field, "cannot read key file " + quoted(key) + ": " +
                                std::error_code(errno, std::generic_category()).message());
            return;
        }
        if (!S_ISREG(st.st_mode)) {
            fail(key_field, "not a regular file: " + quoted(key));
            return;
        }
        if ((st.st_mode & 0077) != 0) {
            char mode[8];
            std::snprintf(mode, sizeof mode, "%04o", static_cast<unsigned>(st.st_mode & 07777));
            fail(key_field, "key file " + quoted(key) + " is accessible to other users (mode " +
                                mode + "): chmod 600 it");
        } else if (st.st_size == 0) {
            fail(key_field, "key file " + quoted(key) + " is empty");
        }
    }

    void check_security() {
        const auto& user = def_.security.run_as;
        if (user.empty())
            return;
        // A reset point's overlays are made by qemu, inside the state directory that only
        // qmpkit's user may enter.
        if (def_.reset.strategy == reset_strategy::template_ram ||
            def_.reset.strategy == reset_strategy::standby)
            fail("security.run_as", "reset.strategy " +
                                        std::string(to_string(def_.reset.strategy)) +
                                        " does not work with run_as (use loadvm)");
        // An invalid name is the schema's to report (schema::host_user_problem).
        if (!is_valid_user_name(user) || !options_.check_files)
            return;
        // Looked up by getent (libc-bin), which asks every NSS source the host configured:
        // the qmpkit tool is linked statically, and a static program cannot load NSS modules
        // safely (getpwnam would need the very glibc build it was linked with).
        const auto uid = uid_of_user(user);
        if (!uid) {
            fail("security.run_as", "no such user '" + user + "' on this host");
            return;
        }
        if (*uid == 0)
            fail("security.run_as", "'" + user +
                                        "' is uid 0: qemu would keep every privilege; leave "
                                        "run_as out or name an unprivileged user");
        else if (::geteuid() != 0)
            fail("security.run_as",
                 "qemu can switch to user '" + user + "' only when qmpkit runs as root");
    }

    void check_node_name(const disk_definition& disk, const std::string& field,
                         std::map<std::string, std::string>& nodes) {
        if (!is_valid_node_name(disk.node_name)) {
            fail(field + ".node_name", "invalid node name '" + disk.node_name + "': use up to " +
                                           std::to_string(schema::max_node_name) +
                                           " letters, digits, '_', '.' or '-', starting with a "
                                           "letter");
            return;
        }
        for (const auto& node : {disk.node_name, disk.node_name + "-file"}) {
            if (auto [it, fresh] = nodes.emplace(node, field); !fresh) {
                fail(field + ".node_name",
                     "block node name '" + node + "' is also used by " + it->second);
                return;
            }
        }
    }

    void check_image(const disk_definition& disk, const std::string& field) {
        std::error_code ec;
        auto status = fs::status(disk.file, ec);
        if (fs::exists(status)) {
            if (!fs::is_regular_file(status) && !fs::is_block_file(status))
                fail(field + ".file", "not a regular file or block device: " + quoted(disk.file));
            return;
        }
        if (ec && status.type() != fs::file_type::not_found) {
            fail(field + ".file", "cannot access " + quoted(disk.file) + ": " + ec.message());
            return;
        }
        if (disk.read_only) {
            fail(field + ".file", "file not found: " + quoted(disk.file));
            return;
        }
        if (!disk.size && !disk.backing) {
            fail(field + ".file", "image " + quoted(disk.file) +
                                      " does not exist and cannot be created without a size");
            return;
        }
        if (disk.backing)
            check_existing(field + ".backing", *disk.backing, true);
    }

    void check_serial() {
        if (options_.check_files && def_.serial.log && !def_.serial.log_file.empty()) {
            auto dir = def_.serial.log_file.parent_path();
            std::error_code ec;
            if (!fs::is_directory(dir, ec))
                fail("serial.log", "directory not found: " + quoted(dir));
        }
    }

    void check_network() {
        if (!def_.network)
            return;
        const auto& net = *def_.network;

        std::map<std::tuple<forward_protocol, std::string, std::uint16_t>, std::string> seen;
        for (std::size_t i = 0; i < net.forwards.size(); ++i) {
            const auto& fwd = net.forwards[i];
            auto field = "network.forwards[" + std::to_string(i) + "]";
            auto key = std::tuple(fwd.protocol, fwd.host_addr, fwd.host_port);
            if (auto [it, fresh] = seen.emplace(key, field); !fresh && fwd.host_port != 0)
                fail(field + ".host_port", std::string(to_string(fwd.protocol)) + " " +
                                               fwd.host_addr + ":" + std::to_string(fwd.host_port) +
                                               " is already forwarded by " + it->second);
        }
    }

    void check_cloud_init() {
        if (!def_.cloud_init)
            return;
        const auto& ci = *def_.cloud_init;
        if (!options_.check_files)
            return;
        if (ci.user_data)
            check_existing("cloud_init.user_data", *ci.user_data, false);
        if (ci.network_config)
            check_existing("cloud_init.network_config", *ci.network_config, false);
        for (const auto* tool : {"genisoimage", "ssh-keygen"})
            if (!program_in_path(tool))
                fail("cloud_init", std::string(tool) +
                                       " not found (install Debian's genisoimage and "
                                       "openssh-client packages)");
    }

    void check_shares() {
        std::map<std::string, std::size_t> tags;
        std::map<std::string, std::size_t> mounts;
        for (std::size_t i = 0; i < def_.shares.size(); ++i) {
            const auto& share = def_.shares[i];
            const auto field = "shares[" + std::to_string(i) + "]";
            // An invalid tag or mount point is the schema's to report (share_tag_problem,
            // guest_mount_problem); here, what two shares have in common.
            if (!schema::share_tag_problem(share.tag))
                if (auto [it, added] = tags.emplace(share.tag, i); !added)
                    fail(field + ".tag", "tag '" + share.tag + "' is also shares[" +
                                             std::to_string(it->second) + "]'s");
            if (!share.mount.empty()) {
                if (!schema::guest_mount_problem(share.mount))
                    if (auto [it, added] = mounts.emplace(share.mount, i); !added)
                        fail(field + ".mount", "'" + share.mount + "' is also shares[" +
                                                   std::to_string(it->second) + "]'s mount point");
                if (!def_.cloud_init)
                    fail(field + ".mount", "needs a cloud_init: section (cloud-init adds the "
                                           "mount to the guest's fstab); without one, mount "
                                           "the tag in the guest yourself");
                else if (def_.cloud_init->user_data)
                    fail(field + ".mount",
                         "cloud_init.user_data replaces the user-data that would mount it: "
                         "mount the tag from your own user-data instead");
            }
            if (!options_.check_files || share.path.empty())
                continue;
            std::error_code ec;
            const auto status = fs::status(share.path, ec);
            if (!fs::exists(status))
                fail(field + ".path", "directory not found: " + quoted(share.path));
            else if (!fs::is_directory(status))
                fail(field + ".path", "not a directory: " + quoted(share.path));
        }
    }

    const vm_definition& def_;
    const validate_options& options_;
    std::vector<diagnostic> diagnostics_;
};

} // namespace

std::vector<diagnostic> check_definition(const vm_definition& def,
                                         const validate_options& options) {
    return checker(def, options).run();
}

void validate_definition(const vm_definition& def, const validate_options& options) {
    auto problems = check_definition(def, options);
    if (!problems.empty())
        throw error(std::move(problems));
}

} // namespace qmpkit::launcher
