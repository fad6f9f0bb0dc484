// Two qmpkit processes on one VM at once: the second one either refuses, naming the VM and the
// process that holds it, or waits for the lock and then runs on what the first left behind,
// never in the middle of it.
//
// The first process is a real `snapshot create` caught while it holds the lock. An internal
// snapshot of the tiny guest takes well under a second, so the test freezes that process
// (SIGSTOP) once it holds the lock and thaws it when the second one has shown what it does: the
// window is then as long as the test needs on any machine, and the snapshot still completes.

#include "bare_qemu.hpp"
#include "cli_runner.hpp"
#include "tiny_guest.hpp"

#include <qmpkit/launcher/state_directory.hpp>

#include <boost/json.hpp>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <csignal>
#include <fstream>
#include <iostream>
#include <sstream>
#include <thread>

namespace {

using namespace qmpkit;
using namespace std::chrono_literals;
using ::testing::Contains;
using ::testing::HasSubstr;
using ::testing::Not;
namespace json = boost::json;
using clock_type = std::chrono::steady_clock;

const std::string vm = "locked";

// A command run in the background, with the moment it ended.
class background_command {
public:
    explicit background_command(const test::cli_runner& run, std::vector<std::string> args)
        : thread_([this, &run, args = std::move(args)] {
            result_ = run(args);
            ended_ = clock_type::now();
            done_ = true;
        }) {}
    ~background_command() {
        if (thread_.joinable())
            thread_.join();
    }
    bool done() const { return done_; }
    const test::cli_result& join() {
        thread_.join();
        return result_;
    }
    clock_type::time_point ended() const { return ended_; }

private:
    test::cli_result result_;
    clock_type::time_point ended_;
    std::atomic<bool> done_{false};
    std::thread thread_;
};

// The holder of the VM's lock, stopped until destroyed.
class frozen_holder {
public:
    explicit frozen_holder(pid_t pid)
        : pid_(pid) {
        ::kill(pid_, SIGSTOP);
    }
    ~frozen_holder() { thaw(); }
    void thaw() {
        if (pid_ > 0)
            ::kill(pid_, SIGCONT);
        pid_ = -1;
    }

private:
    pid_t pid_;
};

class lock_test : public ::testing::Test {
protected:
    static void SetUpTestSuite() {
        if (!test::qemu_available())
            return;
        scratch_ = new test::scratch_dir();
        run_ = new test::cli_runner(scratch_->path() / "state");
        auto def = test::write_tiny_guest(vm, scratch_->path());
        auto r = (*run_)({"start", def.string(), "--wait-ready"});
        ASSERT_EQ(r.code, 0) << r.out << r.err;
    }

    static void TearDownTestSuite() {
        if (run_) {
            (*run_)({"destroy", vm});
            delete run_;
            delete scratch_;
            run_ = nullptr;
            scratch_ = nullptr;
        }
    }

    void SetUp() override {
        if (!test::qemu_available())
            GTEST_SKIP() << "qemu-system-x86_64 is not installed (scripts/setup installs it)";
        ASSERT_NE(run_, nullptr);
    }

    static test::cli_result qmpkit(std::vector<std::string> args) {
        return (*run_)(std::move(args));
    }

    // What the holder wrote into the lock file ("pid N (purpose)"); empty while nobody holds it.
    static std::string holder_text() {
        std::ifstream in(launcher::state_directory(run_->state_root(), vm).lock_file());
        std::stringstream text;
        text << in.rdbuf();
        auto holder = text.str();
        if (holder.empty() || holder.back() != '\n')
            return {}; // nobody, or being written
        holder.pop_back();
        return holder;
    }

    // Starts `snapshot create VM name`, waits until it holds the lock and freezes it there.
    // Returns the holder text ("pid N (creating a snapshot)").
    static std::string start_and_freeze_snapshot(const std::string& name,
                                                 std::unique_ptr<background_command>& first,
                                                 std::unique_ptr<frozen_holder>& frozen) {
        first = std::make_unique<background_command>(
            *run_, std::vector<std::string>{"snapshot", "create", vm, name});
        const auto deadline = clock_type::now() + 30s;
        std::string holder;
        while (clock_type::now() < deadline && !first->done()) {
            holder = holder_text();
            if (holder.find("creating a snapshot") != std::string::npos)
                break;
            std::this_thread::sleep_for(1ms);
        }
        if (holder.rfind("pid ", 0) != 0)
            return {};
        frozen = std::make_unique<frozen_holder>(std::stoi(holder.substr(4)));
        // Releasing clears the text before unlocking: if it is still there, the stopped process
        // still holds the lock.
        return holder_text() == holder ? holder : std::string();
    }

    static std::vector<std::string> snapshot_names() {
        auto r = qmpkit({"--json", "snapshot", "list", vm});
        EXPECT_EQ(r.code, 0) << r.err;
        const auto list = json::parse(r.out);
        std::vector<std::string> names;
        for (const auto& s : list.as_array())
            names.emplace_back(s.at("name").as_string());
        return names;
    }

    static std::string parent_of(const std::string& name) {
        auto r = qmpkit({"snapshot", "parent", vm, name});
        return r.code == 0 ? r.out.substr(0, r.out.find('\n')) : std::string();
    }

    static inline test::scratch_dir* scratch_ = nullptr;
    static inline test::cli_runner* run_ = nullptr;
};

TEST_F(lock_test, a_second_command_refuses_at_once_naming_the_vm_and_the_holder) {
    std::unique_ptr<background_command> first;
    std::unique_ptr<frozen_holder> frozen;
    const auto holder = start_and_freeze_snapshot("held", first, frozen);
    ASSERT_FALSE(holder.empty()) << "the snapshot was never seen holding the lock";

    auto second = qmpkit({"--lock-timeout", "0", "snapshot", "create", vm, "intruder"});
    frozen->thaw();
    const auto& first_result = first->join();

    EXPECT_EQ(second.code, 1) << second.err;
    EXPECT_THAT(second.err, HasSubstr("VM 'locked' is busy: " + holder + " holds its lock"));
    EXPECT_THAT(second.err, HasSubstr("--lock-timeout"));
    EXPECT_EQ(second.err.find('\n'), second.err.size() - 1) << "one line is enough";
    std::cout << "refused with: " << second.err;

    ASSERT_EQ(first_result.code, 0) << first_result.err;
    const auto names = snapshot_names();
    EXPECT_THAT(names, Contains("held"));
    EXPECT_THAT(names, Not(Contains("intruder")));
}

TEST_F(lock_test, an_impatient_shutdown_gives_up_after_its_timeout_and_the_vm_keeps_running) {
    std::unique_ptr<background_command> first;
    std::unique_ptr<frozen_holder> frozen;
    const auto holder = start_and_freeze_snapshot("held-again", first, frozen);
    ASSERT_FALSE(holder.empty()) << "the snapshot was never seen holding the lock";

    auto second = qmpkit({"--lock-timeout", "0.5", "shutdown", vm});
    frozen->thaw();
    const auto& first_result = first->join();

    EXPECT_EQ(second.code, 1) << second.err;
    EXPECT_THAT(second.err, HasSubstr("VM 'locked' is busy after waiting 0.5 s: " + holder +
                                      " holds its lock"));
    EXPECT_THAT(second.err, HasSubstr("raise --lock-timeout"));
    ASSERT_EQ(first_result.code, 0) << first_result.err;
    auto status = qmpkit({"--json", "status", vm});
    ASSERT_EQ(status.code, 0) << status.err;
    EXPECT_EQ(json::parse(status.out).at("state").as_string(), "running") << status.out;
}

TEST_F(lock_test, a_patient_snapshot_waits_and_builds_on_the_first) {
    std::unique_ptr<background_command> first;
    std::unique_ptr<frozen_holder> frozen;
    const auto holder = start_and_freeze_snapshot("first", first, frozen);
    ASSERT_FALSE(holder.empty()) << "the snapshot was never seen holding the lock";

    background_command second(*run_, {"--lock-timeout", "120", "snapshot", "create", vm, "second"});
    // Whatever the second one does, it must not get anywhere while the first holds the VM.
    std::this_thread::sleep_for(1500ms);
    EXPECT_FALSE(second.done()) << "the second command did not wait for the first";
    EXPECT_EQ(holder_text(), holder);
    frozen->thaw();
    const auto& first_result = first->join();
    const auto& second_result = second.join();

    ASSERT_EQ(first_result.code, 0) << first_result.err;
    ASSERT_EQ(second_result.code, 0) << second_result.err;
    EXPECT_GT(second.ended(), first->ended());
    // The second saw the first one's finished tree: it is the first one's child.
    EXPECT_EQ(parent_of("second"), "first");
    auto check = qmpkit({"snapshot", "check", vm});
    EXPECT_EQ(check.code, 0) << check.out << check.err;
}

TEST_F(lock_test, a_patient_reset_waits_for_the_snapshot_it_needs) {
    // The reset can only succeed after the snapshot is complete: before it there is no snapshot
    // of that name, and in the middle of it the image and the metadata disagree.
    std::unique_ptr<background_command> first;
    std::unique_ptr<frozen_holder> frozen;
    const auto holder = start_and_freeze_snapshot("target", first, frozen);
    ASSERT_FALSE(holder.empty()) << "the snapshot was never seen holding the lock";

    background_command reset(*run_, {"--json", "--lock-timeout", "120", "reset", vm, "target"});
    std::this_thread::sleep_for(1s);
    EXPECT_FALSE(reset.done()) << "the reset did not wait for the snapshot";
    frozen->thaw();
    const auto& first_result = first->join();
    const auto& reset_result = reset.join();

    ASSERT_EQ(first_result.code, 0) << first_result.err;
    ASSERT_EQ(reset_result.code, 0) << reset_result.err;
    EXPECT_THAT(reset_result.out, HasSubstr("target"));
    EXPECT_GT(reset.ended(), first->ended());
    EXPECT_EQ(run_->guest(vm, "echo up"), "up\n");
}

} // namespace
