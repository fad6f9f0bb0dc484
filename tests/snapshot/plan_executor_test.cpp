// The executor of plans against a real state directory and qemu-img, without qemu: the order of
// steps, each step's undo when a later one fails, a settling step, and the end of a journal.

#include "plan/plan_executor.hpp"

#include <qmpkit/launcher/definition_loader.hpp>
#include <qmpkit/launcher/qemu_img.hpp>

#include <gtest/gtest.h>

#include <fstream>
#include <random>

namespace qmpkit::snapshot::detail {
namespace {

namespace fs = std::filesystem;

class plan_executor_test : public ::testing::Test {
protected:
    void SetUp() override {
        root_ =
            fs::temp_directory_path() / ("qmpkit-plan-" + std::to_string(std::random_device{}()));
        fs::create_directories(root_ / "vm");
        def_ = launcher::load_definition_from_string(
            "name: vm\nkernel: /boot/vmlinuz\nmemory: 128M\ndisks:\n  - name: system\n    file: " +
                (root_ / "base.qcow2").string() + "\n",
            root_ / "vm" / "definition.yaml");
        write_definition(def_);
        try {
            img_.create(root_ / "base.qcow2", launcher::disk_format::qcow2, 1 << 20);
        } catch (const std::exception& e) {
            GTEST_SKIP() << "qemu-img is not usable here: " << e.what();
        }
        options_.state_root = root_;
    }
    void TearDown() override {
        std::error_code ignored;
        fs::remove_all(root_, ignored);
    }

    void write_definition(const launcher::vm_definition& def) {
        std::ofstream(root_ / "vm" / "definition.yaml") << launcher::dump_definition(def);
    }
    std::uint64_t recorded_memory() const {
        return launcher::load_definition(root_ / "vm" / "definition.yaml").memory;
    }

    // Records a definition with more memory (undone by the old one), makes overlay A (undone by
    // removing it), then fails making B on a backing file that does not exist.
    operation_plan failing_plan(bool a_settles) {
        auto bigger = def_;
        bigger.memory = 256ull << 20;
        operation_plan plan;
        plan.push_back({definition_write{bigger}, definition_write{def_}});
        plan_step a{create_overlay{a_, root_ / "base.qcow2", launcher::disk_format::qcow2},
                    remove_file{a_}};
        a.settles = a_settles;
        plan.push_back(std::move(a));
        plan.push_back({create_overlay{root_ / "b.qcow2", root_ / "missing.qcow2",
                                       launcher::disk_format::qcow2}});
        return plan;
    }

    fs::path root_;
    fs::path a_ = fs::temp_directory_path() / "unset";
    launcher::vm_definition def_;
    manager_options options_;
    const launcher::qemu_img img_;
};

TEST_F(plan_executor_test, a_failure_takes_the_steps_before_it_back_last_first) {
    a_ = root_ / "a.qcow2";
    vm_context ctx("vm", options_, "testing");
    EXPECT_ANY_THROW(run_plan(ctx, failing_plan(false)));
    EXPECT_FALSE(fs::exists(a_)) << "overlay A was made by the plan and taken back";
    EXPECT_FALSE(fs::exists(root_ / "b.qcow2"));
    EXPECT_EQ(recorded_memory(), 128ull << 20) << "the definition was written back";
    EXPECT_EQ(ctx.def.memory, 128ull << 20);
}

TEST_F(plan_executor_test, nothing_before_a_settling_step_is_taken_back) {
    a_ = root_ / "a.qcow2";
    vm_context ctx("vm", options_, "testing");
    EXPECT_ANY_THROW(run_plan(ctx, failing_plan(true)));
    EXPECT_TRUE(fs::exists(a_));
    EXPECT_EQ(recorded_memory(), 256ull << 20);
}

TEST_F(plan_executor_test, a_completed_journal_ends_the_undos) {
    a_ = root_ / "a.qcow2";
    auto plan = failing_plan(false);
    operation_journal journal;
    journal.operation = "create-external";
    plan.insert(plan.begin(), {journal_write{journal}});
    plan.insert(plan.end() - 1, {journal_remove{}});
    vm_context ctx("vm", options_, "testing");
    EXPECT_ANY_THROW(run_plan(ctx, plan));
    EXPECT_TRUE(fs::exists(a_)) << "the operation was complete when its journal went";
    EXPECT_FALSE(fs::exists(root_ / "vm" / "snapshot-op.json"));
}

TEST_F(plan_executor_test, an_overlapping_step_runs_beside_the_next_and_both_end_first) {
    vm_context ctx("vm", options_, "testing");
    operation_plan plan;
    plan_step first{
        create_overlay{root_ / "x.qcow2", root_ / "base.qcow2", launcher::disk_format::qcow2}};
    first.overlaps_next = true;
    plan.push_back(std::move(first));
    plan.push_back(
        {create_overlay{root_ / "y.qcow2", root_ / "base.qcow2", launcher::disk_format::qcow2}});
    plan.push_back({remove_file{root_ / "x.qcow2"}});
    run_plan(ctx, plan);
    EXPECT_FALSE(fs::exists(root_ / "x.qcow2")) << "made before the step after the pair";
    EXPECT_TRUE(fs::exists(root_ / "y.qcow2"));
}

} // namespace
} // namespace qmpkit::snapshot::detail
