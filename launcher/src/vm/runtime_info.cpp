#include <qmpkit/launcher/atomic_file.hpp>
#include <qmpkit/launcher/error.hpp>
#include <qmpkit/launcher/runtime_info.hpp>

#include <boost/json.hpp>

#include <deque>
#include <fstream>

namespace qmpkit::launcher {
namespace {

namespace json = boost::json;

std::optional<json::object> read_json_object(const std::filesystem::path& file) {
    std::error_code ec;
    if (!std::filesystem::exists(file, ec))
        return std::nullopt;
    boost::system::error_code parse_error;
    auto value = json::parse(read_file(file), parse_error);
    if (parse_error || !value.is_object())
        throw error(file.string() + ": not a qmpkit record (" +
                    (parse_error ? parse_error.message() : "not an object") + ")");
    return value.get_object();
}

template <typename T>
T field(const json::object& o, const char* key, T fallback) {
    const auto* v = o.if_contains(key);
    if (!v)
        return fallback;
    auto r = json::try_value_to<T>(*v);
    return r ? *r : fallback;
}

} // namespace

void write_runtime_info(const state_directory& dir, const runtime_info& info) {
    json::object o{{"version", 1},
                   {"qemu_pid", info.qemu_pid},
                   {"supervisor_pid", info.supervisor_pid},
                   {"accel", info.accel},
                   {"qemu_version", info.qemu_version},
                   {"started_at", info.started_at},
                   {"serial_log_offset", info.serial_log_offset},
                   {"command_line", json::value_from(info.command_line)},
                   {"forwards", json::value_from(info.forwards)}};
    // Describes a running process: nothing to keep across a power loss.
    write_file_atomically(dir.runtime_file(), json::serialize(o) + "\n",
                          std::filesystem::perms::owner_read | std::filesystem::perms::owner_write,
                          durability::atomic_only);
}

void tag_invoke(json::value_from_tag, json::value& out, const forwarded_port& port) {
    out = json::object{{"protocol", port.protocol},
                       {"host_addr", port.host_addr},
                       {"host_port", port.host_port},
                       {"guest_port", port.guest_port}};
}

std::optional<runtime_info> read_runtime_info(const state_directory& dir) {
    auto o = read_json_object(dir.runtime_file());
    if (!o)
        return std::nullopt;
    runtime_info info;
    info.qemu_pid = field<int>(*o, "qemu_pid", -1);
    info.supervisor_pid = field<int>(*o, "supervisor_pid", -1);
    info.accel = field<std::string>(*o, "accel", "");
    info.qemu_version = field<std::string>(*o, "qemu_version", "");
    info.started_at = field<std::int64_t>(*o, "started_at", 0);
    info.serial_log_offset = field<std::uint64_t>(*o, "serial_log_offset", 0);
    info.command_line = field<std::vector<std::string>>(*o, "command_line", {});
    if (const auto* list = o->if_contains("forwards"); list && list->is_array())
        for (const auto& item : list->as_array())
            if (const auto* f = item.if_object())
                info.forwards.push_back({field<std::string>(*f, "protocol", "tcp"),
                                         field<std::string>(*f, "host_addr", ""),
                                         field<std::uint16_t>(*f, "host_port", 0),
                                         field<std::uint16_t>(*f, "guest_port", 0)});
    return info;
}

std::optional<forwarded_port> forward_to(const runtime_info& info, std::uint16_t guest_port) {
    for (const auto& f : info.forwards)
        if (f.protocol == "tcp" && f.guest_port == guest_port)
            return f;
    return std::nullopt;
}

void write_exit_record(const state_directory& dir, const exit_record& record) {
    json::object o{{"version", 1},        {"state", record.state},   {"reason", record.reason},
                   {"exit", record.exit}, {"forced", record.forced}, {"ended_at", record.ended_at}};
    write_file_atomically(dir.exit_record(), json::serialize(o) + "\n");
}

std::optional<exit_record> read_exit_record(const state_directory& dir) {
    auto o = read_json_object(dir.exit_record());
    if (!o)
        return std::nullopt;
    exit_record r;
    r.state = field<std::string>(*o, "state", "shutoff");
    r.reason = field<std::string>(*o, "reason", "");
    r.exit = field<std::string>(*o, "exit", "");
    r.forced = field<bool>(*o, "forced", false);
    r.ended_at = field<std::int64_t>(*o, "ended_at", 0);
    return r;
}

std::vector<std::string> tail_lines(const std::filesystem::path& file, std::size_t count) {
    std::ifstream in(file);
    std::deque<std::string> lines;
    std::string line;
    while (std::getline(in, line)) {
        if (!line.empty() && line.back() == '\r')
            line.pop_back();
        lines.push_back(std::move(line));
        if (lines.size() > count)
            lines.pop_front();
    }
    return {lines.begin(), lines.end()};
}

} // namespace qmpkit::launcher
