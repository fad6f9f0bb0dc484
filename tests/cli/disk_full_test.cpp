// A full disk, as users meet it: the VM's images, its overlays and its state directory live on a
// small file system of their own (a tmpfs), which fills up during an external overlay, a memory
// save, a reset point, a metadata write, and while the guest writes to its disk. Each ends with
// an error that names the full file system and leaves nothing half-made: the snapshots taken
// before still revert, the metadata is as before, and the guest runs on (or, for its own writes,
// waits paused on the I/O error and continues once there is room).
//
// The internal snapshot's own disk-full case is in cli_fault_injection_test.

#include "bare_qemu.hpp"
#include "cli_runner.hpp"
#include "tiny_guest.hpp"

#include <boost/json.hpp>
#include <gtest/gtest.h>

#include <fcntl.h>
#include <fstream>
#include <set>
#include <sys/mount.h>
#include <sys/statvfs.h>
#include <thread>
#include <unistd.h>

namespace {

using namespace qmpkit;
using namespace std::chrono_literals;
namespace fs = std::filesystem;
namespace json = boost::json;

constexpr const char* vm = "full";

std::string read_bytes(const fs::path& file) {
    std::ifstream in(file, std::ios::binary);
    return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

class disk_full_test : public ::testing::Test {
protected:
    static void SetUpTestSuite() {
        if (!test::qemu_available())
            return;
        scratch_ = new test::scratch_dir();
        disk_ = scratch_->path() / "disk";
        fs::create_directories(disk_);
        mounted_ = ::mount("tmpfs", disk_.c_str(), "tmpfs", 0, "size=256m,mode=0755") == 0;
        if (!mounted_)
            return;
        run_ = new test::cli_runner(disk_ / "state");
        const auto def =
            test::write_tiny_guest(vm, disk_, {{"system", "64M"}}, "reset: {strategy: template}\n");
        auto r = (*run_)({"start", def.string(), "--wait-ready"});
        ASSERT_EQ(r.code, 0) << r.out << r.err;
        run_->guest(vm, "echo ok > /mnt/f; sync");
        boot_ = run_->boot_id(vm);
        r = (*run_)({"snapshot", "create", vm, "ok"});
        ASSERT_EQ(r.code, 0) << r.err;
    }

    static void TearDownTestSuite() {
        if (run_) {
            (*run_)({"destroy", vm});
            delete run_;
            run_ = nullptr;
        }
        if (mounted_)
            ::umount2(disk_.c_str(), MNT_DETACH);
        delete scratch_;
        scratch_ = nullptr;
    }

    void SetUp() override {
        if (!test::qemu_available())
            GTEST_SKIP() << "qemu-system-x86_64 is not installed (scripts/setup installs it)";
        if (!mounted_)
            GTEST_SKIP() << "cannot mount a tmpfs here (not root?): no file system to fill";
        ASSERT_NE(run_, nullptr);
        metadata_before_ = read_bytes(metadata_file());
        files_before_ = files();
    }

    void TearDown() override {
        std::error_code ignored;
        fs::remove(filler(), ignored);
    }

    static fs::path state() { return disk_ / "state" / vm; }
    static fs::path metadata_file() { return state() / "snapshots.json"; }
    static fs::path filler() { return scratch_->path() / "disk" / "filler"; }
    static test::cli_result qmpkit(std::vector<std::string> args) {
        return (*run_)(std::move(args));
    }

    // Takes all the free space of the file system but `left` bytes.
    static void fill_leaving(std::uint64_t left) {
        struct statvfs info {};
        ASSERT_EQ(::statvfs(disk_.c_str(), &info), 0);
        const auto free_bytes = static_cast<std::uint64_t>(info.f_bavail) * info.f_frsize;
        ASSERT_GT(free_bytes, left);
        const int fd = ::open(filler().c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
        ASSERT_GE(fd, 0);
        ASSERT_EQ(::posix_fallocate(fd, 0, static_cast<off_t>(free_bytes - left)), 0);
        ::close(fd);
    }

    // Every file on the file system but the filler and the VM's runtime logs, which grow (an empty
    // directory an operation made is no half-made file).
    static std::set<std::string> files() {
        std::set<std::string> names;
        for (auto it = fs::recursive_directory_iterator(disk_);
             it != fs::recursive_directory_iterator(); ++it) {
            const auto name = it->path().filename().string();
            if (it->path() == filler() || name.ends_with(".log") || name == "exit.json" ||
                it->is_directory())
                continue;
            names.insert(fs::relative(it->path(), disk_).string());
        }
        return names;
    }

    static std::pair<std::string, bool> run_state() {
        auto r = qmpkit({"qmp", vm, "query-status", "--compact"});
        EXPECT_EQ(r.code, 0) << r.err;
        if (r.code != 0)
            return {};
        auto o = json::parse(r.out).as_object();
        return {std::string(o.at("status").as_string()), o.at("running").as_bool()};
    }

    // A failure that names the full file system and changed nothing: the same files (no half
    // overlay, memory file or reset point), the same metadata, the guest running.
    void expect_failed_cleanly(const test::cli_result& r) {
        std::cerr << "  " << r.err;
        EXPECT_EQ(r.code, 1) << r.out << r.err;
        EXPECT_NE(r.err.find("file system mounted at " + disk_.string()), std::string::npos)
            << r.err;
        EXPECT_NE(r.err.find("it is full"), std::string::npos) << r.err;
        EXPECT_EQ(read_bytes(metadata_file()), metadata_before_);
        EXPECT_EQ(files(), files_before_);
        EXPECT_EQ(run_state(), std::make_pair(std::string("running"), true));
        EXPECT_FALSE(fs::exists(state() / "snapshot-op.json")) << "the journal is left";
        EXPECT_EQ(qmpkit({"snapshot", "check", vm}).code, 0);
    }

    static inline test::scratch_dir* scratch_ = nullptr;
    static inline test::cli_runner* run_ = nullptr;
    static inline fs::path disk_;
    static inline bool mounted_ = false;
    static inline std::string boot_;
    std::string metadata_before_;
    std::set<std::string> files_before_;
};

TEST_F(disk_full_test, external_overlay) {
    fill_leaving(64 << 10); // room for the journal, not for the overlay's qcow2 metadata
    expect_failed_cleanly(qmpkit({"snapshot", "create", vm, "e1", "--disk-only"}));
}

TEST_F(disk_full_test, memory_save) {
    fill_leaving(1 << 20);
    expect_failed_cleanly(
        qmpkit({"snapshot", "create", vm, "m1", "--memspec", (disk_ / "m1.state").string()}));
}

TEST_F(disk_full_test, reset_point) {
    fill_leaving(1 << 20); // the device state fits, the copy of the RAM does not
    expect_failed_cleanly(qmpkit({"reset-point", "create", vm, "rp"}));
}

TEST_F(disk_full_test, metadata_write) {
    fill_leaving(0);
    const auto r = qmpkit({"snapshot", "create", vm, "s1", "--disk-only"});
    expect_failed_cleanly(r);
    EXPECT_NE(r.err.find("Nothing was changed"), std::string::npos) << r.err;
}

// The guest fills the disk itself: qemu pauses it on the write error (werror=enospc), status
// says why, and it continues where it stopped once there is room and it is resumed.
TEST_F(disk_full_test, guest_write_pauses_and_resumes) {
    fill_leaving(2 << 20);
    // In the background of the guest: the command channel must answer while the write waits.
    run_->guest(vm, "(dd if=/dev/urandom of=/mnt/big bs=1M count=8 2>/dev/null; sync; "
                    "echo done > /mnt/done) >/dev/null 2>&1 &");
    json::object status;
    for (int i = 0; i < 300; ++i) {
        auto r = qmpkit({"--json", "status", vm});
        ASSERT_EQ(r.code, 0) << r.err;
        status = json::parse(r.out).as_object();
        if (status.at("run_state").as_string() == "io-error")
            break;
        std::this_thread::sleep_for(100ms);
    }
    ASSERT_EQ(status.at("run_state").as_string(), "io-error") << json::serialize(status);
    EXPECT_EQ(status.at("state").as_string(), "paused");
    EXPECT_NE(std::string(status.at("reason").as_string()).find("no space left"), std::string::npos)
        << status.at("reason");
    auto text = qmpkit({"status", vm});
    EXPECT_NE(text.out.find("I/O error on disk 'system'"), std::string::npos) << text.out;

    fs::remove(filler());
    auto r = qmpkit({"qmp", vm, "cont"});
    ASSERT_EQ(r.code, 0) << r.err;
    bool done = false;
    for (int i = 0; i < 200 && !done; ++i) {
        done = qmpkit({"shell", vm, "--", "cat /mnt/done"}).out == "done\n";
        if (!done)
            std::this_thread::sleep_for(100ms);
    }
    EXPECT_TRUE(done) << "the guest's write never finished after the resume";
    EXPECT_EQ(run_->guest(vm, "stat -c %s /mnt/big"), "8388608\n");
    EXPECT_EQ(run_state(), std::make_pair(std::string("running"), true));
    run_->guest(vm, "rm -f /mnt/big /mnt/done; sync");
}

// After all of the above, the snapshot taken first still reverts: the file and the guest's RAM
// (its boot id) are back.
TEST_F(disk_full_test, earlier_snapshot_still_reverts) {
    run_->guest(vm, "echo later > /mnt/f; sync");
    auto r = qmpkit({"snapshot", "revert", vm, "ok"});
    ASSERT_EQ(r.code, 0) << r.err;
    EXPECT_EQ(run_->guest(vm, "cat /mnt/f"), "ok\n");
    EXPECT_EQ(run_->boot_id(vm), boot_);
}

} // namespace
