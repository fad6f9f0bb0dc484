#include "../reset_files.hpp"
#include "reset_plan.hpp"

#include <qmpkit/snapshot/error.hpp>

#include <boost/json.hpp>

#include <algorithm>

namespace qmpkit::snapshot::detail {

namespace {

namespace json = boost::json;

} // namespace

const reset_point& choose_point(const std::string& vm, const std::vector<reset_point>& points,
                                const std::optional<std::string>& target,
                                const std::function<bool(const std::filesystem::path&)>& exists) {
    if (points.empty())
        throw error(error_kind::not_found, "VM '" + vm +
                                               "' has no reset point (qmpkit reset-point create " +
                                               vm + " NAME)");
    auto it = std::prev(points.end());
    if (target) {
        it = std::find_if(points.begin(), points.end(), [&](auto& p) { return p.name == *target; });
        if (it == points.end())
            throw error(error_kind::not_found,
                        "VM '" + vm + "' has no reset point named '" + *target + "'");
    }
    for (const auto& file : {it->ram, it->device_state})
        if (!exists(file))
            throw error(error_kind::drift, "reset point '" + it->name +
                                               "' is damaged: " + file.string() + " is missing");
    for (const auto& d : it->disks)
        if (!exists(d.base))
            throw error(error_kind::drift, "reset point '" + it->name + "' is damaged: image " +
                                               d.base.string() + " of disk '" + d.name +
                                               "' is missing");
    return *it;
}

launcher::reset_strategy effective_strategy(const launcher::vm_definition& def, bool has_points) {
    if (def.reset.strategy != launcher::reset_strategy::automatic)
        return def.reset.strategy;
    return def.reset.file_backed_memory() && has_points ? launcher::reset_strategy::standby
                                                        : launcher::reset_strategy::loadvm;
}

reset_plan plan_reset(const reset_facts& f, bool standby) {
    reset_plan plan;
    plan.standby = standby;
    plan.paused = f.paused;
    plan.point = choose_point(f.def.name, f.points, f.target, f.host.exists);
    auto [instance, overlay_files] = instance_definition(plan.point, f.def.name, f.overlays_dir,
                                                         f.definition_file, f.host.new_id);
    plan.instance = std::move(instance);
    auto& steps = plan.steps;
    // The overlays are made while the old qemu goes away: neither waits for the other. They
    // stay when a later step fails: the recorded definition names them from the start on.
    plan_step overlays{instance_overlays{plan.point, std::move(overlay_files)}};
    if (f.qemu_runs) {
        overlays.overlaps_next = true;
        steps.push_back(std::move(overlays));
        steps.push_back({stop_qemu{}});
    } else {
        steps.push_back(std::move(overlays));
    }
    steps.push_back({fault_point_step{"reset.template.after-stop"}});
    // Never half-reset: a qemu that did not take the state is stopped.
    steps.push_back(
        {start_qemu{plan.instance, {"-incoming", "defer"}, true, plan.point.ram}, stop_qemu{}});
    steps.push_back({fault_point_step{"reset.template.after-start"}});
    plan_step load{device_state_load{plan.point.device_state}};
    load.settles = f.paused; // a paused reset is done once the state is in
    steps.push_back(std::move(load));
    steps.push_back({fault_point_step{"reset.template.after-load"}});
    if (!f.paused) {
        plan_step cont{qmp_command{"cont"}};
        cont.settles = true;
        steps.push_back(std::move(cont));
    }
    plan.afterwards = afterwards_of(standby, f.paused, plan.instance);
    if (!standby) {
        // The slow path may follow a reset that died half-way: tidied up now, while this holds
        // the VM and no standby is being prepared.
        steps.push_back({overlays_tidy{f.def}});
        if (!f.paused && plan.instance.guest_agent)
            steps.push_back({guest_clock_set{}});
    }
    return plan;
}

reset_afterwards afterwards_of(bool standby, bool paused, const launcher::vm_definition& now) {
    return {standby, standby && !paused && now.guest_agent};
}

std::vector<json::object> describe(const reset_plan& plan) {
    std::vector<json::object> out;
    auto steps = describe(plan.steps);
    if (plan.standby) {
        out.push_back({{"standby", "the qemu prepared for reset point '" + plan.point.name +
                                       "' (paused at its state) takes the VM's place"},
                       {"via", plan.paused ? json::array{"query-status"}
                                           : json::array{"query-status", "cont"}},
                       {"replaced qemu", "SIGTERM, at the lowest priority"}});
        json::array fallback;
        for (auto& s : steps)
            fallback.push_back(std::move(s));
        out.push_back({{"if no standby is ready", std::move(fallback)}});
    } else {
        out = std::move(steps);
    }
    json::array background;
    if (plan.afterwards.prepare_standbys)
        background.emplace_back("prepare standbys for reset point '" + plan.point.name +
                                "' (the promoted standby's supervisor does, or after a fallback "
                                "this reset), remove the overlays the replaced qemu ran on");
    if (plan.afterwards.set_clock_in_background)
        background.emplace_back("guest-set-time");
    if (!background.empty())
        out.push_back({{"afterwards, in the background", std::move(background)}});
    return out;
}

} // namespace qmpkit::snapshot::detail
