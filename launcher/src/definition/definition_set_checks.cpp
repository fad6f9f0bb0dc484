// What is wrong only when several definitions are used on one host: each one alone is valid, but
// two of them name the same VM, write the same image, bind the same host port or write the same
// serial log. Each conflict is reported at the later definition's field and names where the
// earlier one says the same.

#include <qmpkit/launcher/definition_validator.hpp>

#include <cstdint>
#include <filesystem>
#include <iterator>
#include <map>
#include <set>
#include <string>
#include <system_error>
#include <tuple>
#include <utility>
#include <vector>

namespace qmpkit::launcher {

namespace {

namespace fs = std::filesystem;

// "FILE:LINE" of a field, for a message about another definition.
std::string place_of(const vm_definition& def, std::string_view field) {
    const auto where = def.sources.locate(field);
    std::string place = where.file.empty() ? "a definition" : where.file;
    if (where.line > 0)
        place += ":" + std::to_string(where.line);
    return place;
}

// The file a path names, however written (relative, through a symbolic link); the path as written
// when it cannot be resolved.
fs::path identity_of(const fs::path& file) {
    std::error_code ec;
    auto resolved = fs::weakly_canonical(file, ec);
    return ec ? file.lexically_normal() : resolved;
}

std::string disk_field_of(const vm_definition& def, std::size_t index) {
    return def.disks[index].bus == disk_bus::pflash ? "nvram" : disk_field(index) + ".file";
}

struct first_use {
    const vm_definition* def;
    std::string field;
    bool writes = false;
};

// Takes the definitions one by one, each compared with those before it.
class set_checker {
public:
    // The conflicts of `def` with the definitions added before, as its file reads.
    std::vector<diagnostic> add(const vm_definition& def) {
        found_.clear();
        check_name(def);
        check_disks(def);
        check_forwards(def);
        check_serial_log(def);
        sort_by_position(found_);
        return std::move(found_);
    }

private:
    void report(const vm_definition& def, std::string field, std::string message) {
        found_.push_back(def.sources.make_diagnostic(std::move(field), std::move(message)));
    }

    static std::string other(const first_use& use) {
        return "VM '" + use.def->name + "' (" + place_of(*use.def, use.field) + ")";
    }

    void check_name(const vm_definition& def) {
        if (auto [it, fresh] = names_.try_emplace(def.name, first_use{&def, "name"}); !fresh)
            report(def, "name",
                   "VM name '" + def.name + "' is also the name in " +
                       place_of(*it->second.def, "name") +
                       ": both would use one state directory, and only one can run");
    }

    void check_disks(const vm_definition& def) {
        for (std::size_t i = 0; i < def.disks.size(); ++i) {
            const auto& disk = def.disks[i];
            if (disk.file.empty())
                continue;
            const auto field = disk_field_of(def, i);
            const first_use use{&def, field, !disk.read_only};
            auto [it, fresh] = images_.try_emplace(identity_of(disk.file), use);
            if (fresh || (!use.writes && !it->second.writes))
                continue; // read-only in both: qemu shares the image
            report(def, field,
                   "image '" + disk.file.string() + "' is also a disk of " + other(it->second) +
                       ": qemu's image lock lets only one of them run while either writes it");
        }
    }

    void check_forwards(const vm_definition& def) {
        if (!def.network)
            return;
        const auto& forwards = def.network->forwards;
        for (std::size_t i = 0; i < forwards.size(); ++i) {
            const auto& f = forwards[i];
            if (f.host_port == 0)
                continue; // auto: a free port each start
            const auto field = "network.forwards[" + std::to_string(i) + "].host_port";
            for (const auto& [bound, use] : ports_) {
                const auto& [protocol, addr, port] = bound;
                const bool overlaps =
                    addr == f.host_addr || addr == "0.0.0.0" || f.host_addr == "0.0.0.0";
                if (use.def != &def && protocol == f.protocol && port == f.host_port && overlaps) {
                    report(def, field,
                           "host port " + f.host_addr + ":" + std::to_string(f.host_port) +
                               " is also forwarded by " + other(use) +
                               ": the second of them to start cannot bind it");
                    break;
                }
            }
            ports_.try_emplace({f.protocol, f.host_addr, f.host_port}, first_use{&def, field});
        }
    }

    void check_serial_log(const vm_definition& def) {
        if (!def.serial.log || def.serial.log_file.empty())
            return; // the default log lives in the VM's own state directory
        const first_use use{&def, "serial.log"};
        if (auto [it, fresh] = logs_.try_emplace(identity_of(def.serial.log_file), use); !fresh)
            report(def, "serial.log",
                   "serial log '" + def.serial.log_file.string() + "' is also written by " +
                       other(it->second));
    }

    std::vector<diagnostic> found_;
    std::map<std::string, first_use> names_;
    std::map<fs::path, first_use> images_;
    std::map<std::tuple<forward_protocol, std::string, std::uint16_t>, first_use> ports_;
    std::map<fs::path, first_use> logs_;
};

} // namespace

std::vector<diagnostic> check_definitions_together(const std::vector<vm_definition>& defs) {
    std::vector<diagnostic> found;
    set_checker checker;
    std::set<fs::path> files; // a file named twice is one definition
    for (const auto& def : defs) {
        if (!def.sources.file().empty() && !files.insert(identity_of(def.sources.file())).second)
            continue;
        auto of_this = checker.add(def);
        found.insert(found.end(), std::make_move_iterator(of_this.begin()),
                     std::make_move_iterator(of_this.end()));
    }
    return found;
}

} // namespace qmpkit::launcher
