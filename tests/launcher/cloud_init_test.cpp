// The cloud-init seed's contents (no genisoimage, no qemu): what meta-data and user-data say, and
// that the instance-id changes exactly when the content does.

#include <qmpkit/launcher/cloud_init.hpp>
#include <qmpkit/launcher/definition_loader.hpp>
#include <qmpkit/launcher/state_directory.hpp>
#include <qmpkit/launcher/subprocess.hpp>

#include <gtest/gtest.h>
#include <yaml-cpp/yaml.h>

#include <fstream>
#include <unistd.h>

namespace qmpkit::launcher {
namespace {

constexpr std::string_view vm_key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIVmKey qmpkit VM web";

vm_definition web(const std::string& cloud_init) {
    return load_definition_from_string("name: web\nboot: disk\n"
                                       "disks: [{name: system, file: s.qcow2}]\n"
                                       "cloud_init: " +
                                           cloud_init + "\n",
                                       "/defs/web.yaml");
}

std::string instance_id(const cloud_init_seed_files& files) {
    return YAML::Load(files.meta_data)["instance-id"].as<std::string>();
}

TEST(cloud_init_seed, meta_data_names_the_host_and_the_vms_key) {
    const auto files = cloud_init_seed_contents(web("{}"), vm_key);
    const auto meta = YAML::Load(files.meta_data);
    EXPECT_EQ(meta["local-hostname"].as<std::string>(), "web");
    ASSERT_EQ(meta["public-keys"].size(), 1u);
    EXPECT_EQ(meta["public-keys"][0].as<std::string>(), vm_key);
    EXPECT_EQ(instance_id(files).rfind("qmpkit-", 0), 0u) << files.meta_data;
    EXPECT_FALSE(files.network_config);
}

TEST(cloud_init_seed, user_data_makes_the_user_with_sudo_and_every_key) {
    const auto files = cloud_init_seed_contents(
        web("{user: ops, ssh_authorized_keys: ['ssh-rsa AAAAB3 me']}"), vm_key);
    ASSERT_EQ(files.user_data.rfind("#cloud-config\n", 0), 0u) << files.user_data;
    const auto data = YAML::Load(files.user_data);
    const auto user = data["users"][0];
    EXPECT_EQ(user["name"].as<std::string>(), "ops");
    EXPECT_EQ(user["sudo"].as<std::string>(), "ALL=(ALL) NOPASSWD:ALL");
    EXPECT_TRUE(user["lock_passwd"].as<bool>());
    ASSERT_EQ(user["ssh_authorized_keys"].size(), 2u);
    EXPECT_EQ(user["ssh_authorized_keys"][0].as<std::string>(), vm_key);
    EXPECT_EQ(user["ssh_authorized_keys"][1].as<std::string>(), "ssh-rsa AAAAB3 me");
    // Setting it would make cloud-init restart sshd under the first ssh session.
    EXPECT_FALSE(data["ssh_pwauth"]) << files.user_data;
    // The user's systemd stays between logins (linger): a login costs half as much.
    ASSERT_TRUE(data["bootcmd"]) << files.user_data;
    ASSERT_EQ(data["bootcmd"].size(), 1u);
    EXPECT_EQ(data["bootcmd"][0][2].as<std::string>(),
              "mkdir -p /var/lib/systemd/linger && touch /var/lib/systemd/linger/ops");
}

TEST(cloud_init_seed, the_instance_id_follows_the_content) {
    const auto one = cloud_init_seed_contents(web("{}"), vm_key);
    EXPECT_EQ(instance_id(cloud_init_seed_contents(web("{}"), vm_key)), instance_id(one))
        << "the same inputs are the same instance: cloud-init does not run again";
    EXPECT_NE(instance_id(cloud_init_seed_contents(web("{hostname: www}"), vm_key)),
              instance_id(one));
    EXPECT_NE(instance_id(cloud_init_seed_contents(web("{user: ops}"), vm_key)), instance_id(one));
    EXPECT_NE(instance_id(cloud_init_seed_contents(web("{}"), "ssh-ed25519 AAAAother x")),
              instance_id(one));
}

TEST(cloud_init_seed, files_named_by_the_definition_are_passed_through) {
    const auto dir = std::filesystem::temp_directory_path() /
                     ("qmpkit-cloud-init-test-" + std::to_string(::getpid()));
    std::filesystem::create_directories(dir);
    {
        std::ofstream(dir / "user-data") << "#cloud-config\npackages: [nginx]\n";
        std::ofstream(dir / "net.yaml") << "version: 2\nethernets: {}\n";
    }
    const auto files =
        cloud_init_seed_contents(web("{user_data: " + (dir / "user-data").string() +
                                     ", network_config: " + (dir / "net.yaml").string() + "}"),
                                 vm_key);
    EXPECT_EQ(files.user_data, "#cloud-config\npackages: [nginx]\n");
    ASSERT_TRUE(files.network_config);
    EXPECT_EQ(*files.network_config, "version: 2\nethernets: {}\n");
    // The VM's key still reaches the image's default user.
    EXPECT_NE(files.meta_data.find(std::string(vm_key)), std::string::npos);

    std::filesystem::remove(dir / "net.yaml");
    try {
        cloud_init_seed_contents(web("{network_config: " + (dir / "net.yaml").string() + "}"),
                                 vm_key);
        ADD_FAILURE() << "a missing network_config was not reported";
    } catch (const std::exception& e) {
        EXPECT_NE(std::string(e.what()).find("cloud_init.network_config"), std::string::npos)
            << e.what();
    }
    std::filesystem::remove_all(dir);
}

// A changed cloud_init section means a new instance-id, and cloud-init makes new host keys at
// the next boot: the VM's known_hosts must not insist on the old ones. The same content keeps it.
TEST(cloud_init_seed, a_new_seed_forgets_the_guests_host_keys) {
    for (const auto* tool : {"genisoimage", "ssh-keygen"})
        if (!run({"sh", "-c", "command -v \"$0\" >/dev/null", tool}).ok())
            GTEST_SKIP() << tool << " is not installed";
    const auto root =
        std::filesystem::temp_directory_path() / ("qmpkit-seed-test-" + std::to_string(::getpid()));
    std::filesystem::remove_all(root);
    const state_directory dir(root, "web");
    dir.create();
    make_cloud_init_seed(web("{}"), dir);
    ASSERT_TRUE(std::filesystem::exists(dir.cloud_init_seed()));
    const auto known_hosts = dir.ssh_directory() / "known_hosts";
    std::ofstream(known_hosts) << "qmpkit-web ssh-ed25519 AAAAold\n";
    make_cloud_init_seed(web("{}"), dir);
    EXPECT_TRUE(std::filesystem::exists(known_hosts)) << "the same seed forgot the host keys";
    make_cloud_init_seed(web("{hostname: www}"), dir);
    EXPECT_FALSE(std::filesystem::exists(known_hosts)) << "a new instance kept the old host keys";
    std::filesystem::remove_all(root);
}

// shares[].mount: a boot command puts the share's line into fstab (in place of an older line of
// the same tag) and mounts it; a share without a mount point is left to the guest.
TEST(cloud_init_seed, declared_share_mounts_are_written_to_fstab_and_mounted_at_boot) {
    auto def = load_definition_from_string("name: web\nboot: disk\n"
                                           "disks: [{name: system, file: s.qcow2}]\n"
                                           "cloud_init: {}\n"
                                           "shares:\n"
                                           "  - {tag: host.data, path: /srv, mount: /mnt/data}\n"
                                           "  - {tag: ro, path: /opt, read_only: true, "
                                           "mount: /mnt/ro}\n"
                                           "  - {tag: manual, path: /tmp}\n",
                                           "/defs/web.yaml");
    const auto data = YAML::Load(cloud_init_seed_contents(def, vm_key).user_data);
    ASSERT_TRUE(data["bootcmd"]) << cloud_init_seed_contents(def, vm_key).user_data;
    ASSERT_EQ(data["bootcmd"].size(), 3u);
    const auto first = data["bootcmd"][1];
    ASSERT_EQ(first.size(), 3u);
    EXPECT_EQ(first[0].as<std::string>(), "sh");
    EXPECT_EQ(first[1].as<std::string>(), "-c");
    const auto script = first[2].as<std::string>();
    EXPECT_NE(script.find("grep -v '^host\\.data[[:space:]]' $f"), std::string::npos) << script;
    EXPECT_NE(script.find("echo 'host.data /mnt/data 9p "
                          "trans=virtio,version=9p2000.L,msize=524288,nofail 0 0'"),
              std::string::npos)
        << script;
    EXPECT_NE(script.find("mountpoint -q '/mnt/data' || mount '/mnt/data'"), std::string::npos)
        << script;
    EXPECT_NE(data["bootcmd"][2][2].as<std::string>().find(
                  "ro /mnt/ro 9p trans=virtio,version=9p2000.L,msize=524288,ro,nofail 0 0"),
              std::string::npos);
    // The instance-id changes with them, so that cloud-init applies a changed mount.
    def.shares[0].mount = "/data";
    EXPECT_NE(instance_id(cloud_init_seed_contents(def, vm_key)),
              instance_id(cloud_init_seed_contents(web("{}"), vm_key)));
}

} // namespace
} // namespace qmpkit::launcher
