// A real distribution end to end: the Debian 12 guest (scripts/build-debian-guest) booted from
// its own disk with UEFI firmware, seeded by cloud-init, driven with qmpkit ssh, cp and exec, and
// snapshotted with its UEFI variable store, under TCG.
//
// Booting it takes a minute or more here, so one VM serves every case, in order; the cases
// leave it running.

#include "cli_suite.hpp"
#include "debian_guest.hpp"

#include <qmpkit/launcher/subprocess.hpp>

#include <boost/json.hpp>
#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>
#include <random>
#include <set>
#include <sstream>
#include <sys/stat.h>

namespace {

using namespace qmpkit;
using namespace std::chrono_literals;
namespace json = boost::json;
namespace fs = std::filesystem;

constexpr const char* vm = "deb";

class debian_guest_test : public test::cli_suite {
protected:
    static void SetUpTestSuite() {
        if (!open_suite())
            return;
        const auto started = std::chrono::steady_clock::now();
        fs::create_directories(share_dir());
        fs::create_directories(read_only_dir());
        { std::ofstream(read_only_dir() / "from-host") << "read me\n"; }
        auto def = test::write_debian_guest(vm, scratch(),
                                            "shares:\n"
                                            "  - {tag: hostdata, path: " +
                                                share_dir().string() +
                                                ", mount: /mnt/host}\n"
                                                "  - {tag: hostro, path: " +
                                                read_only_dir().string() +
                                                ", read_only: true, mount: /mnt/ro}\n");
        auto r = qmpkit({"start", def.string()});
        ASSERT_EQ(r.code, 0) << r.out << r.err;
        // cloud-init has run once ssh lets the VM's key in: the key came from the seed.
        r = qmpkit({"ssh", vm, "--wait", "600", "--", "true"});
        ASSERT_EQ(r.code, 0) << r.out << r.err << console_tail();
        std::cerr << "[ debian ] ssh in after "
                  << std::chrono::duration_cast<std::chrono::seconds>(
                         std::chrono::steady_clock::now() - started)
                         .count()
                  << " s\n";
    }

    static void TearDownTestSuite() { close_suite(); }

    static std::string console_tail() {
        auto r = qmpkit({"console", vm, "--log", "--lines", "40"});
        return "\nconsole:\n" + r.out;
    }

    // `qmpkit ssh VM -- sh -c COMMAND`; a failure fails the test. Returns the output.
    static std::string ssh(const std::string& command) {
        auto r = qmpkit({"ssh", vm, "--", "sh", "-c", "'" + command + "'"});
        EXPECT_EQ(r.code, 0) << command << ": " << r.out << r.err;
        return r.out;
    }

    // A shell command as root through the guest agent (no ssh, no quoting beyond sh -c's).
    static std::string root(const std::string& command) {
        auto r = qmpkit({"exec", vm, "--", "sh", "-c", command});
        EXPECT_EQ(r.code, 0) << command << ": " << r.out << r.err;
        return r.out;
    }

    static fs::path share_dir() { return scratch() / "share"; }
    static fs::path read_only_dir() { return scratch() / "share-ro"; }
    // Which of the shares the guest has mounted, as "hostdata hostro" (its /proc/mounts order).
    static std::string mounted_shares() {
        return root("awk '$3 == \"9p\" { printf \"%s \", $1 }' /proc/mounts");
    }

    static fs::path nvram() { return scratch() / (std::string(vm) + "-nvram.qcow2"); }
    static fs::path system_disk() { return scratch() / (std::string(vm) + "-system.qcow2"); }

    // The file a disk of a running VM writes to now (`disks --json`).
    static fs::path active_file(const std::string& name, const std::string& disk) {
        auto r = qmpkit({"--json", "disks", name});
        EXPECT_EQ(r.code, 0) << r.err;
        const auto disks = json::parse(r.out);
        for (const auto& d : disks.as_array())
            if (d.at("disk").as_string() == disk)
                return std::string(d.at("file").as_string());
        ADD_FAILURE() << "VM " << name << " has no disk " << disk << ": " << r.out;
        return {};
    }

    // The kernel's complaints about ext4 since boot; empty when there are none.
    static std::string ext4_errors() {
        return root("dmesg --level=emerg,alert,crit,err | grep -i ext4 || true");
    }

    // The host port a running VM forwards to its port 22.
    static std::int64_t ssh_port(const std::string& name) {
        auto r = qmpkit({"--json", "status", name});
        EXPECT_EQ(r.code, 0) << r.err;
        const auto status = json::parse(r.out);
        for (const auto& f : status.at("forwards").as_array())
            if (f.at("guest_port").as_int64() == 22)
                return f.at("host_port").as_int64();
        ADD_FAILURE() << name << " forwards nothing to port 22: " << r.out;
        return 0;
    }
};

// An EFI variable of our own (any vendor GUID will do). efivarfs shows it as a file whose first
// four bytes are its attributes (7: non-volatile, boot and runtime access), then its value.
constexpr const char* efi_variable =
    "/sys/firmware/efi/efivars/QmpkitMarker-5b3c6a8e-2f1d-4e8a-9c4b-7d2e1f0a9b3c";

std::string set_efi_variable(const std::string& value) {
    const std::string v = efi_variable;
    // efivarfs makes existing variables immutable: chattr -i lets root write one again.
    return "{ test ! -e " + v + " || chattr -i " + v + "; } && printf '\\007\\000\\000\\000" +
           value + "' > " + v;
}

std::string read_efi_variable() {
    const std::string v = efi_variable;
    // Through a pipe: efivarfs files do not seek.
    return "if test -e " + v + "; then cat " + v + " | tail -c +5; else echo none; fi";
}

TEST_F(debian_guest_test, boots_with_uefi_and_applies_the_cloud_init_seed) {
    EXPECT_EQ(ssh("test -d /sys/firmware/efi && echo uefi"), "uefi\n");
    EXPECT_EQ(ssh("hostname"), std::string(vm) + "\n");
    EXPECT_EQ(ssh("id -un"), "qmpkit\n");
    EXPECT_EQ(ssh("sudo -n id -u"), "0\n");
    // cloud-init finished without errors.
    EXPECT_NE(ssh("cloud-init status --wait").find("done"), std::string::npos);

    // The variable store is the VM's own, a qcow2 image made from OVMF's empty one.
    auto r = qmpkit({"--json", "disk", "info", nvram().string()});
    ASSERT_EQ(r.code, 0) << r.err;
    EXPECT_NE(r.out.find("\"qcow2\""), std::string::npos) << r.out;

    // The agent runs programs as root, with their output and exit code.
    r = qmpkit({"exec", vm, "--", "cat", "/etc/hostname"});
    EXPECT_EQ(r.code, 0) << r.err;
    EXPECT_EQ(r.out, std::string(vm) + "\n");
}

// shares[].mount: cloud-init put them into fstab and mounted them; 9p carries bytes both ways,
// and a read-only share refuses writes in the guest.
TEST_F(debian_guest_test, shares_are_mounted_by_tag_read_write_and_read_only) {
    EXPECT_EQ(mounted_shares(), "hostdata hostro ");
    EXPECT_NE(root("grep '^hostdata ' /etc/fstab"), "");
    std::string data(3 * 1024 * 1024 + 5, '\0');
    std::mt19937 random(12);
    for (auto& c : data)
        c = static_cast<char>(random());
    { std::ofstream(share_dir() / "from-host", std::ios::binary) << data; }
    const auto digest = root("sha256sum < /mnt/host/from-host");
    EXPECT_EQ(root("wc -c < /mnt/host/from-host"), std::to_string(data.size()) + "\n");
    root("cp /mnt/host/from-host /mnt/host/from-guest && sync");
    std::ifstream back(share_dir() / "from-guest", std::ios::binary);
    const std::string copied((std::istreambuf_iterator<char>(back)), {});
    EXPECT_TRUE(copied == data) << "the guest's copy differs (" << copied.size() << " bytes)";
    EXPECT_EQ(root("cat /mnt/ro/from-host"), "read me\n");
    auto r = qmpkit({"exec", vm, "--", "sh", "-c", "touch /mnt/ro/nope"});
    EXPECT_NE(r.code, 0);
    EXPECT_NE(r.err.find("Read-only"), std::string::npos) << r.err;
    EXPECT_FALSE(fs::exists(read_only_dir() / "nope"));
    const auto on_host = launcher::run({"sha256sum", (share_dir() / "from-host").string()});
    ASSERT_TRUE(on_host.ok()) << on_host.err;
    EXPECT_EQ(digest.substr(0, 64), on_host.out.substr(0, 64)) << "the guest reads other bytes";
}

// qemu saves no memory while a 9p share is mounted: qmpkit unmounts the shares through the
// agent for the snapshot and mounts them again; where the guest cannot unmount one (a process
// works in it), the snapshot is refused before anything changes.
TEST_F(debian_guest_test, a_memory_snapshot_unmounts_the_shares_or_is_refused_untouched) {
    root("setsid sh -c 'cd /mnt/host && exec sleep 600' </dev/null >/dev/null 2>&1 &");
    auto r = qmpkit({"snapshot", "create", vm, "busy"});
    EXPECT_NE(r.code, 0) << r.out;
    EXPECT_NE(r.err.find("share 'hostdata'"), std::string::npos) << r.err;
    EXPECT_NE(r.err.find("/mnt/host"), std::string::npos) << r.err;
    EXPECT_EQ(qmpkit({"--json", "snapshot", "list", vm}).out.find("\"busy\""), std::string::npos);
    r = qmpkit({"--json", "status", vm});
    EXPECT_EQ(json::parse(r.out).at("state").as_string(), "running") << r.out;
    EXPECT_EQ(mounted_shares(), "hostdata hostro ") << "a share was left unmounted";
    r = qmpkit({"--json", "disk", "info", nvram().string()});
    EXPECT_EQ(r.out.find("\"busy\""), std::string::npos) << "a half-taken snapshot: " << r.out;
    root("pkill -f '^sleep 600' || true");

    r = qmpkit({"snapshot", "create", vm, "with-shares"});
    ASSERT_EQ(r.code, 0) << r.out << r.err;
    EXPECT_EQ(mounted_shares(), "hostdata hostro ") << "not mounted again after the snapshot";
    root("umount /mnt/ro");
    r = qmpkit({"snapshot", "revert", vm, "with-shares"});
    ASSERT_EQ(r.code, 0) << r.out << r.err;
    // The state was saved with both unmounted: the revert mounts them again.
    EXPECT_EQ(mounted_shares(), "hostdata hostro ") << "not mounted again after the revert";
    EXPECT_EQ(root("cat /mnt/ro/from-host"), "read me\n");
    EXPECT_EQ(qmpkit({"snapshot", "delete", vm, "with-shares"}).code, 0);
}

TEST_F(debian_guest_test, ssh_passes_the_exit_code_through_and_status_shows_the_port) {
    auto r = qmpkit({"ssh", vm, "--", "exit", "7"});
    EXPECT_EQ(r.code, 7) << r.err;

    r = qmpkit({"--json", "status", vm});
    ASSERT_EQ(r.code, 0) << r.err;
    const auto status = json::parse(r.out).as_object();
    const auto& forwards = status.at("forwards").as_array();
    ASSERT_EQ(forwards.size(), 1u) << r.out;
    EXPECT_EQ(forwards[0].at("guest_port").as_int64(), 22);
    EXPECT_GT(forwards[0].at("host_port").as_int64(), 0);
}

// The SHA-256 of a host file, by sha256sum.
std::string sha256_of(const fs::path& file) {
    std::string out;
    FILE* pipe = ::popen(("sha256sum '" + file.string() + "'").c_str(), "r");
    char buffer[256];
    while (pipe && std::fgets(buffer, sizeof buffer, pipe))
        out += buffer;
    if (pipe)
        ::pclose(pipe);
    return out.substr(0, out.find(' '));
}

TEST_F(debian_guest_test, cp_copies_files_both_ways_byte_for_byte_with_their_mode) {
    // Several MiB, so the copy takes many agent round trips, and not a whole number of chunks.
    const auto local = scratch() / "payload.bin";
    {
        std::mt19937_64 random(42);
        std::ofstream out(local, std::ios::binary);
        for (int i = 0; i < 6 * 1024 * 1024 / 8; ++i) {
            const auto word = random();
            out.write(reinterpret_cast<const char*>(&word), sizeof word);
        }
        out.write("tail", 4);
    }
    fs::permissions(local, fs::perms::owner_read | fs::perms::owner_write | fs::perms::group_read);
    const auto expected = sha256_of(local);
    ASSERT_EQ(expected.size(), 64u);

    auto r = qmpkit({"cp", local.string(), std::string(vm) + ":/tmp/"});
    ASSERT_EQ(r.code, 0) << r.out << r.err;
    EXPECT_EQ(root("sha256sum /tmp/payload.bin | cut -d' ' -f1"), expected + "\n");
    EXPECT_EQ(root("stat -c %a /tmp/payload.bin"), "640\n");
    EXPECT_EQ(root("ls /tmp | grep -c qmpkit-part || true"), "0\n");

    const auto back_dir = scratch() / "back";
    fs::create_directories(back_dir);
    r = qmpkit({"--json", "cp", std::string(vm) + ":/tmp/payload.bin", back_dir.string()});
    ASSERT_EQ(r.code, 0) << r.out << r.err;
    EXPECT_EQ(json::parse(r.out).at("bytes").as_int64(), 6 * 1024 * 1024 + 4);
    const auto back = back_dir / "payload.bin";
    EXPECT_EQ(sha256_of(back), expected);
    struct stat st {};
    ASSERT_EQ(::stat(back.c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 07777, 0640u);

    // A missing path on either side is named, and nothing is left behind.
    r = qmpkit({"cp", (scratch() / "nope").string(), std::string(vm) + ":/tmp/"});
    EXPECT_NE(r.code, 0);
    EXPECT_NE(r.err.find("cannot read host file"), std::string::npos) << r.err;
    r = qmpkit({"cp", std::string(vm) + ":/nonexistent/file", back_dir.string()});
    EXPECT_NE(r.code, 0);
    EXPECT_NE(r.err.find("/nonexistent/file"), std::string::npos) << r.err;
    r = qmpkit({"cp", local.string(), std::string(vm) + ":/nonexistent/dir/x"});
    EXPECT_NE(r.code, 0);
    EXPECT_NE(r.err.find("/nonexistent/dir/x"), std::string::npos) << r.err;
    EXPECT_EQ(std::distance(fs::directory_iterator(back_dir), fs::directory_iterator()), 1);
    EXPECT_EQ(root("ls /nonexistent /tmp 2>/dev/null | grep -c qmpkit-part || true"), "0\n");
}

TEST_F(debian_guest_test, an_internal_snapshot_brings_back_files_and_efi_variables) {
    root(set_efi_variable("before"));
    root("echo kept > /root/kept; rm -f /root/after; sync");
    auto r = qmpkit({"snapshot", "create", vm, "clean"});
    ASSERT_EQ(r.code, 0) << r.out << r.err;
    // The variable store holds the snapshot too: a savevm that left it out could not be loaded.
    r = qmpkit({"--json", "disk", "info", nvram().string()});
    ASSERT_EQ(r.code, 0) << r.err;
    EXPECT_NE(r.out.find("\"clean\""), std::string::npos) << r.out;

    // Changes as root on ext4 and in the firmware's variables.
    root(set_efi_variable("after"));
    EXPECT_EQ(root(read_efi_variable()), "after");
    root("echo written-after > /root/after; echo changed > /root/kept; sync");

    r = qmpkit({"snapshot", "revert", vm, "clean"});
    ASSERT_EQ(r.code, 0) << r.out << r.err;
    EXPECT_EQ(root(read_efi_variable()), "before");
    EXPECT_EQ(root("cat /root/kept"), "kept\n");
    EXPECT_EQ(root("test -e /root/after && echo survived || echo gone"), "gone\n");
    EXPECT_EQ(ext4_errors(), "");
    r = qmpkit({"ssh", vm, "--wait", "60", "--", "true"});
    EXPECT_EQ(r.code, 0) << "ssh after the revert: " << r.err;

    r = qmpkit({"snapshot", "delete", vm, "clean"});
    EXPECT_EQ(r.code, 0) << r.err;
}

TEST_F(debian_guest_test, a_quiesced_external_snapshot_freezes_ext4_for_real) {
    root("echo in-the-snapshot > /root/quiesced");
    auto r = qmpkit({"snapshot", "create", vm, "q1", "--disk-only", "--quiesce"});
    ASSERT_EQ(r.code, 0) << r.out << r.err;
    // The layer the snapshot froze is a clean file system, journal and all: fsfreeze wrote
    // everything out. Without it, e2fsck would find a journal to recover.
    const auto check = test::check_root_filesystem(system_disk(), scratch());
    EXPECT_EQ(check.exit_code, 0) << check.output;
    EXPECT_EQ(check.output.find("recovery"), std::string::npos) << check.output;
    // The guest was thawed: it writes again.
    EXPECT_EQ(root("echo after > /root/thawed && cat /root/quiesced"), "in-the-snapshot\n");
    EXPECT_EQ(root("fsfreeze --unfreeze / 2>&1 || true").find("Device or resource busy"),
              std::string::npos);

    r = qmpkit({"snapshot", "delete", vm, "q1"});
    EXPECT_EQ(r.code, 0) << r.err;
    EXPECT_EQ(active_file(vm, "system"), system_disk()) << "the overlay was merged back";
}

// An external snapshot with memory saves through migration, which a mounted share blocks too;
// its revert starts qemu again on new overlays and loads the memory, and mounts the shares again.
TEST_F(debian_guest_test, an_external_snapshot_with_memory_reverts_with_the_shares_mounted) {
    root("echo before > /root/external; sync");
    const auto state = scratch() / "ext1.state";
    auto r = qmpkit({"snapshot", "create", vm, "ext1", "--memspec", state.string()});
    ASSERT_EQ(r.code, 0) << r.out << r.err;
    EXPECT_EQ(mounted_shares(), "hostdata hostro ") << "not mounted again after the snapshot";
    root("echo after > /root/external; sync");
    r = qmpkit({"snapshot", "revert", vm, "ext1"});
    ASSERT_EQ(r.code, 0) << r.out << r.err;
    EXPECT_EQ(root("cat /root/external"), "before\n");
    EXPECT_EQ(mounted_shares(), "hostdata hostro ") << "not mounted again after the revert";
    EXPECT_EQ(ext4_errors(), "");
    r = qmpkit({"ssh", vm, "--wait", "60", "--", "true"});
    EXPECT_EQ(r.code, 0) << "ssh after the revert: " << r.err;
}

// Hot-plug on a real kernel (PCIe hot-plug on q35): the guest finds the disk by its name, writes
// to it, lets it go; the bytes are checked from outside with qemu-io.
TEST_F(debian_guest_test, a_disk_attached_while_running_is_used_by_the_guest_and_detached) {
    const auto image = scratch() / "hot.qcow2";
    auto r = qmpkit({"attach-disk", vm, image.string(), "--name", "hot", "--size", "64M"});
    ASSERT_EQ(r.code, 0) << r.out << r.err;
    const std::string device = "/dev/disk/by-id/virtio-hot";
    root("for i in $(seq 100); do test -b " + device + " && break; sleep 0.2; done; test -b " +
         device);
    root("tr '\\000' '\\132' < /dev/zero | head -c 1048576 | dd of=" + device +
         " bs=1M oflag=direct status=none");
    r = qmpkit({"detach-disk", vm, "hot"});
    ASSERT_EQ(r.code, 0) << r.out << r.err;
    EXPECT_EQ(root("for i in $(seq 100); do test -b " + device +
                   " || break; sleep 0.2; done; test -b " + device +
                   " && echo present || echo gone"),
              "gone\n");
    const auto check =
        launcher::run({"qemu-io", "-f", "qcow2", "-r", "-c", "read -P 0x5a 0 1M", image.string()});
    EXPECT_TRUE(check.ok()) << check.out << check.err;
    EXPECT_EQ(check.out.find("Pattern verification failed"), std::string::npos) << check.out;
}

TEST_F(debian_guest_test, standby_resets_bring_back_the_reset_point_and_ssh_answers) {
    root("rm -f /root/dirty; sync");
    auto r = qmpkit({"reset-point", "create", vm, "rp"});
    ASSERT_EQ(r.code, 0) << r.out << r.err;
    for (int round = 0; round < 3; ++round) {
        root("echo dirty > /root/dirty; sync");
        r = qmpkit({"--json", "reset", vm, "rp"});
        ASSERT_EQ(r.code, 0) << r.out << r.err;
        EXPECT_EQ(json::parse(r.out).at("strategy").as_string(), "standby") << r.out;
        EXPECT_EQ(root("test -e /root/dirty && echo dirty || echo clean"), "clean\n");
        // The forward follows the VM to its new qemu.
        r = qmpkit({"ssh", vm, "--wait", "60", "--", "true"});
        EXPECT_EQ(r.code, 0) << "ssh after reset " << round << ": " << r.err;
        // The point was taken with the shares unmounted; the reset mounts them again.
        EXPECT_EQ(mounted_shares(), "hostdata hostro ") << "after reset " << round;
    }
    EXPECT_EQ(ext4_errors(), "");
}

// --new-identity: each clone gets its own machine-id, SSH host keys and host name through the
// agent; ssh to it accepts its new key (the clone's known_hosts is its own), and the port forward
// still reaches it (the MAC, and with it the guest's address, stays).
TEST_F(debian_guest_test, clones_answer_ssh_each_on_its_own_port_with_an_identity_of_their_own) {
    const auto identity_of = [](const std::string& name) {
        auto r = qmpkit({"exec", name, "--", "sh", "-c",
                         "cat /etc/machine-id; hostname; ssh-keygen -lf "
                         "/etc/ssh/ssh_host_ed25519_key.pub | cut -d' ' -f2"});
        EXPECT_EQ(r.code, 0) << name << ": " << r.err;
        return r.out;
    };
    const auto origin = identity_of(vm);
    auto r = qmpkit({"--json", "clone", vm, "--count", "2", "--new-identity"});
    ASSERT_EQ(r.code, 0) << r.out << r.err;
    std::vector<std::string> clones;
    const auto made = json::parse(r.out);
    for (const auto& n : made.at("clones").as_array())
        clones.emplace_back(n.as_string());
    ASSERT_EQ(clones.size(), 2u);
    std::cerr << "[ debian ] 2 clones with identities of their own in "
              << made.at("ms").to_number<double>() << " ms\n";
    std::set<std::int64_t> ports{ssh_port(vm)};
    for (const auto& c : clones) {
        ports.insert(ssh_port(c));
        r = qmpkit({"ssh", c, "--wait", "60", "--", "echo", "mine", ">", "/tmp/only-here"});
        EXPECT_EQ(r.code, 0) << c << ": " << r.err;
        // Three lines, none the origin's: machine-id, host name, host key.
        const auto mine = identity_of(c);
        std::istringstream a(origin), b(mine);
        std::string x, y;
        int lines = 0;
        while (std::getline(a, x) && std::getline(b, y)) {
            EXPECT_NE(x, y) << c << " kept line " << lines << " of its origin's identity";
            ++lines;
        }
        EXPECT_EQ(lines, 3) << origin << "\n" << mine;
        EXPECT_NE(mine.find(c + "\n"), std::string::npos) << mine;
    }
    EXPECT_EQ(ports.size(), 3u) << "two VMs forward the same host port";
    r = qmpkit({"ssh", vm, "--", "test", "-e", "/tmp/only-here"});
    EXPECT_EQ(r.code, 1) << "a clone's write is seen in its origin";
    for (const auto& c : clones) {
        EXPECT_EQ(qmpkit({"destroy", c}).code, 0);
        EXPECT_EQ(qmpkit({"remove", c}).code, 0);
    }
}

// Last: the VM is off afterwards.
TEST_F(debian_guest_test, shuts_down_cleanly_through_the_agent_leaving_a_clean_file_system) {
    const auto disk = active_file(vm, "system");
    auto r = qmpkit({"shutdown", vm, "--timeout", "120"});
    ASSERT_EQ(r.code, 0) << r.out << r.err;
    EXPECT_NE(r.out.find("guest-shutdown"), std::string::npos) << r.out;
    r = qmpkit({"--json", "status", vm});
    EXPECT_EQ(json::parse(r.out).at("state").as_string(), "shutoff") << r.out;
    const auto check = test::check_root_filesystem(disk, scratch());
    EXPECT_EQ(check.exit_code, 0) << check.output;
}

} // namespace
