#pragma once

// GoogleTest with a VM per test: a test environment that starts (or reuses) a VM, its reset
// point and a pool of warm clones once per run, and a fixture whose SetUp leases a clean clone
// and whose TearDown gives it back (reset in the background, so the next test starts at once).
// When a test fails, the fixture keeps the evidence: the VM leaves the pool as it is, with an
// internal snapshot "failed" of that moment, and its serial and qemu logs are copied to
// <artifacts>/<Suite>.<Test>/ with a README.txt of the commands that open that state again.
//
//     int main(int argc, char** argv) {
//         ::testing::InitGoogleTest(&argc, argv);
//         qmpkit::testing::pool_environment_options o;
//         o.definition = "configs/tiny.yaml";
//         ::testing::AddGlobalTestEnvironment(new qmpkit::testing::pool_environment(o));
//         return RUN_ALL_TESTS();
//     }
//
//     class guest : public qmpkit::testing::vm_test {};
//     TEST_F(guest, starts_clean) { EXPECT_EQ(shell("ls /tmp").output, ""); }
//
// The pool forks its background resets: run the tests without threads of their own while a
// test leases or releases (GoogleTest's own default).

#include <qmpkit/launcher/guest_shell.hpp>
#include <qmpkit/snapshot/vm_pool.hpp>

#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <optional>
#include <string>

namespace qmpkit::testing {

struct pool_environment_options {
    std::filesystem::path definition; // the VM's YAML
    // The VM's reset point: taken once the guest is ready, or reused when it exists.
    std::string point = "clean";
    std::string pool; // default: "<vm>-tests"
    int size = 2;     // VMs in the pool: as many as tests run at once
    // The console line that says the guest is up before the point is taken (the tiny guest's);
    // empty: QMP answering is enough.
    std::string ready_line = "QMPKIT-GUEST-READY";
    std::chrono::seconds ready_timeout{300};
    std::chrono::seconds lease_wait{120};
    std::filesystem::path artifacts = "qmpkit-artifacts"; // failed tests' evidence
    snapshot::manager_options options;                    // state root, logger, lock timeout
    // Leave the VM and the pool running after the run, for the next run to reuse.
    bool keep = false;
};

class pool_environment : public ::testing::Environment {
public:
    explicit pool_environment(pool_environment_options options);

    void SetUp() override;
    void TearDown() override;

    // The environment of this run (the last one constructed); vm_test leases from it.
    static pool_environment& current();

    snapshot::vm_pool& pool();
    const pool_environment_options& options() const noexcept { return options_; }
    const std::string& vm_name() const noexcept { return vm_; }

private:
    pool_environment_options options_;
    std::string vm_;
    std::optional<snapshot::vm_pool> pool_;
    bool started_vm_ = false;
    bool created_pool_ = false;
};

class vm_test : public ::testing::Test {
protected:
    void SetUp() override;
    void TearDown() override;

    // The leased VM: its name, sockets and lease.
    const snapshot::vm_lease& vm() const { return *lease_; }
    // A command in the guest, through the tiny guest's command channel.
    launcher::guest_command_result
    shell(const std::string& command,
          std::chrono::milliseconds timeout = std::chrono::seconds(30)) const;

private:
    void keep_evidence();
    std::optional<snapshot::vm_lease> lease_;
};

} // namespace qmpkit::testing
