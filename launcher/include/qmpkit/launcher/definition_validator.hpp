#pragma once

#include <qmpkit/launcher/diagnostic.hpp>
#include <qmpkit/launcher/vm_definition.hpp>

#include <string_view>
#include <vector>

namespace qmpkit::launcher {

struct validate_options {
    // Check that kernel, initrd, disk images (or what is needed to create them) and the serial
    // log's directory exist. Off for a definition whose files are not expected to be in place,
    // such as one embedded in a snapshot that is being inspected. Files are only looked at.
    bool check_files = true;
};

// Every value and every relation between values that the loader does not check: name syntax,
// ranges, unique disk and node names, boot requirements, machine and bus combinations, files.
std::vector<diagnostic> check_definition(const vm_definition& def,
                                         const validate_options& options = {});

// What is wrong only when the definitions are used on one host, each of them valid alone: one VM
// name twice, an image that two of them use and one writes, a host port both forward, a serial
// log both write. Each conflict is reported at the later definition's field, naming the earlier
// one; a file given twice counts once.
std::vector<diagnostic> check_definitions_together(const std::vector<vm_definition>& defs);

// check_definition, throwing error with all diagnostics when there are any.
void validate_definition(const vm_definition& def, const validate_options& options = {});

// [A-Za-z0-9][A-Za-z0-9_.-]{0,63}: safe as a directory name and in qemu's -name.
bool is_valid_vm_name(std::string_view name) noexcept;
// [A-Za-z][A-Za-z0-9_-]{0,23}
bool is_valid_disk_name(std::string_view name) noexcept;
// A host user name for security.run_as: letters, digits, '_', '.', '-', starting with a letter,
// a digit or '_', at most 32 characters. Nothing here that qemu's -runas could read as its
// "uid:gid" form.
bool is_valid_user_name(std::string_view name) noexcept;
// A qemu block node name ([A-Za-z][A-Za-z0-9_.-]) short enough that "<name>-file", the protocol
// node under it, still fits qemu's 31 characters.
bool is_valid_node_name(std::string_view name) noexcept;
// A host name: dot-separated labels of letters, digits and '-' (not first or last), up to 63
// each and 253 in all (cloud_init.hostname; a clone's own host name).
bool is_valid_hostname(std::string_view name) noexcept;

} // namespace qmpkit::launcher
