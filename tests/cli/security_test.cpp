// Security end to end, with a real qemu and the tiny guest: qemu under its seccomp sandbox and
// switched to an unprivileged user (-runas); a LUKS-encrypted data disk that boots, takes writes,
// snapshots and reverts (internal, and external disk-only with encrypted overlays); the
// passphrase in no argument list and no file qmpkit or qemu writes; user-given names that cannot
// leave the state directory.
//
// Two VMs: "sec" (run_as nobody when the tests run as root, encrypted data disk, internal
// snapshots) and "secx" (encrypted data disk, external snapshots: with run_as, qemu could not
// open overlays it did not create itself in a directory only root may enter).

#include "bare_qemu.hpp"
#include "cli_runner.hpp"
#include "tiny_guest.hpp"

#include <qmpkit/launcher/qemu_img.hpp>
#include <qmpkit/launcher/qemu_process.hpp>
#include <qmpkit/launcher/runtime_info.hpp>
#include <qmpkit/launcher/state_directory.hpp>

#include <gtest/gtest.h>

#include <algorithm>
#include <fstream>
#include <pwd.h>
#include <set>
#include <sstream>
#include <unistd.h>

namespace {

using namespace qmpkit;
using namespace std::chrono_literals;
namespace fs = std::filesystem;

const std::string passphrase = "qmpkit-sec-test-passphrase-8d2f";

std::string read_file(const fs::path& p) {
    std::ifstream in(p, std::ios::binary);
    return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

// "Key:\tvalue..." from /proc/PID/status.
std::string status_field(pid_t pid, const std::string& key) {
    std::ifstream in("/proc/" + std::to_string(pid) + "/status");
    for (std::string line; std::getline(in, line);)
        if (line.rfind(key + ":", 0) == 0)
            return line.substr(key.size() + 1);
    return "<none>";
}

// Every file below `dir`, relative, for noticing files that appear where they should not.
std::set<std::string> tree_of(const fs::path& dir) {
    std::set<std::string> names;
    std::error_code ec;
    for (auto it = fs::recursive_directory_iterator(dir, ec);
         it != fs::recursive_directory_iterator(); it.increment(ec))
        names.insert(fs::relative(it->path(), dir).string());
    return names;
}

class security_test : public ::testing::Test {
protected:
    static void SetUpTestSuite() {
        if (!test::qemu_available())
            return;
        scratch_ = new test::scratch_dir();
        run_ = new test::cli_runner(scratch_->path() / "state");
        key_ = scratch_->path() / "data.key";
        {
            std::ofstream out(key_, std::ios::binary);
            out << passphrase; // no newline: the whole file is the passphrase
        }
        fs::permissions(key_, fs::perms::owner_read | fs::perms::owner_write);
        run_as_ = ::geteuid() == 0 ? "nobody" : "";
        boot("sec", run_as_);
        boot("secx", "");
    }

    // The tiny guest with its system disk and an encrypted data disk made by `qmpkit disk create
    // --encrypt` (a short key derivation time keeps the many opens of a test fast).
    static void boot(const std::string& vm, const std::string& run_as) {
        const auto data = scratch_->path() / (vm + "-data.qcow2");
        auto r = qmpkit({"disk", "create", data.string(), "32M", "--encrypt", "--key-file",
                         key_.string(), "--iter-time", "10"});
        ASSERT_EQ(r.code, 0) << r.out << r.err;
        std::string extra = "  - {name: data, file: " + data.string() +
                            ", encryption: {format: luks, key_file: " + key_.string() + "}}\n";
        if (!run_as.empty())
            extra += "security: {run_as: " + run_as + "}\n";
        const auto def = test::write_tiny_guest(vm, scratch_->path(), {{"system"}}, extra);
        r = qmpkit({"start", def.string(), "--wait-ready"});
        ASSERT_EQ(r.code, 0) << r.out << r.err;
        ASSERT_TRUE(run_->wait_for_mount(vm, "/data/data")) << "the encrypted disk never mounted";
    }

    static void TearDownTestSuite() {
        if (run_) {
            (*run_)({"destroy", "sec"});
            (*run_)({"destroy", "secx"});
            delete run_;
            delete scratch_;
            run_ = nullptr;
            scratch_ = nullptr;
        }
    }

    void SetUp() override {
        if (!test::qemu_available())
            GTEST_SKIP() << "qemu-system-x86_64 is not installed (scripts/setup installs it)";
    }

    // Every command's output is kept: the passphrase must not be in it either.
    static test::cli_result qmpkit(std::vector<std::string> args) {
        auto r = (*run_)(std::move(args));
        outputs_ += r.out + r.err;
        return r;
    }
    static std::string guest(const std::string& vm, const std::string& command) {
        return run_->guest(vm, command);
    }
    static launcher::state_directory state(const std::string& vm) {
        return launcher::state_directory(scratch_->path() / "state", vm);
    }
    static pid_t qemu_pid(const std::string& vm) {
        auto runtime = launcher::read_runtime_info(state(vm));
        return runtime ? runtime->qemu_pid : -1;
    }

    static inline test::scratch_dir* scratch_ = nullptr;
    static inline test::cli_runner* run_ = nullptr;
    static inline fs::path key_;
    static inline std::string run_as_;
    static inline std::string outputs_;
};

TEST_F(security_test, qemu_runs_sandboxed_as_the_run_as_user) {
    const auto pid = qemu_pid("sec");
    ASSERT_GT(pid, 0);
    auto cmdline = launcher::process_command_line(pid);
    std::replace(cmdline.begin(), cmdline.end(), '\0', ' ');
    EXPECT_EQ(status_field(pid, "Seccomp"), "\t2") << "no seccomp filter";
    EXPECT_NE(cmdline.find("-sandbox on,obsolete=deny,elevateprivileges="), std::string::npos)
        << cmdline;
    if (run_as_.empty())
        GTEST_SKIP() << "not root: qemu cannot switch users, run_as is not tested";
    const passwd* nobody = ::getpwnam(run_as_.c_str());
    ASSERT_NE(nobody, nullptr);
    const auto uid = std::to_string(nobody->pw_uid), gid = std::to_string(nobody->pw_gid);
    EXPECT_EQ(status_field(pid, "Uid"), "\t" + uid + "\t" + uid + "\t" + uid + "\t" + uid);
    EXPECT_EQ(status_field(pid, "Gid"), "\t" + gid + "\t" + gid + "\t" + gid + "\t" + gid);
    EXPECT_NE(cmdline.find("-runas nobody"), std::string::npos) << cmdline;
    // The VM it runs works: QMP, the guest's channel, its files opened before the switch.
    EXPECT_EQ(guest("sec", "echo alive"), "alive\n");

    // The other VM keeps qmpkit's user, and the strictest filter.
    const auto other = qemu_pid("secx");
    EXPECT_EQ(status_field(other, "Uid").rfind("\t" + std::to_string(::geteuid()) + "\t", 0), 0u);
    auto other_cmdline = launcher::process_command_line(other);
    EXPECT_NE(other_cmdline.find("elevateprivileges=deny"), std::string::npos);
}

TEST_F(security_test, encrypted_disk_takes_writes_and_an_internal_snapshot_reverts) {
    const auto image = scratch_->path() / "sec-data.qcow2";
    EXPECT_TRUE(launcher::qemu_img().info(image).encrypted);
    const std::string marker = "plaintext-marker-5e7a0c";
    guest("sec", "echo " + marker + "-one > /data/data/f; sync");

    auto r = qmpkit({"snapshot", "create", "sec", "s1"});
    ASSERT_EQ(r.code, 0) << r.out << r.err;
    guest("sec", "echo " + marker + "-two > /data/data/f; sync");
    r = qmpkit({"snapshot", "revert", "sec", "s1"});
    ASSERT_EQ(r.code, 0) << r.out << r.err;
    EXPECT_EQ(guest("sec", "cat /data/data/f"), marker + "-one\n");

    // What the guest wrote is stored encrypted.
    EXPECT_EQ(read_file(image).find(marker), std::string::npos) << "plaintext in the image";
    r = qmpkit({"snapshot", "delete", "sec", "s1"});
    EXPECT_EQ(r.code, 0) << r.out << r.err;
}

TEST_F(security_test, external_snapshots_of_an_encrypted_disk_are_encrypted_and_revert) {
    const std::string marker = "overlay-marker-91b4";
    guest("secx", "echo " + marker + "-one > /data/data/f; sync");
    auto r = qmpkit({"-vv", "snapshot", "create", "secx", "e1", "--disk-only"});
    ASSERT_EQ(r.code, 0) << r.out << r.err;

    const auto overlay = scratch_->path() / "secx-data.e1.qcow2";
    ASSERT_TRUE(fs::exists(overlay));
    const launcher::qemu_img img;
    auto chain = img.info_chain(overlay);
    ASSERT_EQ(chain.size(), 2u);
    EXPECT_TRUE(chain[0].encrypted) << "the overlay would hold the guest's writes in clear";
    EXPECT_TRUE(chain[1].encrypted);

    guest("secx", "echo " + marker + "-two > /data/data/f; sync");
    EXPECT_EQ(read_file(overlay).find(marker), std::string::npos) << "plaintext in the overlay";

    // Reverting restarts qemu on a fresh encrypted overlay, its whole chain opened with the key.
    r = qmpkit({"snapshot", "revert", "secx", "e1", "--running"});
    ASSERT_EQ(r.code, 0) << r.out << r.err;
    ASSERT_TRUE(run_->wait_for_mount("secx", "/data/data"));
    EXPECT_EQ(guest("secx", "cat /data/data/f"), marker + "-one\n");

    // Deleting merges the overlay back (block-commit) through the encrypted nodes.
    guest("secx", "echo " + marker + "-three > /data/data/f; sync");
    r = qmpkit({"snapshot", "delete", "secx", "e1"});
    ASSERT_EQ(r.code, 0) << r.out << r.err;
    EXPECT_EQ(guest("secx", "cat /data/data/f"), marker + "-three\n");
    auto disks = qmpkit({"disks", "secx"});
    EXPECT_NE(disks.out.find((scratch_->path() / "secx-data.qcow2").string()), std::string::npos)
        << disks.out;
}

TEST_F(security_test, the_passphrase_is_in_no_argv_and_no_file_but_the_key) {
    for (const std::string vm : {"sec", "secx"}) {
        const auto pid = qemu_pid(vm);
        ASSERT_GT(pid, 0);
        const auto cmdline = launcher::process_command_line(pid);
        EXPECT_EQ(cmdline.find(passphrase), std::string::npos) << vm;
        EXPECT_NE(cmdline.find(key_.string()), std::string::npos) << "qemu reads the key file";
    }
    // State directories (qemu.log, supervisor.log, serial.log, runtime.json, the definition
    // copy, snapshots.json, ...), the definitions: nowhere but the key file.
    std::size_t scanned = 0;
    for (auto it = fs::recursive_directory_iterator(scratch_->path());
         it != fs::recursive_directory_iterator(); ++it) {
        // Images hold only what the guest wrote (and are checked for plaintext above).
        if (!it->is_regular_file() || it->path() == key_ || it->path().extension() == ".qcow2")
            continue;
        ++scanned;
        EXPECT_EQ(read_file(it->path()).find(passphrase), std::string::npos) << it->path();
    }
    EXPECT_GT(scanned, 10u);
    EXPECT_TRUE(fs::exists(state("sec").qemu_log()));
    EXPECT_EQ(outputs_.find(passphrase), std::string::npos) << "in qmpkit's output";
    EXPECT_NE(outputs_.find("key-secret"), std::string::npos) << "-vv showed no QMP traffic";
}

TEST_F(security_test, user_given_names_never_leave_the_state_directory) {
    const auto root = scratch_->path().parent_path();
    const auto outside_before = tree_of(scratch_->path());
    for (const std::string bad : {"../escape", "..", "a/../../escape", "/tmp/escape"}) {
        auto r = qmpkit({"status", bad});
        EXPECT_EQ(r.code, 2) << bad << r.err;
        r = qmpkit({"snapshot", "create", "sec", bad});
        EXPECT_NE(r.code, 0) << bad;
        r = qmpkit({"snapshot", "create", "secx", bad, "--disk-only"});
        EXPECT_NE(r.code, 0) << bad;
        r = qmpkit({"reset-point", "create", "sec", bad});
        EXPECT_NE(r.code, 0) << bad;
        r = qmpkit({"snapshot", "create", bad, "s"});
        EXPECT_NE(r.code, 0) << bad;
    }
    // A definition naming its VM with a path.
    const auto def = scratch_->path() / "escape.yaml";
    test::write_text(def, test::tiny_guest_yaml("../escape", scratch_->path(), {}));
    auto r = qmpkit({"start", def.string()});
    EXPECT_EQ(r.code, 2) << r.err;
    EXPECT_NE(r.err.find("invalid name '../escape'"), std::string::npos) << r.err;

    auto after = tree_of(scratch_->path());
    after.erase("escape.yaml");
    std::set<std::string> appeared;
    for (const auto& f : after)
        if (!outside_before.count(f))
            appeared.insert(f);
    // Only what a VM's own state directory holds may change (its logs, lock, records).
    for (const auto& f : appeared)
        EXPECT_TRUE(f.rfind("state/sec/", 0) == 0 || f.rfind("state/secx/", 0) == 0) << f;
    EXPECT_FALSE(fs::exists(scratch_->path() / "escape"));
    EXPECT_FALSE(fs::exists(root / "escape"));
    EXPECT_FALSE(fs::exists("/tmp/escape"));
}

} // namespace
