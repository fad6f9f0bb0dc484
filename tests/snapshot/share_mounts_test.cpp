// 9p shares and memory snapshots, the parts that need no guest: which of the guest's mounts are
// the VM's shares (from /proc/self/mounts, escapes undone), and which shares qemu says block a
// save (query-migrate's blocked-reasons, against a scripted fake QMP server). The unmount and
// mount through the agent are tested on the Debian guest (tests/cli/debian_guest_test.cpp).

#include "qmp/fake_qmp_server.hpp"
#include "share_mounts.hpp" // snapshot/src

#include <qmpkit/launcher/definition_loader.hpp>
#include <qmpkit/qmp/client.hpp>

#include <gtest/gtest.h>

namespace {

using namespace qmpkit;
using qmp::test::fake_qmp_server;
namespace json = boost::json;

launcher::vm_definition with_shares() {
    return launcher::load_definition_from_string("name: vm\nkernel: /k\nshares:\n"
                                                 "  - {tag: data, path: /srv/data}\n"
                                                 "  - {tag: src.tree, path: /src}\n",
                                                 "/defs/vm.yaml");
}

TEST(parse_share_mounts, finds_the_vms_9p_mounts_only_with_their_directories_unescaped) {
    const std::string mounts =
        "/dev/vda2 / ext4 rw,relatime 0 0\n"
        "data /mnt/host\\040data 9p rw,relatime,access=client,msize=512000,trans=virtio 0 0\n"
        "other /mnt/other 9p rw,trans=virtio 0 0\n"
        "data /srv/nfs nfs4 rw 0 0\n"
        "src.tree /home/me/src 9p ro,relatime,trans=virtio 0 0\n"
        "broken-line\n";
    const auto found = snapshot::detail::parse_share_mounts(mounts, with_shares());
    ASSERT_EQ(found.size(), 2u);
    EXPECT_EQ(found[0].tag, "data");
    EXPECT_EQ(found[0].directory, "/mnt/host data");
    EXPECT_EQ(found[0].options, "rw,relatime,access=client,msize=512000,trans=virtio");
    EXPECT_EQ(found[1].tag, "src.tree");
    EXPECT_EQ(found[1].directory, "/home/me/src");
}

TEST(blocking_share_tags, are_the_shares_qemu_names_among_the_migration_blockers) {
    fake_qmp_server server;
    server.run([](fake_qmp_server& s) {
        s.accept_handshake();
        auto c = s.expect_command("query-migrate");
        s.reply(c.at("id"),
                json::object{{"blocked-reasons",
                              json::array{"Migration is disabled when VirtFS export path "
                                          "'/src' is mounted in the guest using mount_tag "
                                          "'src.tree'",
                                          "non-migratable device: 0000:00:01.2/1/usb-serial"}}});
        c = s.expect_command("query-migrate");
        s.reply(c.at("id"), json::object{});
    });
    qmp::client qmp;
    qmp.adopt(server.take_client_fd());
    EXPECT_EQ(snapshot::detail::blocking_share_tags(qmp, with_shares()),
              std::vector<std::string>{"src.tree"});
    // qemu lists no reasons when nothing blocks.
    EXPECT_TRUE(snapshot::detail::blocking_share_tags(qmp, with_shares()).empty());
    // Without shares, qemu is not even asked (the script expects no third command).
    EXPECT_TRUE(
        snapshot::detail::blocking_share_tags(
            qmp, launcher::load_definition_from_string("name: vm\nkernel: /k\n", "/defs/vm.yaml"))
            .empty());
    server.join();
}

} // namespace
