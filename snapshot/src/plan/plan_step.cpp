#include "plan_step.hpp"

#include <boost/json.hpp>

namespace qmpkit::snapshot::detail {

namespace json = boost::json;
namespace fs = std::filesystem;

namespace {

json::object execute(std::string_view name, const json::object& arguments) {
    json::object o{{"execute", name}};
    if (!arguments.empty())
        o["arguments"] = arguments;
    return o;
}

json::array qemu_img_args(const image_snapshot_change& s) {
    const char* flag = s.what == image_snapshot_change::kind::create  ? "-c"
                       : s.what == image_snapshot_change::kind::apply ? "-a"
                                                                      : "-d";
    return {"snapshot", flag, s.tag, s.image.string()};
}

json::object disks_of(const launcher::vm_definition& def) {
    json::object disks;
    for (const auto& d : def.disks)
        disks[d.name] = d.file.string();
    return disks;
}

struct describer {
    std::optional<json::object> operator()(const qmp_command& c) const {
        return execute(c.name, c.arguments);
    }
    std::optional<json::object> operator()(const qmp_job& j) const {
        auto o = execute(j.command, j.arguments);
        o["until"] = j.complete_when_ready
                         ? "the job is ready, then job-complete; concluded, then job-dismiss"
                         : "the job concluded, then job-dismiss";
        return o;
    }
    std::optional<json::object> operator()(const hmp_command& h) const {
        return execute("human-monitor-command", {{"command-line", h.line}});
    }
    std::optional<json::object> operator()(const memory_save& s) const {
        return json::object{
            {"save-memory", s.file.string()},
            {"via", json::array{"getfd", "migrate-set-parameters", "migrate", "query-migrate"}}};
    }
    std::optional<json::object> operator()(const memory_load& l) const {
        return json::object{{"load-memory", l.file.string()},
                            {"via", json::array{"getfd", "migrate-incoming", "query-migrate"}}};
    }
    std::optional<json::object> operator()(const image_snapshot_change& s) const {
        return json::object{{"qemu-img", qemu_img_args(s)}};
    }
    std::optional<json::object> operator()(const image_commit& c) const {
        return json::object{{"qemu-img", json::array{"commit", "-d", c.overlay.string()}}};
    }
    std::optional<json::object> operator()(const image_rebase& r) const {
        json::array args{"rebase"};
        if (r.unsafe)
            args.emplace_back("-u");
        args.emplace_back("-b");
        args.emplace_back(r.backing ? r.backing->string() : std::string());
        if (r.backing_format) {
            args.emplace_back("-F");
            args.emplace_back(to_string(*r.backing_format));
        }
        args.emplace_back(r.image.string());
        return json::object{{"qemu-img", std::move(args)}};
    }
    std::optional<json::object> operator()(const create_overlay& c) const {
        json::array args{"create", "-f", "qcow2", "-b", c.backing.string()};
        if (c.backing_format) {
            args.emplace_back("-F");
            args.emplace_back(to_string(*c.backing_format));
        }
        if (c.key)
            args.emplace_back("(encrypted with the disk's key)");
        args.emplace_back(c.overlay.string());
        return json::object{{"qemu-img", std::move(args)}};
    }
    std::optional<json::object> operator()(const remove_file& r) const {
        return json::object{{"remove", r.file.string()}};
    }
    std::optional<json::object> operator()(const directories_make& d) const {
        json::array dirs;
        for (const auto& dir : d.dirs)
            dirs.emplace_back(dir.string());
        return json::object{{"make-directories", std::move(dirs)}};
    }
    std::optional<json::object> operator()(const file_copy& c) const {
        return json::object{{"copy", c.from.string()}, {"to", c.to.string()}};
    }
    std::optional<json::object> operator()(const point_write& w) const {
        return json::object{{"write", "reset point"}, {"name", w.point.name}};
    }
    std::optional<json::object> operator()(const guest_freeze_step&) const {
        return json::object{{"guest-agent", "guest-fsfreeze-freeze"}};
    }
    std::optional<json::object> operator()(const guest_thaw&) const {
        return json::object{{"guest-agent", "guest-fsfreeze-thaw"}};
    }
    std::optional<json::object> operator()(const shares_unmount&) const {
        return json::object{{"guest-agent", "unmount the mounted 9p shares"}};
    }
    std::optional<json::object> operator()(const shares_remount&) const {
        return json::object{{"guest-agent", "mount the unmounted 9p shares again"}};
    }
    std::optional<json::object> operator()(const shares_mount_declared&) const {
        return json::object{{"guest-agent", "mount the definition's 9p shares"}};
    }
    std::optional<json::object> operator()(const stop_qemu&) const {
        return json::object{{"qemu", "quit"}};
    }
    std::optional<json::object> operator()(const start_qemu& s) const {
        json::array args;
        for (const auto& a : s.extra_args)
            args.emplace_back(a);
        json::object o{{"qemu", "start"},
                       {"disks", disks_of(s.definition)},
                       {"arguments", std::move(args)},
                       {"paused", s.paused}};
        if (!s.memory_template.empty())
            o["memory"] = s.memory_template.string() + " (mapped copy-on-write)";
        return o;
    }
    std::optional<json::object> operator()(const instance_overlays& i) const {
        json::object overlays;
        for (std::size_t k = 0; k < i.files.size() && k < i.point.disks.size(); ++k)
            overlays[i.files[k].string()] = i.point.disks[k].base.string();
        return json::object{{"new-overlays", std::move(overlays)}};
    }
    std::optional<json::object> operator()(const device_state_load& d) const {
        return json::object{{"load-device-state", d.file.string()},
                            {"via", json::array{"migrate-set-capabilities", "getfd",
                                                "migrate-incoming", "MIGRATION event"}}};
    }
    std::optional<json::object> operator()(const overlays_tidy&) const {
        return json::object{{"remove", "overlays nothing uses any more"}};
    }
    std::optional<json::object> operator()(const guest_clock_set&) const {
        return json::object{{"guest-agent", "guest-set-time"}};
    }
    std::optional<json::object> operator()(const set_run_state& s) const {
        return json::object{{"run-state", to_string(s.wanted)}};
    }
    std::optional<json::object> operator()(const journal_write& w) const {
        return json::object{{"write", "journal"}, {"operation", w.journal.operation}};
    }
    std::optional<json::object> operator()(const journal_remove&) const {
        return json::object{{"remove", "journal"}};
    }
    std::optional<json::object> operator()(const definition_write& w) const {
        return json::object{{"write", "definition"}, {"disks", disks_of(w.definition)}};
    }
    std::optional<json::object> operator()(const metadata_write& w) const {
        json::object o{{"write", "metadata"}};
        o["current"] = w.tree.current() ? json::value(*w.tree.current()) : json::value();
        return o;
    }
    std::optional<json::object> operator()(const fault_point_step&) const { return std::nullopt; }
};

} // namespace

std::optional<json::object> describe(const plan_action& action) {
    return std::visit(describer{}, action);
}

std::vector<json::object> describe(const operation_plan& plan) {
    std::vector<json::object> out;
    for (const auto& step : plan)
        if (auto d = describe(step.action))
            out.push_back(std::move(*d));
    return out;
}

launcher::vm_definition with_active_files(launcher::vm_definition def,
                                          const std::map<std::string, fs::path>& files) {
    for (auto& disk : def.disks)
        if (auto f = files.find(disk.name); f != files.end()) {
            disk.file = f->second;
            disk.format = launcher::disk_format::qcow2;
            disk.size.reset();
            disk.backing.reset();
        }
    return def;
}

} // namespace qmpkit::snapshot::detail
