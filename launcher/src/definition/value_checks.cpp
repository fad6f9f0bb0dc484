// The checks a value of a definition fails on its own (schema.hpp names them at their fields),
// and the syntax of its names.

#include "schema.hpp"

#include <qmpkit/launcher/definition_validator.hpp>

#include <algorithm>
#include <arpa/inet.h>

namespace qmpkit::launcher {

namespace {

namespace fs = std::filesystem;

constexpr std::uint64_t min_memory = 16 * mib;
constexpr std::uint64_t sector = 512;

bool is_alpha(char c) noexcept {
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z');
}
bool is_alnum(char c) noexcept {
    return is_alpha(c) || (c >= '0' && c <= '9');
}
bool is_hex(char c) noexcept {
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

bool valid_identifier(std::string_view s, std::size_t max, bool digit_first,
                      std::string_view punctuation) noexcept {
    if (s.empty() || s.size() > max)
        return false;
    if (!(digit_first ? is_alnum(s.front()) : is_alpha(s.front())))
        return false;
    return std::all_of(s.begin() + 1, s.end(), [&](char c) {
        return is_alnum(c) || punctuation.find(c) != std::string_view::npos;
    });
}

bool valid_mac(std::string_view mac) noexcept {
    if (mac.size() != 17)
        return false;
    for (std::size_t i = 0; i < mac.size(); ++i) {
        bool ok = (i % 3 == 2) ? mac[i] == ':' : is_hex(mac[i]);
        if (!ok)
            return false;
    }
    return true;
}

bool multicast_mac(std::string_view mac) noexcept {
    char c = mac[1];
    int low = (c >= '0' && c <= '9') ? c - '0' : (c | 0x20) - 'a' + 10;
    return (low & 1) != 0;
}

bool valid_ipv4(const std::string& addr) noexcept {
    in_addr out{};
    return inet_pton(AF_INET, addr.c_str(), &out) == 1;
}

// RFC 1123 host names: dot-separated labels of letters, digits and '-', not starting or ending
// with '-'.
bool valid_hostname(std::string_view name) noexcept {
    if (name.empty() || name.size() > 253)
        return false;
    std::size_t label = 0;
    for (std::size_t i = 0; i <= name.size(); ++i) {
        if (i == name.size() || name[i] == '.') {
            if (label == 0 || label > 63 || name[i - 1] == '-')
                return false;
            label = 0;
            continue;
        }
        const char c = name[i];
        const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                        (c >= '0' && c <= '9') || (c == '-' && label > 0);
        if (!ok)
            return false;
        ++label;
    }
    return true;
}

} // namespace

namespace schema {

std::optional<std::string> vm_name_problem(const std::string& name) {
    if (name.empty())
        return "must not be empty";
    if (!is_valid_vm_name(name))
        return "invalid name '" + name +
               "': use up to 64 letters, digits, '_', '.' or '-', starting with a letter or digit";
    return std::nullopt;
}

std::optional<std::string> memory_problem(const std::uint64_t& bytes) {
    if (bytes < min_memory)
        return "must be at least " + format_size(min_memory) + ", got " + format_size(bytes);
    if (bytes % mib != 0)
        return "must be a whole number of MiB, got " + format_size(bytes);
    return std::nullopt;
}

std::optional<std::string> disk_name_problem(const std::string& name) {
    if (name.empty())
        return "must not be empty";
    if (!is_valid_disk_name(name))
        return "invalid disk name '" + name +
               "': use up to 24 letters, digits, '_' or '-', starting with a letter";
    return std::nullopt;
}

std::optional<std::string> disk_size_problem(const std::uint64_t& bytes) {
    if (bytes == 0)
        return "must be greater than 0";
    if (bytes % sector != 0)
        return "must be a multiple of 512 bytes, got " + format_size(bytes);
    return std::nullopt;
}

std::optional<std::string> mac_problem(const std::string& mac) {
    if (!valid_mac(mac))
        return "invalid MAC address '" + mac + "' (expected xx:xx:xx:xx:xx:xx)";
    if (multicast_mac(mac))
        return "'" + mac + "' is a multicast address";
    return std::nullopt;
}

std::optional<std::string> ipv4_problem(const std::string& addr) {
    if (!valid_ipv4(addr))
        return "invalid IPv4 address '" + addr + "'";
    return std::nullopt;
}

std::optional<std::string> guest_user_problem(const std::string& user) {
    if (!is_valid_user_name(user) || user == "root")
        return "invalid user name '" + user +
               "': use letters, digits, '_', '.' or '-', not starting with '-', and not root";
    return std::nullopt;
}

std::optional<std::string> hostname_problem(const std::string& name) {
    if (!valid_hostname(name))
        return "invalid host name '" + name +
               "': use letters, digits and '-' in dot-separated labels of up to 63";
    return std::nullopt;
}

std::optional<std::string> public_key_problem(const std::string& key) {
    const auto space = key.find(' ');
    if (key.find_first_of("\r\n") != std::string::npos || space == std::string::npos ||
        space == 0 || space + 1 == key.size())
        return "expected one public key line, such as 'ssh-ed25519 AAAA... comment'";
    return std::nullopt;
}

std::optional<std::string> share_tag_problem(const std::string& tag) {
    // An empty tag is a missing one, which the reader reports.
    if (!tag.empty() && !valid_identifier(tag, 31, true, "_.-"))
        return "invalid tag '" + tag + "': use up to 31 letters, digits, '_', '.' or '-'";
    return std::nullopt;
}

std::optional<std::string> guest_mount_problem(const std::string& dir) {
    // An fstab field: no blanks; absolute, and not a directory the system needs.
    if (dir.empty())
        return std::nullopt;
    if (dir.front() != '/' || dir.find_first_of(" \t\n\\'\"") != std::string::npos ||
        fs::path(dir).lexically_normal() == "/")
        return "'" + dir +
               "' is not a guest directory (an absolute path without blanks, quotes or "
               "backslashes, not /)";
    return std::nullopt;
}

std::optional<std::string> host_user_problem(const std::string& user) {
    if (!user.empty() && !is_valid_user_name(user))
        return "invalid user name '" + user +
               "': use letters, digits, '_', '.' or '-', not starting with '-'";
    return std::nullopt;
}

} // namespace schema

bool is_valid_vm_name(std::string_view name) noexcept {
    return valid_identifier(name, 64, true, "_.-");
}

bool is_valid_disk_name(std::string_view name) noexcept {
    return valid_identifier(name, 24, false, "_-");
}

bool is_valid_user_name(std::string_view name) noexcept {
    if (name.size() > 32)
        return false;
    if (name.starts_with('_')) // system users such as _apt
        name.remove_prefix(1);
    return valid_identifier(name, 32, true, "_.-");
}

bool is_valid_node_name(std::string_view name) noexcept {
    return valid_identifier(name, schema::max_node_name, false, "_.-");
}

bool is_valid_hostname(std::string_view name) noexcept {
    return valid_hostname(name);
}

} // namespace qmpkit::launcher
