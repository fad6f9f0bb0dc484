// A GoogleTest suite with a clean VM per test, leased from a pool of warm clones
// (qmpkit::testing). Each test writes a marker into the guest's RAM and disk and expects none
// from the tests before it. With QMPKIT_EXAMPLE_FAIL=1 one more test fails on purpose: its VM
// is kept, with a snapshot "failed" and the logs in qmpkit-artifacts/ (or $QMPKIT_ARTIFACTS).
//
//   ./gtest_pool configs/tiny.yaml [gtest flags]     # state root: $QMPKIT_STATE_DIR

#include <qmpkit/testing/vm_pool_fixture.hpp>

#include <cstdlib>
#include <iostream>

namespace {

class guest : public qmpkit::testing::vm_test {
protected:
    // Exit code 0 when neither marker is there; then leaves both for the next holder to find.
    int check_and_mark() {
        return shell("test ! -e /run/marker && test ! -e /mnt/marker; s=$?; "
                     "echo x > /run/marker; echo x > /mnt/marker 2>/dev/null; sync; exit $s")
            .exit_code;
    }
};

TEST_F(guest, starts_clean) {
    EXPECT_EQ(check_and_mark(), 0) << "a marker of an earlier test is in " << vm().vm;
}

TEST_F(guest, starts_clean_again) {
    EXPECT_EQ(check_and_mark(), 0) << "a marker of an earlier test is in " << vm().vm;
}

TEST_F(guest, runs_commands) {
    const auto r = shell("echo $((6 * 7))");
    EXPECT_EQ(r.exit_code, 0);
    EXPECT_EQ(r.output, "42\n");
}

TEST_F(guest, fails_on_purpose_when_asked) {
    if (!std::getenv("QMPKIT_EXAMPLE_FAIL"))
        GTEST_SKIP() << "set QMPKIT_EXAMPLE_FAIL=1 to see a failure kept";
    shell("echo evidence > /run/evidence");
    FAIL() << "on purpose: VM " << vm().vm << " is kept with /run/evidence";
}

} // namespace

int main(int argc, char** argv) {
    ::testing::InitGoogleTest(&argc, argv);
    if (argc != 2) {
        std::cerr << "usage: gtest_pool VM.yaml [gtest flags]\n";
        return 2;
    }
    qmpkit::testing::pool_environment_options options;
    options.definition = argv[1];
    options.size = 2;
    if (const char* artifacts = std::getenv("QMPKIT_ARTIFACTS"))
        options.artifacts = artifacts;
    ::testing::AddGlobalTestEnvironment(new qmpkit::testing::pool_environment(options));
    return RUN_ALL_TESTS();
}
