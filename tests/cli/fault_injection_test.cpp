// Fault injection: qmpkit or qemu killed (SIGKILL) at each named step of the snapshot operations
// (launcher/internal/qmpkit/launcher/internal/fault_point.hpp), and a disk filling up during a
// save. After each fault:
//   - snapshots.json is byte for byte what it was before the operation, or what a successful
//     run of the same operation makes of it (creation times and random node names aside);
//   - `snapshot check --repair` leaves no problem, no journal, no temporary file and no overlay
//     or memory file that nothing records;
//   - `qemu-img check` finds no corruption in any image (leaked clusters are counted, allowed:
//     they waste space, lose nothing);
//   - the VM's other snapshots still revert: the guest's files and its RAM (boot id, counter)
//     come back.
//
// One VM (system + data disk) boots once. Between cases it is destroyed, its images and
// metadata are put back from copies taken after setup, and it is started straight into
// snapshot "base" (-loadvm): no boot. Its images live on a tmpfs of its own, which the
// disk-full case fills.

#include "bare_qemu.hpp"
#include "cli_runner.hpp"
#include "tiny_guest.hpp"

#include <qmpkit/launcher/definition_loader.hpp>
#include <qmpkit/launcher/qemu_img.hpp>
#include <qmpkit/launcher/standby.hpp>
#include <qmpkit/launcher/subprocess.hpp>

#include <boost/json.hpp>
#include <gtest/gtest.h>

#include <chrono>
#include <cstdlib>
#include <fcntl.h>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <sys/mount.h>
#include <sys/statvfs.h>
#include <thread>
#include <unistd.h>

namespace {

using namespace qmpkit;
namespace fs = std::filesystem;
namespace json = boost::json;

const std::string vm = "fault";

std::string read_bytes(const fs::path& p) {
    std::ifstream in(p, std::ios::binary);
    std::ostringstream s;
    s << in.rdbuf();
    return s.str();
}

// The metadata with what differs between two runs of the same operation blanked: creation
// times and the random node names of new overlays.
std::string normalized(const std::string& metadata) {
    if (metadata.empty())
        return {};
    auto doc = json::parse(metadata);
    for (auto& s : doc.as_object()["snapshots"].as_array()) {
        s.as_object()["created_at"] = 0;
        for (auto& d : s.as_object()["disks"].as_array())
            if (d.as_object()["mode"] == "external")
                d.as_object()["node_name"] = "";
    }
    doc.as_object()["written_by"] = "";
    return json::serialize(doc);
}

struct image_check {
    std::uint64_t corruptions = 0, errors = 0, leaks = 0;
    std::string text;
};

// -U: qemu may still hold the image (paused, its caches flushed).
image_check check_image(const fs::path& image) {
    launcher::subprocess_options o;
    o.timeout = std::chrono::seconds(60);
    auto r = launcher::run({"qemu-img", "check", "-U", "--output=json", image.string()}, o);
    image_check c;
    c.text = r.out + r.err;
    boost::system::error_code ec;
    auto doc = json::parse(r.out, ec);
    if (ec || !doc.is_object()) {
        c.errors = 1;
        return c;
    }
    auto get = [&](const char* k) -> std::uint64_t {
        const auto* v = doc.as_object().if_contains(k);
        return v ? v->to_number<std::uint64_t>() : 0;
    };
    c.corruptions = get("corruptions");
    c.errors = get("check-errors");
    c.leaks = get("leaks");
    return c;
}

struct fault_case {
    std::string step;
    std::string op; // save | revert | external | memory | commit
    bool kill_qemu = false;
};

std::string case_name(const ::testing::TestParamInfo<fault_case>& info) {
    std::string n = info.param.step + (info.param.kill_qemu ? "_qemu_killed" : "_qmpkit_killed");
    for (auto& c : n)
        if (!std::isalnum(static_cast<unsigned char>(c)))
            c = '_';
    return n;
}

class fault_injection : public ::testing::Test {
protected:
    static void SetUpTestSuite() {
        if (!test::qemu_available())
            return;
        scratch_ = new test::scratch_dir();
        images_ = scratch_->path() / "img";
        pristine_ = scratch_->path() / "pristine";
        fs::create_directories(images_);
        fs::create_directories(pristine_);
        // A file system of the VM's own, so that the disk-full case can fill it.
        on_tmpfs_ = ::mount("tmpfs", images_.c_str(), "tmpfs", 0, "size=512m,mode=0755") == 0;
        run_ = new test::cli_runner(scratch_->path() / "state");
        const auto def = test::write_tiny_guest(vm, images_, {{"system"}, {"data", "32M"}});
        auto r = (*run_)({"start", def.string(), "--wait-ready"});
        ASSERT_EQ(r.code, 0) << r.out << r.err;
        ASSERT_TRUE(run_->wait_for_mount(vm, "/data/data")) << "never mounted";

        run_->guest(vm, "echo keep > /mnt/f; echo keep > /data/data/f; sync");
        boot_ = run_->boot_id(vm);
        counter_keep_ = run_->counter(vm);
        ASSERT_EQ((*run_)({"snapshot", "create", vm, "keep"}).code, 0);
        run_->guest(vm, "echo base > /mnt/f; echo base > /data/data/f; sync");
        ASSERT_EQ((*run_)({"snapshot", "create", vm, "base"}).code, 0);
        // qemu flushes everything when the VM stops: the copies are consistent.
        ASSERT_EQ((*run_)({"qmp", vm, "stop"}).code, 0);
        ASSERT_EQ((*run_)({"destroy", vm}).code, 0);
        for (const auto& e : fs::directory_iterator(images_))
            fs::copy_file(e.path(), pristine_ / e.path().filename());
        fs::copy_file(state() / "snapshots.json", pristine_ / "snapshots.json.state");
        fs::copy_file(state() / "definition.yaml", pristine_ / "definition.yaml.state");
    }

    static void TearDownTestSuite() {
        if (!run_)
            return;
        (*run_)({"destroy", vm});
        if (on_tmpfs_)
            ::umount2(images_.c_str(), MNT_DETACH);
        delete run_;
        delete scratch_;
        run_ = nullptr;
        scratch_ = nullptr;
    }

    void SetUp() override {
        if (!test::qemu_available())
            GTEST_SKIP() << "qemu-system-x86_64 is not installed (scripts/setup installs it)";
        ASSERT_NE(run_, nullptr);
    }

    static fs::path state() { return run_->state_root() / vm; }
    static fs::path metadata_file() { return state() / "snapshots.json"; }
    static test::cli_result qmpkit(std::vector<std::string> args) {
        return (*run_)(std::move(args));
    }

    static bool qemu_running() {
        auto r = qmpkit({"--json", "status", vm});
        if (r.code != 0)
            return false;
        const auto s = json::parse(r.out).at("state").as_string();
        return s == "running" || s == "paused";
    }

    // Back to the state after setup, the VM running in snapshot "base".
    static void reset_vm() {
        qmpkit({"destroy", vm});
        for (const auto& e : fs::directory_iterator(images_))
            if (!fs::exists(pristine_ / e.path().filename()))
                fs::remove(e.path());
        for (const auto& e : fs::directory_iterator(pristine_)) {
            const auto name = e.path().filename().string();
            if (name.ends_with(".state"))
                continue;
            fs::copy_file(e.path(), images_ / name, fs::copy_options::overwrite_existing);
        }
        fs::copy_file(pristine_ / "snapshots.json.state", metadata_file(),
                      fs::copy_options::overwrite_existing);
        fs::copy_file(pristine_ / "definition.yaml.state", state() / "definition.yaml",
                      fs::copy_options::overwrite_existing);
        // Reset points and the overlays they made live in the state directory.
        fs::remove_all(state() / "reset");
        fs::remove_all(state() / "overlays");
        auto r = qmpkit({"snapshot", "revert", vm, "base"});
        ASSERT_EQ(r.code, 0) << r.out << r.err;
    }

    static std::vector<std::string> command_for(const std::string& op) {
        if (op == "save")
            return {"snapshot", "create", vm, "new"};
        if (op == "revert")
            return {"snapshot", "revert", vm, "keep"};
        if (op == "external")
            return {"snapshot", "create", vm, "ext", "--disk-only"};
        if (op == "memory")
            return {"snapshot", "create", vm, "mem", "--memspec", (images_ / "mem.state").string()};
        return {"snapshot", "delete", vm, "ext"};
    }

    static void prepare(const std::string& op) {
        reset_vm();
        if (op == "commit") {
            auto r = qmpkit(command_for("external"));
            ASSERT_EQ(r.code, 0) << r.err;
        }
    }

    // snapshots.json after a successful run of `op`, normalized; one run per operation.
    static std::string reference_after(const std::string& op) {
        auto it = reference_.find(op);
        if (it != reference_.end())
            return it->second;
        prepare(op);
        auto r = qmpkit(command_for(op));
        EXPECT_EQ(r.code, 0) << r.err;
        return reference_[op] = normalized(read_bytes(metadata_file()));
    }

    // Every file in the image directory and the state directory is one setup made, one the
    // metadata or the definition names, or one of the VM's runtime files.
    static void expect_no_stray_files() {
        std::set<fs::path> wanted;
        const auto text = read_bytes(metadata_file());
        if (!text.empty()) {
            const auto doc = json::parse(text);
            for (const auto& s : doc.at("snapshots").as_array()) {
                if (const auto* m = s.as_object().if_contains("memory_file"); m && m->is_string())
                    wanted.insert(fs::path(std::string(m->as_string())));
                for (const auto& d : s.at("disks").as_array())
                    for (const char* k : {"image", "overlay"})
                        if (const auto* f = d.as_object().if_contains(k); f && f->is_string())
                            wanted.insert(fs::path(std::string(f->as_string())));
            }
        }
        for (const auto& d : launcher::load_definition(state() / "definition.yaml").disks)
            wanted.insert(d.file);
        for (const auto& e : fs::directory_iterator(images_)) {
            const auto name = e.path().filename();
            EXPECT_TRUE(fs::exists(pristine_ / name) || wanted.contains(e.path()))
                << "stray file in the image directory: " << e.path();
        }
        // A supervisor whose qemu was killed may be writing its exit record right now: its
        // temporary file is on its way, a left one stays.
        auto writing = [] {
            for (const auto& e : fs::directory_iterator(state()))
                if (e.path().filename().string().starts_with("."))
                    return true;
            return false;
        };
        for (int i = 0; i < 100 && writing(); ++i)
            std::this_thread::sleep_for(std::chrono::milliseconds(100));
        for (const auto& e : fs::directory_iterator(state())) {
            const auto name = e.path().filename().string();
            EXPECT_FALSE(name.starts_with(".")) << "temporary file left: " << e.path();
            EXPECT_NE(name, "snapshot-op.json") << "the operation's journal is still there";
            EXPECT_FALSE(name.ends_with(".qcow2")) << "overlay in the state directory: " << name;
        }
    }

    // qemu-img check of every image, with qemu (if any) paused so that its caches are on disk.
    static void expect_clean_images() {
        if (qemu_running())
            qmpkit({"qmp", vm, "stop"});
        for (const auto& e : fs::directory_iterator(images_)) {
            if (e.path().extension() != ".qcow2")
                continue;
            const auto c = check_image(e.path());
            EXPECT_EQ(c.corruptions, 0u) << e.path() << ": " << c.text;
            EXPECT_EQ(c.errors, 0u) << e.path() << ": " << c.text;
            if (c.leaks > 0)
                std::cerr << "  (" << e.path().filename().string() << ": " << c.leaks
                          << " leaked clusters)\n";
        }
    }

    // The snapshots setup made still revert: files, RAM counter and boot id come back.
    static void expect_other_snapshots_revert() {
        // An internal snapshot in an image that an external snapshot froze cannot be loaded
        // without changing what the external one holds: qmpkit refuses that revert (see
        // cli_revert_test). The external snapshot the operation made is merged away first,
        // which also proves it can be.
        const auto text = read_bytes(metadata_file());
        if (!text.empty()) {
            const auto doc = json::parse(text);
            for (const auto& s : doc.at("snapshots").as_array()) {
                if (s.at("location").as_string() != "external")
                    continue;
                const std::string name(s.at("name").as_string());
                auto refused = qmpkit({"snapshot", "revert", vm, "keep", "--running"});
                EXPECT_EQ(refused.code, 1) << refused.out << refused.err;
                EXPECT_NE(refused.err.find("external snapshot '" + name + "' froze it"),
                          std::string::npos)
                    << refused.err;
                auto r = qmpkit({"snapshot", "delete", vm, name});
                ASSERT_EQ(r.code, 0) << "delete " << name << ": " << r.out << r.err;
            }
        }
        for (const std::string name : {"keep", "base"}) {
            auto r = qmpkit({"snapshot", "revert", vm, name, "--running"});
            ASSERT_EQ(r.code, 0) << "revert " << name << ": " << r.out << r.err;
            EXPECT_EQ(run_->guest(vm, "cat /mnt/f /data/data/f"), name + "\n" + name + "\n");
            EXPECT_EQ(run_->boot_id(vm), boot_) << "a revert with memory is not a reboot";
            if (name == "keep") {
                EXPECT_GE(run_->counter(vm), counter_keep_);
            }
        }
    }

    static inline test::scratch_dir* scratch_ = nullptr;
    static inline test::cli_runner* run_ = nullptr;
    static inline fs::path images_, pristine_;
    static inline bool on_tmpfs_ = false;
    static inline std::string boot_;
    static inline long counter_keep_ = 0;
    static inline std::map<std::string, std::string> reference_;
};

class fault_point_test : public fault_injection,
                         public ::testing::WithParamInterface<fault_case> {};

TEST_P(fault_point_test, leaves_metadata_and_images_consistent) {
    const auto& c = GetParam();
    const auto after = reference_after(c.op);
    prepare(c.op);
    const auto before = read_bytes(metadata_file());
    ASSERT_NE(normalized(before), after) << "the operation must change the metadata";

    const auto spec = c.step + (c.kill_qemu ? ":qemu" : "");
    ::setenv("QMPKIT_FAULT_AT", spec.c_str(), 1);
    auto r = qmpkit(command_for(c.op));
    ::unsetenv("QMPKIT_FAULT_AT");
    ASSERT_NE(r.err.find("fault injection: " + c.step), std::string::npos)
        << "the fault point was never reached: " << r.out << r.err;
    if (c.kill_qemu) {
        EXPECT_FALSE(qemu_running()) << "qemu survived";
    } else {
        EXPECT_EQ(r.code, 128 + SIGKILL) << r.out << r.err;
    }

    // Before any repair: the old metadata or the new, nothing in between.
    const auto now = read_bytes(metadata_file());
    const bool kept = now == before;
    EXPECT_TRUE(kept || normalized(now) == after) << "snapshots.json is neither before nor after:\n"
                                                  << now;
    std::cerr << "  " << spec << ": exit " << r.code << ", metadata "
              << (kept ? "as before" : "as after") << "\n";

    auto check = qmpkit({"snapshot", "check", vm});
    auto repair = qmpkit({"snapshot", "check", vm, "--repair"});
    EXPECT_EQ(repair.code, 0) << "check said:\n"
                              << check.out << check.err << "repair said:\n"
                              << repair.out << repair.err;
    if (!repair.out.empty() && repair.out.find("repaired:") != std::string::npos)
        std::cerr << "  " << repair.out;
    const auto repaired = read_bytes(metadata_file());
    EXPECT_TRUE(repaired == before || normalized(repaired) == after)
        << "after repair snapshots.json is neither before nor after:\n"
        << repaired;
    EXPECT_EQ(qmpkit({"snapshot", "check", vm}).code, 0) << qmpkit({"snapshot", "check", vm}).out;
    expect_no_stray_files();
    expect_clean_images();
    expect_other_snapshots_revert();
}

std::vector<fault_case> all_cases() {
    const std::vector<std::pair<std::string, std::string>> points = {
        {"snapshot.save.job-running", "save"},
        {"snapshot.save.before-metadata", "save"},
        {"snapshot.save.after-metadata", "save"},
        {"snapshot.load.job-running", "revert"},
        {"snapshot.revert.before-metadata", "revert"},
        {"snapshot.revert.after-metadata", "revert"},
        {"snapshot.external.before-transaction", "external"},
        {"snapshot.external.after-transaction", "external"},
        {"snapshot.external.before-metadata", "external"},
        {"snapshot.external.after-metadata", "external"},
        {"snapshot.memory.migration-running", "memory"},
        {"snapshot.memory.after-migration", "memory"},
        {"snapshot.external.after-transaction", "memory"},
        {"snapshot.commit.job-running", "commit"},
        {"snapshot.commit.job-ready", "commit"},
        {"snapshot.commit.before-metadata", "commit"},
        {"snapshot.commit.after-metadata", "commit"},
    };
    std::vector<fault_case> cases;
    for (const auto& [step, op] : points)
        for (bool qemu : {false, true})
            cases.push_back({step, op, qemu});
    return cases;
}

INSTANTIATE_TEST_SUITE_P(snapshot_steps, fault_point_test, ::testing::ValuesIn(all_cases()),
                         [](const auto& info) {
                             auto n = case_name(info);
                             return info.param.op == "memory" &&
                                            info.param.step.find("external") != std::string::npos
                                        ? n + "_with_memory"
                                        : n;
                         });

// qmpkit or qemu killed while a reset point is made: the VM is paused for the save, its disks
// switch to new overlays, the point's files are written. The next command that needs the VM
// whole settles it (here: the same `reset-point create` again, or `snapshot check --repair`
// when qemu died): the guest runs again, the definition names what qemu runs on, no overlay or
// half point is left, and migration is left as it was (x-ignore-shared off, or a later memory
// snapshot would save no RAM).
struct reset_point_case {
    std::string step;
    bool kill_qemu = false;
};

class reset_point_fault_test : public fault_injection,
                               public ::testing::WithParamInterface<reset_point_case> {
protected:
    // Every file in the state directory's overlays/ is in the chain of a disk that the
    // definition, or a standby's, names.
    static void expect_overlays_in_use() {
        // Standbys being prepared make overlays before their definitions, and remove the
        // replaced qemu's: wait until that is over.
        const launcher::state_directory dir(run_->state_root(), vm);
        for (int i = 0; i < 1200 && launcher::standby_being_prepared(dir); ++i)
            std::this_thread::sleep_for(std::chrono::milliseconds(50));
        std::vector<launcher::vm_definition> definitions{
            launcher::load_definition(state() / "definition.yaml")};
        for (const auto& s : launcher::list_standbys(dir))
            definitions.push_back(s.definition);
        std::set<fs::path> chain;
        for (const auto& definition : definitions)
            for (const auto& d : definition.disks)
                for (const auto& info : launcher::qemu_img().info_chain(d.file))
                    chain.insert(fs::weakly_canonical(info.filename));
        std::error_code ec;
        for (const auto& e : fs::directory_iterator(state() / "overlays", ec))
            EXPECT_TRUE(chain.contains(fs::weakly_canonical(e.path())))
                << "an overlay nothing uses: " << e.path();
    }
};

TEST_P(reset_point_fault_test, is_settled_by_the_next_command) {
    const auto& c = GetParam();
    reset_vm();
    // fsync, not only sync: ext2's sync writes the blocks but sends no flush, so qemu may still
    // hold the qcow2 metadata that maps them, which a killed qemu loses (as any crash would).
    run_->guest(vm, "echo point | dd of=/mnt/f conv=fsync 2>/dev/null; sync");
    const auto spec = c.step + (c.kill_qemu ? ":qemu" : "");
    ::setenv("QMPKIT_FAULT_AT", spec.c_str(), 1);
    auto r = qmpkit({"reset-point", "create", vm, "rp"});
    ::unsetenv("QMPKIT_FAULT_AT");
    ASSERT_NE(r.err.find("fault injection: " + c.step), std::string::npos)
        << "the fault point was never reached: " << r.out << r.err;

    if (c.kill_qemu) {
        EXPECT_FALSE(qemu_running()) << "qemu survived";
        auto repair = qmpkit({"snapshot", "check", vm, "--repair"});
        EXPECT_EQ(repair.code, 0) << repair.out << repair.err;
        EXPECT_FALSE(fs::exists(state() / "snapshot-op.json")) << "the journal is still there";
        EXPECT_FALSE(fs::exists(state() / "reset" / "rp") &&
                     !fs::exists(state() / "reset" / "rp" / "point.json"))
            << "a half reset point is left";
        expect_overlays_in_use();
        expect_clean_images();
        // The definition names images that hold the guest's disk: it starts and has the file.
        r = qmpkit({"start", (state() / "definition.yaml").string(), "--wait-ready"});
        ASSERT_EQ(r.code, 0) << r.out << r.err;
        // A cold boot after a kill: the disks are mounted by the guest's disk scan, which may
        // still be at it when the ready line comes.
        EXPECT_TRUE(run_->wait_for_mount(vm, "/mnt")) << "never mounted";
        EXPECT_EQ(run_->guest(vm, "cat /mnt/f"), "point\n")
            << run_->guest(vm, "cat /proc/mounts; dmesg | tail -n 15")
            << "\nrepair said: " << repair.out << repair.err << "\ndefinition:\n"
            << read_bytes(state() / "definition.yaml") << "\nruntime:\n"
            << read_bytes(state() / "runtime.json") << "\nboot id " << run_->boot_id(vm)
            << " (at base: " << boot_ << ")";
        return;
    }
    EXPECT_EQ(r.code, 128 + SIGKILL) << r.out << r.err;
    // The same command again settles what the killed one left, then makes the point.
    r = qmpkit({"reset-point", "create", vm, "rp"});
    if (r.code != 0) {
        // The killed one had finished the point: the name is taken, and that is all.
        EXPECT_NE(r.err.find("already has a reset point named 'rp'"), std::string::npos) << r.err;
    }
    EXPECT_FALSE(fs::exists(state() / "snapshot-op.json")) << "the journal is still there";
    auto status = qmpkit({"--json", "status", vm});
    ASSERT_EQ(status.code, 0) << status.err;
    EXPECT_EQ(json::parse(status.out).at("state").as_string(), "running") << status.out;
    const auto caps = qmpkit({"qmp", vm, "query-migrate-capabilities"});
    EXPECT_NE(caps.out.find("x-ignore-shared"), std::string::npos) << caps.out;
    const auto capabilities = json::parse(caps.out);
    for (const auto& v : capabilities.as_array())
        if (v.at("capability").as_string() == "x-ignore-shared") {
            EXPECT_FALSE(v.at("state").as_bool()) << "x-ignore-shared left on";
        }
    expect_overlays_in_use();
    auto check = qmpkit({"snapshot", "check", vm});
    EXPECT_EQ(check.code, 0) << check.out << check.err;

    // The point works: the guest's later write is undone, the point's file is back.
    run_->guest(vm, "echo later > /mnt/f; sync");
    r = qmpkit({"reset", vm, "rp"});
    ASSERT_EQ(r.code, 0) << r.out << r.err;
    EXPECT_EQ(run_->guest(vm, "cat /mnt/f"), "point\n");
    EXPECT_EQ(run_->boot_id(vm), boot_) << "a reset is not a reboot";
    expect_overlays_in_use();
}

INSTANTIATE_TEST_SUITE_P(
    reset_point_steps, reset_point_fault_test,
    ::testing::Values(reset_point_case{"reset-point.create.migration-running", false},
                      reset_point_case{"reset-point.create.migration-running", true},
                      reset_point_case{"reset-point.create.after-migration", false},
                      reset_point_case{"reset-point.create.after-transaction", false},
                      reset_point_case{"reset-point.create.after-transaction", true},
                      reset_point_case{"reset-point.create.after-point", false}),
    [](const auto& info) {
        std::string n =
            info.param.step + (info.param.kill_qemu ? "_qemu_killed" : "_qmpkit_killed");
        for (auto& ch : n)
            if (!std::isalnum(static_cast<unsigned char>(ch)))
                ch = '_';
        return n;
    });

// A memory save killed while the user had the VM paused is let finish: qemu then sits in
// postmigrate, and saves no memory from there. qmpkit says so, and what to do, instead of
// passing on qemu's refusal; after a resume the save works.
TEST_F(fault_injection, a_save_after_a_killed_save_of_a_paused_vm_asks_for_a_resume) {
    reset_vm();
    ASSERT_EQ(qmpkit({"suspend", vm}).code, 0);
    ::setenv("QMPKIT_FAULT_AT", "snapshot.memory.migration-running", 1);
    auto r = qmpkit(command_for("memory"));
    ::unsetenv("QMPKIT_FAULT_AT");
    ASSERT_EQ(r.code, 128 + SIGKILL) << r.out << r.err;
    r = qmpkit({"snapshot", "check", vm, "--repair"});
    EXPECT_EQ(r.code, 0) << r.out << r.err;
    EXPECT_FALSE(fs::exists(images_ / "mem.state")) << "the killed save's memory file is left";

    r = qmpkit(command_for("memory"));
    EXPECT_EQ(r.code, 1) << r.out << r.err;
    EXPECT_FALSE(fs::exists(images_ / "mem.state")) << "the refused save made its memory file";
    EXPECT_NE(r.err.find("resume it first"), std::string::npos) << r.err;
    EXPECT_EQ(qmpkit({"resume", vm}).code, 0);
    r = qmpkit(command_for("memory"));
    EXPECT_EQ(r.code, 0) << r.out << r.err;
    r = qmpkit({"snapshot", "delete", vm, "mem"});
    EXPECT_EQ(r.code, 0) << r.out << r.err;
    // Like virsh, a deleted snapshot's memory file stays: it is the user's (--memspec).
    fs::remove(images_ / "mem.state");
}

// The disk holding the images fills up during an internal snapshot: the save fails with
// qemu's reason, nothing is recorded or left half-made, and the VM and its snapshots go on.
TEST_F(fault_injection, disk_full_while_saving_a_snapshot) {
    if (!on_tmpfs_)
        GTEST_SKIP() << "cannot mount a tmpfs here (not root?): no disk to fill";
    reset_vm();
    const auto before = read_bytes(metadata_file());
    struct statvfs fsinfo {};
    ASSERT_EQ(::statvfs(images_.c_str(), &fsinfo), 0);
    const auto free_bytes = static_cast<off_t>(fsinfo.f_bavail) * fsinfo.f_frsize;
    const auto filler = images_ / "filler";
    {
        const int fd = ::open(filler.c_str(), O_WRONLY | O_CREAT | O_EXCL, 0600);
        ASSERT_GE(fd, 0);
        ASSERT_EQ(::posix_fallocate(fd, 0, free_bytes - (256 << 10)), 0);
        ::close(fd);
    }

    auto r = qmpkit({"snapshot", "create", vm, "full"});
    fs::remove(filler);
    EXPECT_EQ(r.code, 1) << r.out << r.err;
    // qemu itself says "Input/output error"; qmpkit adds what is behind it.
    EXPECT_NE(r.err.find("snapshot-save failed"), std::string::npos) << r.err;
    EXPECT_NE(r.err.find("is it full?"), std::string::npos) << r.err;
    EXPECT_EQ(read_bytes(metadata_file()), before) << "nothing recorded";
    auto check = qmpkit({"snapshot", "check", vm});
    EXPECT_EQ(check.code, 0) << check.out;
    expect_no_stray_files();
    expect_clean_images();
    for (const auto& e : fs::directory_iterator(images_)) {
        if (e.path().extension() != ".qcow2")
            continue;
        for (const auto& s : launcher::qemu_img().info(e.path()).snapshots) {
            EXPECT_NE(s.name, "full") << "a half snapshot in " << e.path();
        }
    }
    expect_other_snapshots_revert();
}

} // namespace
