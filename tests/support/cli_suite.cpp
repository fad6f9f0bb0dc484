#include "cli_suite.hpp"

#include <qmpkit/launcher/state_directory.hpp>

namespace qmpkit::test {

bool cli_suite::open_suite() {
    if (!qemu_available())
        return false;
    scratch_ = std::make_unique<scratch_dir>();
    run_ = std::make_unique<cli_runner>(scratch_->path() / "state");
    return true;
}

void cli_suite::close_suite() {
    if (run_) {
        for (const auto& vm : launcher::state_directory::list(run_->state_root()))
            (*run_)({"destroy", vm});
        // What a test that failed half-way left (standbys of a VM whose qemu it killed, RAM
        // files) must not outlive the suite.
        (*run_)({"gc"});
    }
    run_.reset();
    scratch_.reset();
}

void cli_suite::SetUp() {
    if (!qemu_available())
        GTEST_SKIP() << "qemu-system-x86_64 is not installed (scripts/setup installs it)";
}

cli_result cli_suite::qmpkit(std::vector<std::string> args) {
    return (*run_)(std::move(args));
}

} // namespace qmpkit::test
