// virsh's command lines, typed as virsh users type them, against a real qemu and the tiny guest:
// named options (--domain, --name, --snapshotname, --source, --target) and their positional
// forms, snapshot-create without a name, names of digits only, domblklist, help, suspend and
// resume, and the one-line notes for virsh flags that mean nothing here.
//
// One tiny guest ("vt") serves every case; "voff" is defined but never started.

#include "cli_suite.hpp"

#include <qmpkit/launcher/qemu_img.hpp>

#include <boost/json.hpp>
#include <gtest/gtest.h>

#include <algorithm>
#include <ctime>

namespace {

using namespace qmpkit;
namespace json = boost::json;

class virsh_spelling_test : public test::cli_suite {
protected:
    static void SetUpTestSuite() {
        if (!open_suite())
            return;
        auto def = test::write_tiny_guest("vt", scratch());
        auto r = qmpkit({"start", def.string(), "--wait-ready"});
        ASSERT_EQ(r.code, 0) << r.out << r.err;
        test::write_tiny_guest("voff", scratch());
        r = qmpkit({"disk", "create", (scratch() / "voff-system.qcow2").string(), "64M"});
        ASSERT_EQ(r.code, 0) << r.err;
    }

    static void TearDownTestSuite() { close_suite(); }

    // Succeeds, or the test fails showing stderr.
    static std::string ok(std::vector<std::string> args) {
        auto r = qmpkit(args);
        std::string line;
        for (const auto& a : args)
            line += a + " ";
        EXPECT_EQ(r.code, 0) << line << "\n" << r.err;
        return r.out;
    }

    static std::vector<std::string> names(const std::string& vm) {
        std::vector<std::string> all;
        const auto list = json::parse(ok({"--json", "snapshot", "list", vm}));
        for (const auto& s : list.as_array())
            all.emplace_back(s.at("name").as_string());
        return all;
    }

    static std::string state_of(const std::string& vm) {
        auto st = json::parse(ok({"--json", "status", vm})).as_object();
        return std::string(st.at("state").as_string());
    }

    static std::filesystem::path image(const std::string& vm) {
        return scratch() / (vm + "-system.qcow2");
    }

    static std::size_t count(const std::string& text, const std::string& what) {
        std::size_t n = 0;
        for (auto at = text.find(what); at != std::string::npos; at = text.find(what, at + 1))
            ++n;
        return n;
    }
};

TEST_F(virsh_spelling_test, named_options_do_what_the_positional_forms_do) {
    ok({"snapshot-create-as", "--domain", "vt", "--name", "n1", "--description", "one"});
    ok({"snapshot", "create", "--domain", "vt", "n2"}); // the nested spelling, mixed
    ok({"snapshot-create-as", "vt", "n3"});
    EXPECT_EQ(names("vt"), (std::vector<std::string>{"n1", "n2", "n3"}));

    // info, dump, list, parent, current: every form prints the same.
    const auto info = ok({"--json", "snapshot", "info", "vt", "n1"});
    EXPECT_EQ(json::parse(info).at("description").as_string(), "one");
    EXPECT_EQ(ok({"--json", "snapshot-info", "--domain", "vt", "--snapshotname", "n1"}), info);
    EXPECT_EQ(ok({"--json", "snapshot-info", "--domain", "vt", "n1"}), info);
    EXPECT_EQ(ok({"--json", "snapshot", "info", "--snapshotname", "n1", "vt"}), info);
    EXPECT_EQ(ok({"--json", "snapshot-info", "vt", "n1", "--domain", "vt"}), info); // agreeing
    EXPECT_EQ(ok({"snapshot-dumpxml", "--domain", "vt", "--snapshotname", "n1"}),
              ok({"snapshot", "dump", "vt", "n1"}));
    EXPECT_EQ(ok({"--json", "snapshot-list", "--domain", "vt"}),
              ok({"--json", "snapshot", "list", "vt"}));
    // --name: the names alone, one a line, as scripts read virsh's.
    EXPECT_EQ(ok({"snapshot-list", "--domain", "vt", "--name"}), "n1\nn2\nn3\n");
    EXPECT_EQ(ok({"snapshot", "list", "vt", "--name"}), "n1\nn2\nn3\n");
    EXPECT_EQ(ok({"snapshot-parent", "--domain", "vt", "--snapshotname", "n2"}), "n1\n");
    EXPECT_EQ(ok({"snapshot", "parent", "vt", "n2"}), "n1\n");
    EXPECT_EQ(ok({"snapshot-current", "--domain", "vt"}), "n3\n");
    EXPECT_EQ(ok({"--json", "snapshot-info", "--domain", "vt", "--current"}),
              ok({"--json", "snapshot", "info", "vt", "n3"}));

    // revert and delete, named and nested-named.
    ok({"snapshot-revert", "--domain", "vt", "--snapshotname", "n1"});
    EXPECT_EQ(ok({"snapshot", "current", "vt"}), "n1\n");
    ok({"snapshot", "revert", "--domain", "vt", "--snapshotname", "n2"});
    EXPECT_EQ(ok({"snapshot-current", "vt"}), "n2\n");
    ok({"snapshot-delete", "--domain", "vt", "--snapshotname", "n3"});
    ok({"snapshot", "delete", "vt", "--snapshotname", "n2"});
    ok({"snapshot-delete", "--domain", "vt", "n1"});
    EXPECT_TRUE(names("vt").empty());
    EXPECT_EQ(state_of("vt"), "running");
}

TEST_F(virsh_spelling_test, different_values_in_both_forms_are_usage_errors) {
    struct case_t {
        std::vector<std::string> args;
        std::string says;
    };
    const std::vector<case_t> cases{
        {{"snapshot-revert", "vt", "s1", "--domain", "voff"},
         "vm is given twice: as 'vt' and as --domain 'voff'"},
        {{"snapshot", "info", "vt", "s1", "--snapshotname", "s2"},
         "name is given twice: as 's1' and as --snapshotname 's2'"},
        {{"snapshot-create-as", "vt", "a", "--name", "b"}, "name is given twice"},
        {{"detach-disk", "vt", "system", "--target", "other"}, "disk is given twice"},
        {{"attach-disk", "--domain", "vt", "--source", "x.qcow2", "--name", "a", "--target", "b"},
         "name is given twice: as --name 'a' and as --target 'b'"},
        {{"snapshot-info", "--domain", "vt", "s1", "--current"}, "not both"},
        {{"snapshot-delete", "--domain", "vt"}, "name is required"},
    };
    for (const auto& c : cases) {
        auto r = qmpkit(c.args);
        EXPECT_EQ(r.code, 2) << c.args.front() << ": " << r.err;
        EXPECT_NE(r.err.find(c.says), std::string::npos) << r.err;
    }
    EXPECT_EQ(state_of("vt"), "running");
}

TEST_F(virsh_spelling_test, snapshot_create_names_the_snapshot_by_the_time_in_seconds) {
    const auto before = std::time(nullptr);
    auto r = qmpkit({"--json", "snapshot-create", "vt"});
    const auto after = std::time(nullptr);
    ASSERT_EQ(r.code, 0) << r.err;
    const std::string name(json::parse(r.out).at("name").as_string());
    ASSERT_FALSE(name.empty());
    EXPECT_TRUE(std::all_of(name.begin(), name.end(), ::isdigit)) << name;
    EXPECT_GE(std::stoll(name), before);
    EXPECT_LE(std::stoll(name), after);
    EXPECT_EQ(names("vt"), std::vector<std::string>{name});

    // --atomic and --live: what qmpkit does anyway, said in one line each.
    r = qmpkit({"snapshot-create", "--domain", "vt", "--atomic", "--live"});
    ASSERT_EQ(r.code, 0) << r.err;
    EXPECT_EQ(count(r.err, "qmpkit: note: --atomic is the default"), 1u) << r.err;
    EXPECT_EQ(count(r.err, "qmpkit: note: --live "), 1u) << r.err;
    EXPECT_EQ(count(r.err, "\n"), 2u) << r.err;
    const auto two = names("vt");
    ASSERT_EQ(two.size(), 2u);
    // Within the same second the first name is taken: the second gets a prefix.
    EXPECT_TRUE(two[1] != name && (std::all_of(two[1].begin(), two[1].end(), ::isdigit) ||
                                   two[1] == "snapshot-" + name))
        << two[1];

    r = qmpkit({"snapshot-create", "vt", "s.xml"});
    EXPECT_EQ(r.code, 2);
    EXPECT_NE(r.err.find("snapshot-create-as"), std::string::npos) << r.err;
    for (const auto& n : two)
        ok({"snapshot-delete", "vt", n});
}

TEST_F(virsh_spelling_test, a_name_of_digits_works_end_to_end) {
    ok({"snapshot-create-as", "--domain", "vt", "--name", "1462931376"});
    ok({"shell", "vt", "--", "echo after > /mnt/mark; sync"});
    auto info = json::parse(ok({"--json", "snapshot-info", "vt", "1462931376"})).as_object();
    EXPECT_EQ(info.at("name").as_string(), "1462931376");
    EXPECT_EQ(info.at("location").as_string(), "internal");
    ok({"snapshot-revert", "vt", "1462931376"});
    auto r = qmpkit({"shell", "vt", "--", "cat /mnt/mark"});
    EXPECT_NE(r.code, 0) << "the file written after the snapshot survived the revert: " << r.out;
    ok({"snapshot-delete", "vt", "1462931376"});
    EXPECT_TRUE(names("vt").empty());
    for (const auto& s : launcher::qemu_img().snapshot_list(image("vt")))
        EXPECT_NE(s.name, "1462931376");
}

TEST_F(virsh_spelling_test, a_name_that_is_another_snapshots_id_is_refused_before_any_change) {
    ok({"snapshot", "create", "vt", "ida"});
    ok({"snapshot", "create", "vt", "idb"});
    const launcher::qemu_img img;
    const auto before = img.snapshot_list(image("vt"));
    std::string id_of_ida;
    for (const auto& s : before)
        if (s.name == "ida")
            id_of_ida = s.id;
    ASSERT_FALSE(id_of_ida.empty());
    const auto list_before = ok({"--json", "snapshot", "list", "vt"});

    auto r = qmpkit({"snapshot-create-as", "vt", id_of_ida});
    EXPECT_EQ(r.code, 1) << r.err;
    EXPECT_NE(r.err.find("'" + id_of_ida + "' is the id of an existing snapshot in " +
                         image("vt").string() + " (named 'ida')"),
              std::string::npos)
        << r.err;
    EXPECT_EQ(ok({"--json", "snapshot", "list", "vt"}), list_before);
    EXPECT_EQ(img.snapshot_list(image("vt")), before);
    ok({"snapshot", "delete", "vt", "idb"});
    ok({"snapshot", "delete", "vt", "ida"});

    // Offline, through qemu-img: the same refusal, and the image untouched.
    ok({"snapshot-create-as", (scratch() / "voff.yaml").string(), "a"});
    const auto offline = img.snapshot_list(image("voff"));
    ASSERT_EQ(offline.size(), 1u);
    r = qmpkit({"snapshot-create-as", "--domain", "voff", "--name", offline[0].id});
    EXPECT_EQ(r.code, 1) << r.err;
    EXPECT_NE(r.err.find("is the id of an existing snapshot"), std::string::npos) << r.err;
    EXPECT_EQ(img.snapshot_list(image("voff")), offline);
    EXPECT_EQ(names("voff"), std::vector<std::string>{"a"});
}

TEST_F(virsh_spelling_test, domblklist_lists_target_and_source) {
    const auto out = ok({"domblklist", "vt"});
    EXPECT_EQ(out.rfind("Target", 0), 0u) << out;
    EXPECT_NE(out.find("Source"), std::string::npos) << out;
    EXPECT_NE(out.find("system"), std::string::npos) << out;
    EXPECT_NE(out.find(image("vt").string()), std::string::npos) << out;
    auto all = json::parse(ok({"--json", "domblklist", "--domain", "vt"})).as_array();
    ASSERT_EQ(all.size(), 1u);
    EXPECT_EQ(all[0].at("target").as_string(), "system");
    EXPECT_EQ(all[0].at("source").as_string(), image("vt").string());
    auto r = qmpkit({"domblklist", "voff"});
    EXPECT_EQ(r.code, 1);
    EXPECT_NE(r.err.find("'voff'"), std::string::npos) << r.err;
}

TEST_F(virsh_spelling_test, help_prints_a_commands_help) {
    const auto revert = ok({"help", "snapshot-revert"});
    EXPECT_NE(revert.find("--snapshotname"), std::string::npos) << revert;
    EXPECT_EQ(revert, ok({"snapshot-revert", "--help"}));
    EXPECT_EQ(ok({"help", "snapshot", "revert"}), ok({"snapshot", "revert", "--help"}));
    EXPECT_EQ(ok({"help"}), ok({"--help"}));
    auto r = qmpkit({"help", "frobnicate"});
    EXPECT_EQ(r.code, 2);
    EXPECT_NE(r.err.find("unknown command 'frobnicate'"), std::string::npos) << r.err;
}

TEST_F(virsh_spelling_test, suspend_and_resume) {
    ok({"suspend", "vt"});
    EXPECT_EQ(state_of("vt"), "paused");
    auto again = json::parse(ok({"--json", "suspend", "--domain", "vt"})).as_object();
    EXPECT_EQ(again.at("state").as_string(), "paused");
    auto resumed = json::parse(ok({"--json", "resume", "vt"})).as_object();
    EXPECT_EQ(resumed.at("state").as_string(), "running");
    EXPECT_EQ(resumed.at("previous_state").as_string(), "paused");
    EXPECT_EQ(state_of("vt"), "running");
    ok({"shell", "vt", "--", "true"}); // the guest runs again
    for (const char* verb : {"suspend", "resume"}) {
        auto r = qmpkit({verb, "voff"});
        EXPECT_EQ(r.code, 1) << verb;
        EXPECT_NE(r.err.find("'voff'"), std::string::npos) << r.err; // not running, or unknown
    }
}

TEST_F(virsh_spelling_test, attach_and_detach_disk_as_virsh_writes_them) {
    const auto file = scratch() / "extra.qcow2";
    ok({"disk", "create", file.string(), "16M"});
    auto r = qmpkit({"attach-disk", "vt", file.string(), "vdb", "--driver", "qemu", "--subdriver",
                     "qcow2", "--targetbus", "virtio", "--live", "--config", "--persistent"});
    ASSERT_EQ(r.code, 0) << r.err;
    for (const char* flag : {"--driver", "--live", "--config", "--persistent"})
        EXPECT_EQ(count(r.err, std::string("qmpkit: note: ") + flag + " "), 1u) << r.err;
    EXPECT_EQ(count(r.err, "\n"), 4u) << r.err;
    EXPECT_EQ(r.err.find("not expected"), std::string::npos) << r.err;
    EXPECT_NE(ok({"domblklist", "vt"}).find("vdb"), std::string::npos);

    r = qmpkit(
        {"detach-disk", "--domain", "vt", "--target", "vdb", "--live", "--config", "--current"});
    ASSERT_EQ(r.code, 0) << r.err;
    EXPECT_EQ(count(r.err, "qmpkit: note: --config has no meaning here"), 1u) << r.err;
    EXPECT_EQ(count(r.err, "qmpkit: note: --current is the default"), 1u) << r.err;
    EXPECT_EQ(ok({"domblklist", "vt"}).find("vdb"), std::string::npos);

    // The other order of virsh's words: named domain, positional source and target.
    ok({"attach-disk", "--domain", "vt", file.string(), "vdc", "--mode", "readonly"});
    auto disks = json::parse(ok({"--json", "disks", "vt"})).as_array();
    bool found = false;
    for (const auto& d : disks)
        if (d.at("disk").as_string() == "vdc") {
            found = true;
            EXPECT_TRUE(d.at("read_only").as_bool());
        }
    EXPECT_TRUE(found);
    ok({"detach-disk", "vt", "vdc"});
}

} // namespace
