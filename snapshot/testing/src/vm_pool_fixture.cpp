#include <qmpkit/launcher/definition_loader.hpp>
#include <qmpkit/launcher/launch.hpp>
#include <qmpkit/launcher/supervisor.hpp>
#include <qmpkit/launcher/vm_control.hpp>
#include <qmpkit/snapshot/snapshot_manager.hpp>
#include <qmpkit/snapshot/vm_pool.hpp>
#include <qmpkit/snapshot/vm_reset.hpp>
#include <qmpkit/testing/vm_pool_fixture.hpp>

#include <algorithm>
#include <fstream>
#include <iostream>
#include <stdexcept>

namespace qmpkit::testing {
namespace {

namespace fs = std::filesystem;

pool_environment* current_environment = nullptr;

fs::path state_root_of(const snapshot::manager_options& o) {
    return o.state_root.empty() ? launcher::default_state_root() : o.state_root;
}

// "<Suite>.<Test>", with what a parameterised name adds made safe for a directory name.
std::string test_directory_name() {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    std::string name = std::string(info->test_suite_name()) + "." + info->name();
    std::replace(name.begin(), name.end(), '/', '_');
    return name;
}

} // namespace

pool_environment::pool_environment(pool_environment_options options)
    : options_(std::move(options)) {
    current_environment = this;
}

pool_environment& pool_environment::current() {
    if (!current_environment)
        throw std::logic_error("qmpkit::testing::vm_test needs a pool_environment: "
                               "::testing::AddGlobalTestEnvironment(new pool_environment(...))");
    return *current_environment;
}

snapshot::vm_pool& pool_environment::pool() {
    if (!pool_)
        throw std::logic_error("the pool environment did not set up (see the first failure)");
    return *pool_;
}

void pool_environment::SetUp() {
    auto definition = launcher::load_definition(options_.definition);
    vm_ = definition.name;
    const auto root = state_root_of(options_.options);
    const launcher::state_directory dir(root, vm_);
    // Since its reset point the VM writes to an overlay; the image the YAML names is frozen.
    definition = launcher::with_recorded_overlays(std::move(definition), dir);
    const auto pool_name = options_.pool.empty() ? vm_ + "-tests" : options_.pool;

    // A VM left running (keep) is reused with its point and pool.
    if (!launcher::is_running(dir)) {
        launcher::launch_options launch;
        launch.state_root = root;
        launcher::start_in_background(definition, launch, {});
        started_vm_ = true;
        if (!options_.ready_line.empty())
            launcher::wait_for_console_line(dir, options_.ready_line, options_.ready_timeout);
    }
    snapshot::vm_reset reset(vm_, options_.options);
    const auto points = reset.points();
    if (std::none_of(points.begin(), points.end(),
                     [&](const auto& p) { return p.name == options_.point; }))
        reset.create_point(options_.point);

    pool_.emplace(pool_name, options_.options);
    const auto existing = snapshot::vm_pool::list(options_.options);
    if (std::find(existing.begin(), existing.end(), pool_name) == existing.end()) {
        snapshot::pool_spec spec;
        spec.origin = vm_;
        spec.point = options_.point;
        spec.size = options_.size;
        pool_->create(spec);
        created_pool_ = true;
    }
}

void pool_environment::TearDown() {
    if (options_.keep)
        return;
    try {
        if (created_pool_ && pool_)
            pool_->destroy();
        const launcher::state_directory dir(state_root_of(options_.options), vm_);
        if (started_vm_ && launcher::is_running(dir))
            launcher::destroy_vm(dir);
    } catch (const std::exception& e) {
        ADD_FAILURE() << "cleaning up the test VMs: " << e.what();
    }
}

void vm_test::SetUp() {
    auto& environment = pool_environment::current();
    snapshot::lease_request request;
    request.wait = environment.options().lease_wait;
    request.holder = test_directory_name();
    lease_ = environment.pool().lease(request);
}

void vm_test::TearDown() {
    if (!lease_)
        return;
    auto& environment = pool_environment::current();
    try {
        if (HasFailure())
            keep_evidence();
        else
            environment.pool().release(lease_->vm, {lease_->id, false});
    } catch (const std::exception& e) {
        ADD_FAILURE() << "giving VM '" << lease_->vm << "' back: " << e.what();
    }
    lease_.reset();
}

launcher::guest_command_result vm_test::shell(const std::string& command,
                                              std::chrono::milliseconds timeout) const {
    if (!lease_ || !lease_->shell_socket)
        throw std::logic_error("the leased VM has no command channel (command_channel: true)");
    // Through the VM's state directory: the channel then waits for a clock setting after the
    // VM's last reset (the guest lock).
    const launcher::state_directory dir(lease_->state_dir.parent_path(), lease_->vm);
    launcher::guest_shell channel(dir, timeout);
    return channel.run(command, timeout);
}

// The VM leaves the pool as it failed, with a snapshot of that moment and its logs beside it.
void vm_test::keep_evidence() {
    auto& environment = pool_environment::current();
    const auto& options = environment.options();
    const auto dir = options.artifacts / test_directory_name();
    fs::create_directories(dir);
    std::string snapshot_note;
    try {
        snapshot::create_request request;
        request.name = "failed";
        request.description = "at the failure of " + test_directory_name();
        snapshot::snapshot_manager(lease_->vm, options.options).create(request);
        snapshot_note = "its snapshot 'failed' holds the moment the test failed";
    } catch (const std::exception& e) {
        snapshot_note = std::string("no snapshot could be taken: ") + e.what();
    }
    environment.pool().release(lease_->vm, {lease_->id, true});
    std::error_code ignored;
    const launcher::state_directory state(state_root_of(options.options), lease_->vm);
    for (const auto& log : {state.serial_log(), state.qemu_log()})
        if (fs::exists(log))
            fs::copy_file(log, dir / log.filename(), fs::copy_options::overwrite_existing, ignored);
    const auto env = "QMPKIT_STATE_DIR=" + state_root_of(options.options).string() + " ";
    std::ofstream readme(dir / "README.txt");
    readme << "Test " << test_directory_name() << " failed on VM " << lease_->vm
           << ", which was kept out of pool " << environment.pool().name() << " as it was;\n"
           << snapshot_note << ".\n\n"
           << "  " << env << "qmpkit snapshot revert " << lease_->vm
           << " failed   # back to the failure\n"
           << "  " << env << "qmpkit console " << lease_->vm << "\n"
           << "  " << env << "qmpkit destroy " << lease_->vm << " && " << env << "qmpkit remove "
           << lease_->vm << "   # when done\n";
    std::cerr << "qmpkit: VM " << lease_->vm << " kept for the failed test; see "
              << (dir / "README.txt").string() << "\n";
}

} // namespace qmpkit::testing
