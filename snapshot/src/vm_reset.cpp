#include "memory_state.hpp"
#include "vm_context.hpp"

#include <qmpkit/launcher/qemu_img.hpp>
#include <qmpkit/snapshot/vm_reset.hpp>

#include <boost/json.hpp>
#include <spdlog/logger.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <future>
#include <unistd.h>

namespace qmpkit::snapshot {
namespace {

namespace json = boost::json;
namespace fs = std::filesystem;
using namespace std::chrono_literals;
using detail::vm_context;

launcher::state_directory state_of(const std::string& vm, const manager_options& o) {
    return {o.state_root.empty() ? launcher::default_state_root() : o.state_root, vm};
}

fs::path point_file(const fs::path& point_dir) {
    return point_dir / "point.json";
}

void write_point(const fs::path& dir, const reset_point& p) {
    json::array disks;
    for (const auto& d : p.disks)
        disks.push_back(
            {{"name", d.name}, {"base", d.base.string()}, {"overlay", d.overlay.string()}});
    json::object o{{"format", "qmpkit-reset-point"},
                   {"version", 1},
                   {"name", p.name},
                   {"created_at", p.created_at},
                   {"ram", p.ram.string()},
                   {"device_state", p.device_state.string()},
                   {"disks", std::move(disks)},
                   {"definition", p.definition}};
    launcher::write_file_atomically(point_file(dir), json::serialize(o) + "\n");
}

reset_point read_point(const fs::path& dir) {
    const auto file = point_file(dir);
    try {
        auto o = json::parse(launcher::read_file(file)).as_object();
        if (o.at("format").as_string() != "qmpkit-reset-point" || o.at("version").as_int64() != 1)
            throw error(error_kind::metadata_corrupt,
                        file.string() + ": not a qmpkit reset point of version 1");
        reset_point p;
        p.name = o.at("name").as_string();
        p.created_at = o.at("created_at").as_int64();
        p.ram = std::string(o.at("ram").as_string());
        p.device_state = std::string(o.at("device_state").as_string());
        for (const auto& d : o.at("disks").as_array())
            p.disks.push_back({std::string(d.at("name").as_string()),
                               std::string(d.at("base").as_string()),
                               std::string(d.at("overlay").as_string())});
        p.definition = o.at("definition").as_string();
        return p;
    } catch (const std::exception& e) {
        if (dynamic_cast<const error*>(&e))
            throw;
        throw error(error_kind::metadata_corrupt, file.string() + ": " + e.what());
    }
}

// Copies only the parts of the file that hold data: guest RAM is mostly holes at first.
void copy_sparse(const fs::path& from, const fs::path& to) {
    const int in = ::open(from.c_str(), O_RDONLY | O_CLOEXEC);
    if (in < 0)
        throw error(error_kind::other,
                    "cannot read " + from.string() + ": " + std::strerror(errno));
    const int out = ::open(to.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (out < 0) {
        ::close(in);
        throw error(error_kind::other,
                    "cannot create " + to.string() + ": " + std::strerror(errno));
    }
    const off_t size = ::lseek(in, 0, SEEK_END);
    bool ok = ::ftruncate(out, size) == 0;
    std::vector<char> buffer(1 << 20);
    for (off_t data = ::lseek(in, 0, SEEK_DATA); ok && data >= 0 && data < size;) {
        off_t hole = ::lseek(in, data, SEEK_HOLE);
        if (hole < 0)
            hole = size;
        for (off_t at = data; ok && at < hole;) {
            const auto want = static_cast<std::size_t>(
                std::min<off_t>(hole - at, static_cast<off_t>(buffer.size())));
            const auto n = ::pread(in, buffer.data(), want, at);
            ok = n > 0 && ::pwrite(out, buffer.data(), static_cast<std::size_t>(n), at) == n;
            at += n > 0 ? n : 0;
        }
        data = ::lseek(in, hole, SEEK_DATA);
    }
    ok = ok && ::fsync(out) == 0;
    ::close(in);
    ::close(out);
    if (!ok) {
        std::error_code ignored;
        fs::remove(to, ignored);
        throw error(error_kind::other,
                    "copying " + from.string() + " to " + to.string() + " failed");
    }
}

// x-ignore-shared: migration skips RAM that lives in a shared file. Only for reset points: a
// memory snapshot taken later must save the RAM, so it is switched off again.
void ignore_shared_ram(qmp::client& qmp, bool on) {
    qmp.execute(
        "migrate-set-capabilities",
        {{"capabilities", json::array{{{"capability", "x-ignore-shared"}, {"state", on}}}}});
}

std::vector<reset_point> read_points(const launcher::state_directory& dir) {
    std::vector<reset_point> points;
    std::error_code ec;
    for (const auto& entry : fs::directory_iterator(dir.reset_points(), ec))
        if (fs::exists(point_file(entry.path())))
            points.push_back(read_point(entry.path()));
    std::sort(points.begin(), points.end(), [](auto& a, auto& b) {
        return a.created_at != b.created_at ? a.created_at < b.created_at : a.name < b.name;
    });
    return points;
}

} // namespace

vm_reset::vm_reset(std::string vm, manager_options options)
    : vm_(std::move(vm))
    , options_(std::move(options)) {}

std::vector<reset_point> vm_reset::points() const {
    return read_points(state_of(vm_, options_));
}

reset_point vm_reset::create_point(const std::string& name) {
    require_valid_snapshot_name(name);
    vm_context ctx(vm_, options_, "creating a reset point");
    if (!ctx.running())
        throw error(error_kind::not_running, "a reset point needs VM '" + vm_ + "' running");
    if (!ctx.def.reset.file_backed_memory())
        throw error(
            error_kind::unsupported,
            "VM '" + vm_ +
                "' resets by loadvm (reset.strategy: loadvm): its RAM is "
                "not file-backed; take a snapshot instead, or set reset.strategy: template");
    const auto runtime = launcher::read_runtime_info(ctx.dir);
    const auto ram = ctx.dir.ram_file();
    if (!runtime || std::none_of(runtime->command_line.begin(), runtime->command_line.end(),
                                 [&](const std::string& a) {
                                     return a.find(ram.string()) != std::string::npos;
                                 }))
        throw error(error_kind::unsupported,
                    "VM '" + vm_ +
                        "' runs on a reset point's RAM (copy-on-write): restart it "
                        "(qmpkit shutdown, qmpkit start) before taking a new reset point");
    const auto dir = ctx.dir.reset_points() / name;
    if (fs::exists(dir))
        throw error(error_kind::name_taken,
                    "VM '" + vm_ + "' already has a reset point named '" + name + "'");
    fs::create_directories(dir);

    reset_point point;
    point.name = name;
    point.created_at = detail::now_seconds();
    point.ram = dir / "ram";
    point.device_state = dir / "device.state";
    point.definition = launcher::dump_definition(ctx.def);
    auto& qmp = *ctx.qmp;
    const bool was_running = ctx.state == vm_state::running;
    try {
        ignore_shared_ram(qmp, true);
        // Ends with the VM paused: RAM file, device state and disks are taken at this one point.
        detail::save_memory(qmp, point.device_state, {});
        ignore_shared_ram(qmp, false);
        copy_sparse(ram, point.ram);

        json::array actions;
        auto live = detail::live_disks(qmp);
        for (auto& disk : ctx.def.disks) {
            if (disk.read_only)
                continue;
            const auto& top = live.at(disk.name);
            const auto running_overlay = dir / (disk.name + ".run.qcow2");
            actions.push_back({{"type", "blockdev-snapshot-sync"},
                               {"data",
                                {{"node-name", top.node_name},
                                 {"snapshot-file", running_overlay.string()},
                                 {"snapshot-node-name", "rp" + detail::hex_id()},
                                 {"format", "qcow2"}}}});
            point.disks.push_back({disk.name, top.file, dir / (disk.name + ".qcow2")});
            disk.file = running_overlay;
            disk.format = launcher::disk_format::qcow2;
            disk.size.reset();
            disk.backing.reset();
        }
        if (!actions.empty())
            qmp.execute("transaction", {{"actions", std::move(actions)}});
        ctx.save_definition();
        write_point(dir, point);
        if (was_running)
            qmp.execute("cont");
    } catch (...) {
        try {
            ignore_shared_ram(qmp, false);
            if (was_running)
                qmp.execute("cont");
        } catch (const std::exception&) {
        }
        std::error_code ignored;
        fs::remove_all(dir, ignored);
        throw;
    }
    return point;
}

void vm_reset::remove_point(const std::string& name) {
    vm_context ctx(vm_, options_, "removing a reset point");
    const auto dir = ctx.dir.reset_points() / name;
    if (!fs::exists(point_file(dir)))
        throw error(error_kind::not_found,
                    "VM '" + vm_ + "' has no reset point named '" + name + "'");
    if (ctx.running()) {
        // The VM may run on this point's RAM or frozen disks.
        const auto runtime = launcher::read_runtime_info(ctx.dir);
        for (const auto& a : runtime ? runtime->command_line : std::vector<std::string>{})
            if (a.find(dir.string()) != std::string::npos)
                throw error(error_kind::running,
                            "VM '" + vm_ + "' runs on reset point '" + name + "': stop it first");
    }
    fs::remove_all(dir);
}

reset_result vm_reset::reset(const std::optional<std::string>& target, bool paused) {
    const auto started = std::chrono::steady_clock::now();
    const auto state = state_of(vm_, options_);
    const auto def = launcher::load_definition(state.definition_copy());
    auto strategy = def.reset.strategy;
    const auto points = read_points(state);
    if (strategy == launcher::reset_strategy::automatic)
        strategy = def.reset.file_backed_memory() && !points.empty()
                       ? launcher::reset_strategy::template_ram
                       : launcher::reset_strategy::loadvm;
    if (strategy == launcher::reset_strategy::standby)
        throw error(error_kind::unsupported,
                    "the standby reset strategy is not available yet: use template or loadvm");

    reset_result result;
    if (strategy == launcher::reset_strategy::loadvm) {
        snapshot_manager snapshots(vm_, options_);
        auto name = target;
        if (!name)
            name = snapshots.tree().current();
        if (!name)
            throw error(error_kind::not_found,
                        "VM '" + vm_ + "' has no current snapshot to reset to");
        revert_request r;
        r.running = !paused;
        r.paused = paused;
        snapshots.revert(*name, r);
        result.strategy = "loadvm";
        result.target = *name;
    } else {
        if (points.empty())
            throw error(error_kind::not_found,
                        "VM '" + vm_ + "' has no reset point (qmpkit reset-point create " + vm_ +
                            " NAME)");
        auto point = points.back();
        if (target) {
            auto it = std::find_if(points.begin(), points.end(),
                                   [&](auto& p) { return p.name == *target; });
            if (it == points.end())
                throw error(error_kind::not_found,
                            "VM '" + vm_ + "' has no reset point named '" + *target + "'");
            point = *it;
        }
        for (const auto& f : {point.ram, point.device_state})
            if (!fs::exists(f))
                throw error(error_kind::drift, "reset point '" + point.name +
                                                   "' is damaged: " + f.string() + " is missing");

        vm_context ctx(vm_, options_, "resetting the VM");
        auto step = [&, last = std::chrono::steady_clock::now()](const char* what) mutable {
            const auto now = std::chrono::steady_clock::now();
            if (options_.logger)
                options_.logger->debug(
                    "reset: {} took {} us", what,
                    std::chrono::duration_cast<std::chrono::microseconds>(now - last).count());
            last = now;
        };
        step("locking");
        // The fresh overlays are made while the old qemu goes away: neither waits for the other
        // (the old qemu holds its own overlay file, which is unlinked, not reused).
        auto then =
            launcher::load_definition_from_string(point.definition, state.definition_copy());
        std::vector<fs::path> fresh;
        for (const auto& d : point.disks)
            fresh.push_back(d.overlay.parent_path() / (d.name + "." + detail::hex_id() + ".qcow2"));
        auto overlays = std::async(std::launch::async, [&] {
            const launcher::qemu_img img;
            for (std::size_t i = 0; i < point.disks.size(); ++i)
                img.create(fresh[i], launcher::disk_format::qcow2, std::nullopt,
                           point.disks[i].base, launcher::disk_format::qcow2);
        });
        ctx.stop_vm();
        step("stopping the old qemu");
        overlays.get();
        for (std::size_t i = 0; i < point.disks.size(); ++i) {
            const auto& d = point.disks[i];
            // Under the point's stable name, so the definition and `qmpkit disks` stay readable.
            fs::rename(fresh[i], d.overlay);
            for (auto& disk : then.disks)
                if (disk.name == d.name) {
                    disk.file = d.overlay;
                    disk.format = launcher::disk_format::qcow2;
                    disk.size.reset();
                    disk.backing.reset();
                }
        }
        step("fresh overlays");
        try {
            ctx.start_vm(then, {"-incoming", "defer"}, true, point.ram);
            step("starting qemu");
            ignore_shared_ram(*ctx.qmp, true);
            detail::load_memory(*ctx.qmp, point.device_state);
            step("loading the device state");
            if (!paused)
                ctx.qmp->execute("cont");
            step("cont");
        } catch (...) {
            // Never half-reset: a qemu that did not take the state is stopped.
            ctx.stop_vm();
            throw;
        }
        result.strategy = "template";
        result.target = point.name;
    }
    result.took = std::chrono::duration_cast<std::chrono::microseconds>(
        std::chrono::steady_clock::now() - started);
    return result;
}

} // namespace qmpkit::snapshot
