#include "../device_state.hpp"
#include "../guest_clock.hpp"
#include "../guest_freeze.hpp"
#include "../interrupted_operation.hpp"
#include "../memory_state.hpp"
#include "../qmp_jobs.hpp"
#include "../reset_files.hpp"
#include "../share_mounts.hpp"
#include "plan_executor.hpp"

#include <qmpkit/launcher/internal/fault_point.hpp>
#include <qmpkit/launcher/qemu_img.hpp>

#include <spdlog/logger.h>

#include <future>

namespace qmpkit::snapshot::detail {

namespace {

// What the steps hold while the plan runs: a frozen guest, unmounted shares, the journal between
// its writing and its removal, the undos that still apply.
class plan_run {
public:
    explicit plan_run(vm_context& ctx)
        : ctx_(ctx) {}

    void run(const operation_plan& plan) {
        try {
            for (std::size_t i = 0; i < plan.size(); ++i) {
                if (plan[i].overlaps_next && i + 1 < plan.size()) {
                    auto alongside =
                        std::async(std::launch::async, [&] { perform(plan[i].action); });
                    try {
                        perform(plan[i + 1].action);
                    } catch (...) {
                        alongside.wait();
                        throw;
                    }
                    alongside.get();
                    done(plan[i]);
                    done(plan[++i]);
                    continue;
                }
                perform(plan[i].action);
                done(plan[i]);
            }
        } catch (...) {
            frozen_.reset();
            for (auto it = undos_.rbegin(); it != undos_.rend(); ++it) {
                try {
                    perform(**it);
                } catch (const std::exception& e) {
                    if (ctx_.options->logger)
                        ctx_.options->logger->warn("taking a step back failed: {}", e.what());
                }
            }
            if (journal_)
                resolve_after_failure(ctx_, *journal_);
            shares_.reset();
            throw;
        }
    }

private:
    void done(const plan_step& step) {
        if (step.settles)
            undos_.clear();
        else if (step.undo)
            undos_.push_back(&*step.undo);
    }

    qmp::client& qmp() {
        if (!ctx_.qmp)
            throw error(error_kind::not_running,
                        "VM '" + ctx_.dir.vm_name() + "' stopped while an operation ran");
        return *ctx_.qmp;
    }

    void perform(const plan_action& action) {
        std::visit([this](const auto& a) { act(a); }, action);
    }

    void act(const qmp_command& c) {
        try {
            qmp().execute(c.name, c.arguments);
        } catch (const qmp::error& e) {
            if (c.ignore_failure)
                return;
            if (c.on_failure.empty())
                throw;
            throw error(error_kind::other, c.on_failure + ": " + e.what());
        }
    }
    void act(const qmp_job& j) {
        job_options o;
        o.progress = [&](double f) { ctx_.report(j.progress, f); };
        o.on_status = [&](const std::string& status) {
            if (!j.fault_points.empty())
                launcher::fault_point(j.fault_points + status, ctx_.dir);
        };
        o.complete_when_ready = j.complete_when_ready;
        run_job(qmp(), j.command, j.arguments, std::string(j.arguments.at("job-id").as_string()),
                o);
    }
    void act(const hmp_command& h) {
        try {
            qmp().hmp(h.line);
        } catch (const qmp::error& e) {
            if (h.on_failure.empty())
                throw;
            throw error(error_kind::other, h.on_failure + ": " + e.what());
        }
    }
    void act(const memory_save& s) {
        detail::save_memory(
            qmp(), s.file,
            [&](double f) {
                if (!s.progress.empty())
                    ctx_.report(s.progress, f);
            },
            [&](std::string_view step) {
                launcher::fault_point(s.fault_points + "." + std::string(step), ctx_.dir);
            },
            ctx_.dir.path());
    }
    void act(const memory_load& l) { detail::load_memory(qmp(), l.file); }
    void act(const image_snapshot_change& s) {
        if (!s.progress.empty())
            ctx_.report(s.progress, 0);
        switch (s.what) {
        case image_snapshot_change::kind::create:
            img_.snapshot_create(s.image, s.tag, s.key);
            break;
        case image_snapshot_change::kind::apply:
            img_.snapshot_apply(s.image, s.tag, s.key);
            break;
        case image_snapshot_change::kind::remove:
            img_.snapshot_delete(s.image, s.tag, s.key);
            break;
        }
    }
    void act(const image_commit& c) { img_.commit(c.overlay, c.key); }
    void act(const image_rebase& r) {
        img_.rebase(r.image, r.backing, r.backing_format, r.key, r.unsafe);
    }
    void act(const create_overlay& c) {
        if (!c.progress.empty())
            ctx_.report(c.progress, 0);
        std::filesystem::create_directories(c.overlay.parent_path());
        img_.create(c.overlay, launcher::disk_format::qcow2, std::nullopt, c.backing,
                    c.backing_format, c.key);
    }
    void act(const remove_file& r) {
        std::error_code ignored;
        if (std::filesystem::remove(r.file, ignored) && ctx_.options->logger)
            ctx_.options->logger->debug("removed {}", r.file.string());
    }
    void act(const directories_make& d) {
        for (const auto& dir : d.dirs)
            std::filesystem::create_directories(dir);
    }
    void act(const file_copy& c) { detail::copy_sparse(c.from, c.to); }
    void act(const point_write& w) { detail::write_point(w.dir, w.point); }
    void act(const guest_freeze_step&) {
        frozen_.emplace(ctx_.dir, ctx_.def, ctx_.options->logger);
    }
    void act(const guest_thaw&) { frozen_.reset(); }
    void act(const shares_unmount& s) {
        shares_.emplace(ctx_.dir, ctx_.def, qmp(), s.guest_running, s.operation,
                        ctx_.options->logger);
    }
    void act(const shares_remount&) {
        if (shares_)
            shares_->remount();
    }
    void act(const shares_mount_declared&) {
        mount_declared_shares(ctx_.dir, ctx_.def, ctx_.options->logger);
    }
    void act(const stop_qemu&) {
        ctx_.connect_if_running(); // an operation that opened no session to qemu yet
        ctx_.stop_vm();
    }
    void act(const start_qemu& s) {
        ctx_.start_vm(s.definition, s.extra_args, s.paused, s.memory_template);
    }
    void act(const instance_overlays& i) { make_instance_overlays(i.point, i.files); }
    void act(const device_state_load& d) { load_device_state(qmp(), d.file); }
    void act(const overlays_tidy& t) {
        std::error_code ignored;
        for (const auto& file : superseded_overlays(ctx_.dir, t.before, ctx_.def))
            std::filesystem::remove(file, ignored);
        sweep_overlays(ctx_.dir);
    }
    void act(const guest_clock_set&) { set_guest_clock(ctx_.dir, ctx_.def, ctx_.options->logger); }
    void act(const set_run_state& s) { ctx_.set_run_state(s.wanted); }
    void act(const journal_write& w) {
        detail::write_journal(ctx_.dir, w.journal);
        journal_ = &w.journal;
    }
    void act(const journal_remove&) {
        detail::remove_journal(ctx_.dir);
        journal_ = nullptr;
        undos_.clear(); // the operation is complete: nothing is taken back any more
    }
    void act(const definition_write& w) {
        ctx_.def = w.definition;
        ctx_.save_definition();
    }
    void act(const metadata_write& w) {
        ctx_.tree = w.tree;
        ctx_.save_tree();
    }
    void act(const fault_point_step& f) { launcher::fault_point(f.name, ctx_.dir); }

    vm_context& ctx_;
    const launcher::qemu_img img_;
    std::optional<guest_freeze> frozen_;
    std::optional<shares_unmounted> shares_;
    const operation_journal* journal_ = nullptr;
    std::vector<const plan_action*> undos_;
};

} // namespace

void run_plan(vm_context& ctx, const operation_plan& plan) {
    plan_run(ctx).run(plan);
}

} // namespace qmpkit::snapshot::detail
