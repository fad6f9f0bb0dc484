// Bad input to the qmpkit tool, end to end. Each row of the table is one mistake: a mistyped
// command or option, a bad value, a broken VM definition, a dangerous snapshot or reset point
// name, a wrong image path, a wrong QMP argument. Every one must
//   - exit with the documented code (2: bad arguments or definition, 1: refused or failed,
//     3: no qemu at the socket),
//   - name the offending thing on stderr (the argument, the file and line, the name, or the QMP
//     command and its error class),
//   - not crash (no signal, no sanitizer report),
//   - and change nothing on disk: the whole scratch tree (the state root with both VMs, the
//     images, the definitions) is listed before and after with sizes, mtimes and content
//     hashes; the snapshot cases also compare `qemu-img snapshot -l -U` of both disks; and no
//     shell payload ran.
// One tiny guest ("live") is booted for the whole table; "off" is defined (it has an offline
// snapshot, s1) but never started. The definitions loader has its own unit table
// (tests/launcher/bad_definition_test.cpp): here only what the tool does with a bad file.

#include "bare_qemu.hpp"
#include "cli_runner.hpp"
#include "tiny_guest.hpp"

#include <qmpkit/launcher/subprocess.hpp>

#include <boost/json.hpp>
#include <gtest/gtest.h>

#include <fstream>
#include <map>
#include <memory>
#include <sstream>
#include <unistd.h>

namespace {

namespace fs = std::filesystem;
using namespace qmpkit;
using namespace std::chrono_literals;

// "{S}" in arguments and expected messages stands for the scratch directory.
struct bad_input {
    std::string id;                // the test's name
    std::vector<std::string> args; // after `qmpkit --state-dir {S}/state`
    int code = 0;                  // the exit code
    std::vector<std::string> says; // each must appear in stderr
    bool images = false;           // also compare the disks' internal snapshot lists
};

void PrintTo(const bad_input& c, std::ostream* os) {
    *os << c.id;
}

constexpr int usage = 2, failed = 1, unreachable = 3; // cli/exit_codes.hpp

const std::string long_name(10 * 1024, 'n');
// A payload that would leave a trace if any shell ever saw the name.
const std::string canary = "/tmp/pwned";
const std::string payload = "$(touch " + canary + ")";

std::vector<bad_input> cli_cases() {
    return {
        // The command line itself.
        {"unknown_command", {"frobnicate"}, usage, {"unknown command 'frobnicate'"}},
        {"unknown_subcommand", {"snapshot", "frobnicate", "live"}, usage, {"'frobnicate'"}},
        {"unknown_global_option", {"--frobnicate", "list"}, usage, {"--frobnicate"}},
        {"unknown_option", {"status", "--bogus", "live"}, usage, {"--bogus"}},
        {"missing_vm", {"status"}, usage, {"vm is required"}},
        {"missing_qmp_command", {"qmp", "live"}, usage, {"command is required"}},
        {"missing_snapshot_name", {"snapshot", "revert", "live"}, usage, {"name is required"}},
        {"missing_snapshot_name_named_vm",
         {"snapshot-revert", "--domain", "live"},
         usage,
         {"name is required"}},
        // virsh's named options and the positional words must agree.
        {"vm_given_twice",
         {"snapshot-revert", "live", "s1", "--domain", "off"},
         usage,
         {"vm is given twice: as 'live' and as --domain 'off'"}},
        {"snapshot_name_given_twice",
         {"snapshot", "info", "off", "s1", "--snapshotname", "s2"},
         usage,
         {"name is given twice"}},
        {"disk_given_twice",
         {"attach-disk", "live", "{S}/imgs/new.qcow2", "--name", "a", "--target", "b"},
         usage,
         {"name is given twice: as --name 'a' and as --target 'b'"}},
        {"snapshot_create_xml", {"snapshot-create", "live", "s.xml"}, usage, {"takes no XML"}},
        {"lock_timeout_not_a_number",
         {"--lock-timeout", "abc", "status", "live"},
         usage,
         {"--lock-timeout", "abc"}},
        {"lock_timeout_negative",
         {"--lock-timeout", "-1", "status", "live"},
         usage,
         {"--lock-timeout: must not be negative"}},
        {"events_count_negative", {"events", "live", "--count", "-1"}, usage, {"--count", "-1"}},
        {"events_count_not_a_number",
         {"events", "live", "--count", "many"},
         usage,
         {"--count", "many"}},
        {"console_lines_negative",
         {"console", "live", "--log", "--lines", "-5"},
         usage,
         {"--lines", "-5"}},
        // Used to detach the disk anyway, with no time to wait for the guest.
        {"detach_timeout_negative",
         {"detach-disk", "live", "system", "--timeout", "-1"},
         usage,
         {"--timeout", "-1"}},
        {"shutdown_timeout_infinite",
         {"shutdown", "live", "--timeout", "inf"},
         usage,
         {"--timeout", "inf"}},
        {"qmp_timeout_huge",
         {"qmp", "live", "query-status", "--timeout", "1e300"},
         usage,
         {"--timeout", "1e300"}},
        {"unknown_vm", {"status", "nosuchvm"}, failed, {"'nosuchvm'"}},
        {"unknown_vm_qmp", {"qmp", "nosuchvm", "query-status"}, failed, {"'nosuchvm'"}},
        {"vm_name_leaves_state_root", {"status", "../state/live"}, usage, {"\"../state/live\""}},
        {"vm_name_leaves_state_root_reset_point",
         {"reset-point", "list", "../state/live"},
         usage,
         {"\"../state/live\""}},
        {"vm_name_empty", {"snapshot", "list", ""}, usage, {"invalid VM name \"\""}},
        // A VM that is defined but not running, for commands that need a running one.
        {"stopped_qmp", {"qmp", "off", "query-status"}, failed, {"'off' is not running"}},
        {"stopped_shell", {"shell", "off", "--", "true"}, failed, {"'off' is not running"}},
        {"stopped_events", {"events", "off", "--count", "1"}, failed, {"'off' is not running"}},
        {"stopped_console", {"console", "off"}, failed, {"'off' is not running"}},
        {"stopped_disks", {"disks", "off"}, failed, {"'off' is not running"}},
        {"stopped_destroy", {"destroy", "off"}, failed, {"'off' is not running"}},
        {"stopped_reset_point", {"reset-point", "create", "off", "p"}, failed, {"'off' running"}},
        {"stopped_memory_snapshot",
         {"snapshot", "create", "off", "m1", "--memspec", "{S}/m1.state"},
         failed,
         {"'off' running"},
         true},
        // Used to append the refusal to the running VM's supervisor.log.
        {"start_running_vm", {"start", "{S}/live.yaml"}, failed, {"'live' is already running"}},
    };
}

std::vector<bad_input> definition_cases() {
    std::vector<bad_input> cases{
        {"definition_missing",
         {"start", "{S}/defs/missing.yaml"},
         usage,
         {"{S}/defs/missing.yaml: No such file"}},
        {"definition_is_a_directory",
         {"start", "{S}/defs/dir.yaml"},
         usage,
         {"{S}/defs/dir.yaml is a directory"}},
        {"definition_symlink_loop",
         {"start", "{S}/defs/loop.yaml"},
         usage,
         {"{S}/defs/loop.yaml: Too many levels of symbolic links"}},
        {"definition_empty", {"start", "{S}/defs/empty.yaml"}, usage, {"empty.yaml:1:1:", "empty"}},
        {"definition_not_yaml", {"start", "{S}/defs/unclosed.yaml"}, usage, {"unclosed.yaml:2:"}},
        {"definition_binary", {"start", "{S}/defs/binary.yaml"}, usage, {"{S}/defs/binary.yaml:"}},
        {"definition_not_a_mapping",
         {"start", "{S}/defs/list.yaml"},
         usage,
         {"list.yaml:1:1:", "expected a mapping"}},
        {"definition_bad_field",
         {"run", "{S}/defs/badmem.yaml"},
         usage,
         {"badmem.yaml:2:9: memory:", "'12QB'"}},
        {"definition_name_leaves_state_root",
         {"start", "{S}/defs/evil.yaml"},
         usage,
         {"evil.yaml:1:7: name:", "'../evil'"}},
        // validate reports every file's problems, the good files' too, and starts nothing.
        {"validate_bad_field",
         {"validate", "{S}/live.yaml", "{S}/defs/badmem.yaml", "{S}/defs/missing.yaml"},
         usage,
         {"badmem.yaml:2:9: memory:", "'12QB'",
          "{S}/defs/missing.yaml: cannot read the definition: No such file"}},
        {"validate_json", {"--json", "validate", "{S}/defs/evil.yaml"}, usage, {}},
        // Commands that take a definition instead of a VM name read its name from it.
        {"definition_name_leaves_state_root_status",
         {"status", "{S}/defs/evil.yaml"},
         usage,
         {"evil.yaml:1:7: name:"}},
        {"definition_name_leaves_state_root_snapshots",
         {"snapshot", "list", "{S}/defs/evil.yaml"},
         usage,
         {"evil.yaml:1:7: name:"}},
    };
    // Root reads any file whatever its mode.
    if (::geteuid() != 0)
        cases.push_back({"definition_unreadable",
                         {"start", "{S}/defs/unreadable.yaml"},
                         usage,
                         {"unreadable.yaml", "Permission denied"}});
    return cases;
}

std::vector<bad_input> name_cases() {
    std::vector<bad_input> cases;
    auto add = [&](std::string id, std::vector<std::string> args, int code, std::string says) {
        cases.push_back({std::move(id), std::move(args), code, {std::move(says)}, true});
    };
    const std::string invalid = "invalid snapshot name ";
    auto create = [](const std::string& name) {
        return std::vector<std::string>{"snapshot", "create", "live", "--name=" + name};
    };
    add("snapshot_create_empty", {"snapshot", "create", "live", ""}, usage,
        invalid + "\"\": it is empty");
    add("snapshot_create_dotdot_slash", create("../x"), usage, invalid + "\"../x\"");
    add("snapshot_create_slash", create("a/b"), usage, invalid + "\"a/b\"");
    add("snapshot_create_dot", create("."), usage, invalid + "\".\"");
    add("snapshot_create_dotdot", create(".."), usage, invalid + "\"..\"");
    add("snapshot_create_10k", create(long_name), usage, "is 10240 bytes long");
    add("snapshot_create_newline", create("a\nb"), usage, invalid + "\"a\\nb\"");
    add("snapshot_create_escape", create("a\x1b[2Jb"), usage, "control character U+001B");
    add("snapshot_create_bidi_override", create("evil\u202Etxt"), usage, "U+202E");
    add("snapshot_create_invalid_utf8", create("caf\xc3"), usage, "not valid UTF-8");
    add("snapshot_create_leading_dash", {"snapshot", "create", "live", "--", "-x"}, usage,
        invalid + "\"-x\"");
    // Digits are a good name, but "1" is the id of s1 in off's image: a load of "1" would load s1.
    add("snapshot_create_digits_an_id", {"snapshot", "create", "off", "--name=1"}, failed,
        "'1' is the id of an existing snapshot");
    add("snapshot_create_as_digits_an_id", {"snapshot-create-as", "--domain", "off", "1"}, failed,
        "(named 's1')");
    add("snapshot_create_shell_payload", create(payload), usage, invalid + "\"" + payload + "\"");
    add("snapshot_create_taken", {"snapshot", "create", "off", "s1"}, failed, "'s1'");
    add("snapshot_revert_dotdot_slash", {"snapshot", "revert", "live", "../x"}, usage,
        invalid + "\"../x\"");
    add("snapshot_revert_dotdot", {"snapshot", "revert", "live", ".."}, usage, invalid + "\"..\"");
    add("snapshot_revert_newline", {"snapshot", "revert", "live", "s\n1"}, usage,
        invalid + "\"s\\n1\"");
    // Names any shell would run, but good names: nothing by that name, and nothing ran.
    add("snapshot_revert_shell_metachars", {"snapshot", "revert", "live", ";rm -rf ~;"}, failed,
        "no snapshot named \";rm -rf ~;\"");
    add("snapshot_delete_slash", {"snapshot", "delete", "off", "a/b"}, usage, invalid + "\"a/b\"");
    add("snapshot_delete_dot", {"snapshot", "delete", "off", "."}, usage, invalid + "\".\"");
    add("snapshot_delete_shell_metachars", {"snapshot", "delete", "off", "$(touch pwned)"}, failed,
        "no snapshot named \"$(touch pwned)\"");
    add("snapshot_info_empty", {"snapshot", "info", "live", ""}, usage, invalid + "\"\"");
    add("snapshot_info_10k", {"snapshot", "info", "off", long_name}, usage, "is 10240 bytes long");
    add("snapshot_info_backticks", {"snapshot", "info", "off", "`touch pwned`"}, failed,
        "no snapshot named \"`touch pwned`\"");

    const std::string point = "invalid reset point name ";
    auto create_point = [](const std::string& name) {
        return std::vector<std::string>{"reset-point", "create", "live", name};
    };
    add("reset_point_empty", create_point(""), usage, point + "\"\"");
    add("reset_point_dotdot_slash", create_point("../x"), usage, point + "\"../x\"");
    add("reset_point_slash", create_point("a/b"), usage, point + "\"a/b\"");
    add("reset_point_dot", create_point("."), usage, point + "\".\"");
    add("reset_point_dotdot", create_point(".."), usage, point + "\"..\"");
    add("reset_point_10k", create_point(long_name), usage, "is 10240 bytes long");
    add("reset_point_newline", create_point("p\n"), usage, point + "\"p\\n\"");
    add("reset_point_leading_dash", {"reset-point", "create", "live", "--", "-p"}, usage,
        point + "\"-p\"");
    add("reset_point_shell_payload", create_point(payload), usage, point + "\"" + payload + "\"");
    // remove_all of reset/<name>: a name with '/' would delete another VM's files.
    add("reset_point_delete_leaves_vm", {"reset-point", "delete", "live", "../../off"}, usage,
        point + "\"../../off\"");
    return cases;
}

std::vector<bad_input> image_cases() {
    return {
        {"disk_create_missing_directory",
         {"disk", "create", "{S}/nodir/x.qcow2", "1M"},
         usage,
         {"directory {S}/nodir does not exist"}},
        {"disk_create_over_file",
         {"disk", "create", "{S}/imgs/existing.qcow2", "1M"},
         failed,
         {"{S}/imgs/existing.qcow2' already exists"}},
        {"disk_create_over_directory",
         {"disk", "create", "{S}/imgs/adir", "1M"},
         failed,
         {"{S}/imgs/adir' already exists"}},
        {"disk_create_into_state_dir",
         {"disk", "create", "{S}/state/live/../live/runtime.json", "1M"},
         failed,
         {"runtime.json' already exists"}},
        {"disk_create_bad_size",
         {"disk", "create", "{S}/imgs/new.qcow2", "10QB"},
         usage,
         {"size: invalid size '10QB'"}},
        {"disk_create_negative_size",
         {"disk", "create", "{S}/imgs/new.qcow2", "--", "-1G"},
         usage,
         {"invalid size '-1G'"}},
        {"disk_create_bad_format",
         {"disk", "create", "{S}/imgs/new.qcow2", "1M", "-f", "vmdk"},
         usage,
         {"'vmdk'"}},
        {"disk_create_missing_backing",
         {"disk", "create", "{S}/imgs/new.qcow2", "-b", "{S}/imgs/missing.qcow2"},
         failed,
         {"{S}/imgs/missing.qcow2"}},
        {"disk_convert_missing_input",
         {"disk", "convert", "{S}/imgs/missing.qcow2", "{S}/imgs/out.qcow2"},
         usage,
         {"{S}/imgs/missing.qcow2: No such file"}},
        {"disk_convert_same_file",
         {"disk", "convert", "{S}/imgs/existing.qcow2", "{S}/imgs/../imgs/existing.qcow2"},
         failed,
         {"the same file"}},
        {"disk_convert_over_existing",
         {"disk", "convert", "{S}/imgs/raw.img", "{S}/imgs/existing.qcow2"},
         failed,
         {"existing.qcow2' already exists"}},
        {"disk_convert_wrong_input_format",
         {"disk", "convert", "{S}/imgs/raw.img", "{S}/imgs/out.qcow2", "-f", "qcow2"},
         failed,
         {"{S}/imgs/raw.img", "not in qcow2 format"}},
        {"disk_convert_bad_output_format",
         {"disk", "convert", "{S}/imgs/raw.img", "{S}/imgs/out.img", "-O", "vmdk"},
         usage,
         {"'vmdk'"}},
        {"disk_convert_missing_directory",
         {"disk", "convert", "{S}/imgs/raw.img", "{S}/nodir/out.qcow2"},
         usage,
         {"directory {S}/nodir does not exist"}},
        {"disk_info_directory", {"disk", "info", "{S}/imgs/adir"}, usage, {"adir is a directory"}},
        {"attach_bad_size",
         {"attach-disk", "live", "{S}/imgs/new.qcow2", "--name", "data", "--size", "10QB"},
         usage,
         {"--size: invalid size '10QB'"}},
        {"attach_name_leaves",
         {"attach-disk", "live", "{S}/imgs/new.qcow2", "--name", "../x", "--size", "1M"},
         usage,
         {"disk name '../x'"}},
        {"snapshot_overlay_over_state_file",
         {"snapshot", "create", "live", "e1", "--disk-only", "--diskspec",
          "system,snapshot=external,file={S}/state/live/../live/definition.yaml"},
         failed,
         {"definition.yaml already exists"},
         true},
    };
}

std::vector<bad_input> qmp_cases() {
    return {
        {"qmp_unknown_command",
         {"qmp", "live", "no-such-command"},
         failed,
         {"no-such-command: CommandNotFound"}},
        {"qmp_invalid_json", {"qmp", "live", "device_del", "{\"id\":"}, usage, {"'{\"id\":'"}},
        {"qmp_not_key_value", {"qmp", "live", "query-status", "bogus"}, usage, {"'bogus'"}},
        {"qmp_argument_twice",
         {"qmp", "live", "device_del", "id=a", "id=b"},
         usage,
         {"'id' given twice"}},
        {"qmp_wrong_type",
         {"qmp", "live", "device_del", "id=5"},
         failed,
         {"device_del: GenericError", "'id'"}},
        {"qmp_wrong_type_size",
         {"qmp", "live", "block_resize", "node-name=system", "size=abc"},
         failed,
         {"block_resize: GenericError", "'size'"}},
        {"qmp_missing_argument",
         {"qmp", "live", "device_del"},
         failed,
         {"device_del: GenericError", "'id' is missing"}},
        {"qmp_unexpected_argument",
         {"qmp", "live", "query-status", "bogus=1"},
         failed,
         {"query-status: GenericError", "'bogus'"}},
        {"qmp_no_socket",
         {"qmp", "{S}/nowhere/qmp.sock", "query-status"},
         unreachable,
         {"{S}/nowhere/qmp.sock"}},
    };
}

std::vector<bad_input> all_cases() {
    std::vector<bad_input> all;
    for (auto part : {cli_cases(), definition_cases(), name_cases(), image_cases(), qmp_cases()})
        all.insert(all.end(), part.begin(), part.end());
    return all;
}

std::string replace_all(std::string text, const std::string& from, const std::string& to) {
    for (auto at = text.find(from); at != std::string::npos; at = text.find(from, at + to.size()))
        text.replace(at, from.size(), to);
    return text;
}

std::string read_all(const fs::path& file) {
    std::ifstream in(file, std::ios::binary);
    std::ostringstream text;
    text << in.rdbuf();
    return text.str();
}

// The running guest writes to its disk whenever it likes: only its existence is compared (its
// internal snapshots are, by qemu-img).
const std::string live_disk = "live-system.qcow2";

// Everything under `dir`, by path relative to `root`: type, size, mtime and, for files up to
// 1 MiB, a hash of the content. Symbolic links are not followed (one of them is a loop). Lock
// files are left out: every command that takes a VM's lock rewrites the note in it of who holds
// it, by design.
void list_into(std::map<std::string, std::string>& all, const fs::path& root, const fs::path& dir) {
    for (const auto& entry : fs::directory_iterator(dir)) {
        const auto& path = entry.path();
        if (path.filename() == "lock")
            continue;
        std::ostringstream what;
        const auto status = entry.symlink_status();
        if (fs::is_symlink(status)) {
            what << "symlink to " << fs::read_symlink(path);
        } else if (fs::is_directory(status)) {
            what << "directory";
            list_into(all, root, path);
        } else if (path == root / live_disk) {
            what << "the running guest's disk";
        } else if (fs::is_regular_file(status)) {
            const auto size = fs::file_size(path);
            what << "file, " << size << " bytes, mtime "
                 << fs::last_write_time(path).time_since_epoch().count();
            if (size <= 1024 * 1024)
                what << ", content hash " << std::hash<std::string>{}(read_all(path));
        } else {
            what << "other (socket)";
        }
        all[path.lexically_relative(root).string()] = what.str();
    }
}

std::map<std::string, std::string> listing(const fs::path& root) {
    std::map<std::string, std::string> all;
    list_into(all, root, root);
    return all;
}

std::string differences(const std::map<std::string, std::string>& before,
                        const std::map<std::string, std::string>& after) {
    std::string text;
    for (const auto& [path, what] : before) {
        auto it = after.find(path);
        if (it == after.end())
            text += "  removed " + path + "\n";
        else if (it->second != what)
            text += "  changed " + path + ": " + what + " -> " + it->second + "\n";
    }
    for (const auto& [path, what] : after)
        if (!before.contains(path))
            text += "  created " + path + ": " + what + "\n";
    return text;
}

class bad_input_test : public ::testing::TestWithParam<bad_input> {
public:
    static void SetUpTestSuite() {
        if (!test::qemu_available())
            return;
        scratch_ = std::make_unique<test::scratch_dir>();
        run_ = std::make_unique<test::cli_runner>(scratch_->path() / "state");
        // Relative payloads ("touch pwned") would land in the working directory: make it the
        // watched tree.
        old_cwd_ = fs::current_path();
        fs::current_path(scratch_->path());
        canary_existed_ = fs::exists(canary);
        const auto& s = scratch_->path();

        auto live = test::write_tiny_guest("live", s);
        auto r = (*run_)({"start", live.string(), "--wait-ready"});
        ASSERT_EQ(r.code, 0) << r.out << r.err;
        test::write_tiny_guest("off", s);
        r = (*run_)({"disk", "create", (s / "off-system.qcow2").string(), "64M"});
        ASSERT_EQ(r.code, 0) << r.err;
        r = (*run_)({"snapshot", "create", (s / "off.yaml").string(), "s1"});
        ASSERT_EQ(r.code, 0) << r.err;

        fs::create_directories(s / "defs" / "dir.yaml");
        fs::create_symlink("loop.yaml", s / "defs" / "loop.yaml");
        test::write_text(s / "defs" / "empty.yaml", "");
        test::write_text(s / "defs" / "unclosed.yaml", "name: [unclosed\n");
        std::string binary;
        for (int i = 0; i < 512; ++i)
            binary += static_cast<char>((i * 7919) % 251);
        test::write_text(s / "defs" / "binary.yaml", binary);
        test::write_text(s / "defs" / "list.yaml", "- name: x\n- name: y\n");
        test::write_text(s / "defs" / "badmem.yaml", "name: badmem\nmemory: 12QB\n");
        test::write_text(s / "defs" / "evil.yaml", "name: \"../evil\"\nmachine: pc\n");
        fs::copy_file(live, s / "defs" / "unreadable.yaml");
        fs::permissions(s / "defs" / "unreadable.yaml", fs::perms::none);

        fs::create_directories(s / "imgs" / "adir");
        r = (*run_)({"disk", "create", (s / "imgs" / "existing.qcow2").string(), "1M"});
        ASSERT_EQ(r.code, 0) << r.err;
        test::write_text(s / "imgs" / "raw.img", std::string(1024 * 1024, '\x5a'));
        ready_ = true;
    }

    static void TearDownTestSuite() {
        if (!scratch_)
            return;
        if (ready_) {
            // After all that the VM runs on, untouched.
            auto r = (*run_)({"qmp", "live", "query-status", "--compact"});
            EXPECT_NE(r.out.find("\"running\":true"), std::string::npos) << r.out << r.err;
            EXPECT_EQ(run_->guest("live", "echo alive"), "alive\n");
            r = (*run_)({"disks", "live"});
            EXPECT_NE(r.out.find("system"), std::string::npos)
                << "a refused detach-disk took the disk away anyway:\n"
                << r.out << r.err;
        }
        (*run_)({"destroy", "live"});
        fs::current_path(old_cwd_);
        run_.reset();
        scratch_.reset();
    }

protected:
    void SetUp() override {
        if (!test::qemu_available())
            GTEST_SKIP() << "qemu-system-x86_64 is not installed (scripts/setup installs it)";
        ASSERT_TRUE(ready_) << "setting up the VMs failed";
    }

    static std::string expand(const std::string& text) {
        return replace_all(text, "{S}", scratch_->path().string());
    }

    // The internal snapshots both disks hold.
    static std::string disk_snapshots() {
        std::string all;
        for (const auto* vm : {"live", "off"}) {
            const auto disk = scratch_->path() / (std::string(vm) + "-system.qcow2");
            auto r = launcher::run({"qemu-img", "snapshot", "-l", "-U", disk.string()});
            all += disk.string() + " (exit " + std::to_string(r.exit_code) + "):\n" + r.out + r.err;
        }
        return all;
    }

    static inline std::unique_ptr<test::scratch_dir> scratch_;
    static inline std::unique_ptr<test::cli_runner> run_;
    static inline fs::path old_cwd_;
    static inline bool canary_existed_ = false;
    static inline bool ready_ = false;
};

TEST_P(bad_input_test, fails_clearly_and_changes_nothing) {
    const auto& c = GetParam();
    std::vector<std::string> args;
    for (const auto& a : c.args)
        args.push_back(expand(a));
    const auto before = listing(scratch_->path());
    const auto snapshots_before = c.images ? disk_snapshots() : std::string();

    const auto r = (*run_)(args, 60s);

    EXPECT_EQ(r.code, c.code) << "stderr:\n" << r.err << "stdout:\n" << r.out;
    for (const auto& s : c.says) {
        const auto wanted = expand(s);
        EXPECT_NE(r.err.find(wanted), std::string::npos)
            << "stderr should say `" << wanted << "`; it says:\n"
            << r.err;
    }
    EXPECT_LT(r.code, 128) << "killed by signal " << r.code - 128 << "\n" << r.err;
    for (const auto* crash : {"AddressSanitizer", "LeakSanitizer",
                              "runtime error:", "terminate called", "Segmentation fault"})
        EXPECT_EQ(r.err.find(crash), std::string::npos) << r.err;

    EXPECT_EQ(differences(before, listing(scratch_->path())), "")
        << "bad input must change nothing on disk";
    if (c.images) {
        EXPECT_EQ(disk_snapshots(), snapshots_before);
    }
    if (!canary_existed_) {
        EXPECT_FALSE(fs::exists(canary)) << "a shell ran a snapshot name";
    }
}

// The good side of validate: a definition start would take is valid, --print writes it as
// qmpkit reads it (defaults filled in, paths absolute), and that text is itself valid; --json
// says which file has which problem, at which line. Nothing is started or made.
TEST_F(bad_input_test, validate_passes_a_good_definition_and_prints_it_as_read) {
    const auto before = listing(scratch_->path());
    const auto live = expand("{S}/live.yaml");
    auto r = (*run_)({"validate", live});
    EXPECT_EQ(r.code, 0) << r.err;
    EXPECT_EQ(r.out, live + ": valid\n");

    r = (*run_)({"validate", "--print", live});
    ASSERT_EQ(r.code, 0) << r.err;
    EXPECT_NE(r.out.find("memory: 256M"), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("node_name: \"system\""), std::string::npos) << "a default filled in";
    EXPECT_NE(r.out.find(expand("\"{S}/live-system.qcow2\"")), std::string::npos) << r.out;
    const auto printed = expand("{S}/printed.yaml");
    test::write_text(printed, r.out);
    r = (*run_)({"validate", printed});
    EXPECT_EQ(r.code, 0) << r.err;
    fs::remove(printed);

    r = (*run_)({"--json", "validate", live, expand("{S}/defs/badmem.yaml")});
    EXPECT_EQ(r.code, 2);
    const auto report = boost::json::parse(r.out).as_array();
    ASSERT_EQ(report.size(), 2u);
    EXPECT_EQ(report[0].at("valid"), true);
    EXPECT_EQ(report[1].at("valid"), false);
    const auto& problem = report[1].at("problems").as_array().at(0).as_object();
    EXPECT_EQ(problem.at("line"), 2);
    EXPECT_EQ(problem.at("field"), "memory");

    // A definition whose files are not here: refused, unless the file checks are left out.
    const auto elsewhere = expand("{S}/defs/elsewhere.yaml");
    test::write_text(elsewhere, "name: elsewhere\nkernel: /nonexistent/vmlinuz\n");
    r = (*run_)({"validate", elsewhere});
    EXPECT_EQ(r.code, 2);
    EXPECT_NE(r.err.find("elsewhere.yaml:2:9: kernel: file not found"), std::string::npos) << r.err;
    r = (*run_)({"validate", "--no-file-checks", elsewhere});
    EXPECT_EQ(r.code, 0) << r.err;
    fs::remove(elsewhere);
    EXPECT_EQ(differences(before, listing(scratch_->path())), "");
}

// A lab's definitions checked together: each is valid alone, but two that name one VM, write
// one image or forward one host port cannot run side by side. Reported at the later file's line,
// naming the earlier file; read-only use of one image and `auto` ports are no conflict, and a file
// given twice is one definition.
TEST_F(bad_input_test, validate_compares_the_definitions_it_is_given) {
    const auto before = listing(scratch_->path());
    const auto image = expand("{S}/live-system.qcow2");
    const auto first = expand("{S}/defs/first.yaml");
    const auto second = expand("{S}/defs/second.yaml");
    const auto reader = expand("{S}/defs/reader.yaml");
    // Line 1 the name, line 4 the disk, line 6 the forward.
    const auto definition = [&](const std::string& name, const std::string& disk_options,
                                const std::string& host_port) {
        return "name: " + name + "\nkernel: " + expand("{S}/vmlinuz") +
               "\ndisks:\n  - {name: system, file: " + image + disk_options +
               "}\nnetwork:\n  forwards: [{host_port: " + host_port + ", guest_port: 22}]\n";
    };
    test::write_text(first, definition("first", "", "2222"));
    test::write_text(second, definition("first", "", "2222"));
    test::write_text(reader, definition("reader", ", read_only: true", "auto"));
    auto r = (*run_)({"validate", "--no-file-checks", first, second});
    EXPECT_EQ(r.code, 2) << r.err;
    EXPECT_EQ(r.out, first + ": valid\n");
    EXPECT_NE(
        r.err.find(second + ":1:7: name: VM name 'first' is also the name in " + first + ":1"),
        std::string::npos)
        << r.err;
    EXPECT_NE(r.err.find(second + ":4:26: disks[0].file: image '" + image +
                         "' is also a disk of VM 'first' (" + first + ":4)"),
              std::string::npos)
        << r.err;
    EXPECT_NE(r.err.find(second +
                         ":6:26: network.forwards[0].host_port: host port "
                         "127.0.0.1:2222 is also forwarded by VM 'first' (" +
                         first + ":6)"),
              std::string::npos)
        << r.err;

    // The writer and a reader of one image conflict; a file given twice does not.
    r = (*run_)({"--json", "validate", "--no-file-checks", first, reader, first});
    EXPECT_EQ(r.code, 2) << r.err;
    const auto report = boost::json::parse(r.out).as_array();
    ASSERT_EQ(report.size(), 3u);
    EXPECT_EQ(report[0].at("valid"), true);
    EXPECT_EQ(report[2].at("valid"), true);
    const auto& problems = report[1].at("problems").as_array();
    ASSERT_EQ(problems.size(), 1u) << r.out;
    EXPECT_EQ(problems[0].at("field"), "disks[0].file");
    r = (*run_)({"validate", "--no-file-checks", reader, reader});
    EXPECT_EQ(r.code, 0) << r.err;

    for (const auto& f : {first, second, reader})
        fs::remove(f);
    EXPECT_EQ(differences(before, listing(scratch_->path())), "");
}

INSTANTIATE_TEST_SUITE_P(table, bad_input_test, ::testing::ValuesIn(all_cases()),
                         [](const ::testing::TestParamInfo<bad_input>& info) {
                             return info.param.id;
                         });

} // namespace
