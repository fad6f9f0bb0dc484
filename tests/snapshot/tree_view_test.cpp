#include <qmpkit/snapshot/error.hpp>
#include <qmpkit/snapshot/tree_view.hpp>

#include <boost/json.hpp>
#include <gtest/gtest.h>
#include <yaml-cpp/yaml.h>

#include <cstdlib>
#include <ctime>
#include <optional>
#include <string>

namespace qmpkit::snapshot {
namespace {

namespace json = boost::json;

constexpr std::int64_t t0 = 1'700'000'000; // 2023-11-14 22:13:20 UTC

snapshot_record record(std::string name, std::int64_t created_at,
                       std::optional<std::string> parent = std::nullopt,
                       vm_state state = vm_state::running,
                       snapshot_location location = snapshot_location::internal) {
    snapshot_record r;
    r.name = std::move(name);
    r.created_at = created_at;
    r.parent = std::move(parent);
    r.state = state;
    r.location = location;
    return r;
}

// s1 -> s2 -> s3, s1 -> s4; s3 current.
snapshot_tree example() {
    snapshot_tree t;
    t.add(record("s1", t0, std::nullopt, vm_state::running));
    t.add(record("s2", t0 + 60, "s1", vm_state::shutoff));
    auto s3 = record("s3", t0 + 120, "s2", vm_state::paused, snapshot_location::external);
    s3.memory = true;
    s3.memory_file = "/vm/mem.bin";
    s3.description = "before the upgrade\n(second line)";
    s3.disks = {
        {"root", disk_snapshot::mode::external, "/img/root.qcow2", "/img/root.s3.qcow2", "ov-root"},
        {"data", disk_snapshot::mode::excluded, "/img/data.raw", "", ""}};
    s3.definition = "name: web\ncpus: 2\n";
    t.add(s3);
    t.add(record("s4", t0 + 180, "s1", vm_state::running, snapshot_location::external));
    t.set_current("s3");
    return t;
}

// Time formatting in UTC whatever the machine's zone.
class tree_view : public ::testing::Test {
protected:
    void SetUp() override {
        if (const char* tz = std::getenv("TZ"))
            saved_ = tz;
        ::setenv("TZ", "UTC", 1);
        ::tzset();
    }
    void TearDown() override {
        if (saved_)
            ::setenv("TZ", saved_->c_str(), 1);
        else
            ::unsetenv("TZ");
        ::tzset();
    }

private:
    std::optional<std::string> saved_;
};

TEST_F(tree_view, local_time_format) {
    EXPECT_EQ(format_local_time(0), "1970-01-01 00:00:00 +0000");
    EXPECT_EQ(format_local_time(t0), "2023-11-14 22:13:20 +0000");
    ::setenv("TZ", "CET-1", 1);
    ::tzset();
    EXPECT_EQ(format_local_time(t0), "2023-11-14 23:13:20 +0100");
}

TEST_F(tree_view, tree_like_virsh) {
    EXPECT_EQ(render_tree(example()), "s1\n"
                                      "  |\n"
                                      "  +- s2\n"
                                      "  |   |\n"
                                      "  |   +- s3 *\n"
                                      "  |\n"
                                      "  +- s4\n");
}

TEST_F(tree_view, tree_with_several_roots_and_deeper_branches) {
    snapshot_tree t;
    t.add(record("a", 1));
    t.add(record("b", 2, "a"));
    t.add(record("c", 3));
    t.add(record("d", 4, "c"));
    t.add(record("e", 6, "c"));
    t.add(record("f", 5, "d"));
    EXPECT_EQ(render_tree(t), "a\n"
                              "  |\n"
                              "  +- b\n"
                              "\n"
                              "c\n"
                              "  |\n"
                              "  +- d\n"
                              "  |   |\n"
                              "  |   +- f\n"
                              "  |\n"
                              "  +- e\n");
}

TEST_F(tree_view, tree_edge_cases) {
    EXPECT_EQ(render_tree(snapshot_tree{}), "");
    snapshot_tree t;
    t.add(record("solo", 1));
    t.set_current("solo");
    EXPECT_EQ(render_tree(t), "solo *\n");
}

TEST_F(tree_view, list_like_virsh) {
    EXPECT_EQ(render_list(example()), " Name   Creation Time               State     Location\n"
                                      "--------------------------------------------------------\n"
                                      " s1     2023-11-14 22:13:20 +0000   running   internal\n"
                                      " s2     2023-11-14 22:14:20 +0000   shutoff   internal\n"
                                      " s3 *   2023-11-14 22:15:20 +0000   paused    external\n"
                                      " s4     2023-11-14 22:16:20 +0000   running   external\n");
}

TEST_F(tree_view, list_with_parent_column_and_no_marker) {
    list_options o;
    o.parent_column = true;
    o.mark_current = false;
    EXPECT_EQ(render_list(example(), o),
              " Name   Creation Time               State     Location   Parent\n"
              "-----------------------------------------------------------------\n"
              " s1     2023-11-14 22:13:20 +0000   running   internal\n"
              " s2     2023-11-14 22:14:20 +0000   shutoff   internal   s1\n"
              " s3     2023-11-14 22:15:20 +0000   paused    external   s2\n"
              " s4     2023-11-14 22:16:20 +0000   running   external   s1\n");
}

// virsh snapshot-list --name: the names, one a line, in creation order, filters applied; no
// header, no marker.
TEST_F(tree_view, list_of_names_only) {
    list_options o;
    o.names_only = true;
    EXPECT_EQ(render_list(example(), o), "s1\ns2\ns3\ns4\n");
    o.location = snapshot_location::external;
    EXPECT_EQ(render_list(example(), o), "s3\ns4\n");
    EXPECT_EQ(render_list(snapshot_tree{}, o), "");
}

std::vector<std::string> listed(const snapshot_tree& t, const list_options& o) {
    std::vector<std::string> names;
    const auto text = render_list(t, o, [](std::int64_t s) { return std::to_string(s); });
    std::size_t pos = text.find('\n', text.find('\n') + 1) + 1; // past header and rule
    while (pos < text.size()) {
        const auto end = text.find('\n', pos);
        const auto line = text.substr(pos + 1, end - pos - 1);
        names.push_back(line.substr(0, line.find("  ")));
        pos = end + 1;
    }
    return names;
}

TEST_F(tree_view, list_filters) {
    const auto t = example();
    using v = std::vector<std::string>;
    list_options o;
    o.roots = true;
    EXPECT_EQ(listed(t, o), v{"s1"});
    o = {};
    o.leaves = true;
    EXPECT_EQ(listed(t, o), (v{"s3 *", "s4"}));
    o = {};
    o.location = snapshot_location::internal;
    EXPECT_EQ(listed(t, o), (v{"s1", "s2"}));
    o = {};
    o.location = snapshot_location::external;
    EXPECT_EQ(listed(t, o), (v{"s3 *", "s4"}));
    o = {};
    o.current_only = true;
    EXPECT_EQ(listed(t, o), v{"s3 *"});
    o = {};
    o.roots = true;
    o.leaves = true;
    EXPECT_EQ(listed(t, o), v{});
    o.roots = false;
    o.location = snapshot_location::internal;
    EXPECT_EQ(listed(t, o), v{}) << "s2 has a child";
}

TEST_F(tree_view, empty_list_has_header_and_rule) {
    EXPECT_EQ(render_list(snapshot_tree{}), " Name   Creation Time   State   Location\n"
                                            "------------------------------------------\n");
}

TEST_F(tree_view, list_aligns_wide_characters_and_prints_shell_text_as_is) {
    snapshot_tree t;
    t.add(record("日本", t0));
    t.add(record("$(rm -rf)", t0 + 1));
    t.add(record("ok ✓", t0 + 2));
    EXPECT_EQ(render_list(t, {}, [](std::int64_t) { return "T"; }),
              " Name        Creation Time   State     Location\n"
              "-------------------------------------------------\n"
              " 日本        T               running   internal\n"
              " $(rm -rf)   T               running   internal\n"
              " ok ✓        T               running   internal\n");
}

TEST_F(tree_view, info_like_virsh_and_more) {
    EXPECT_EQ(render_info(example(), "s3", "web"), "Name:           s3\n"
                                                   "Domain:         web\n"
                                                   "Current:        yes\n"
                                                   "State:          paused\n"
                                                   "Location:       external\n"
                                                   "Parent:         s2\n"
                                                   "Children:       0\n"
                                                   "Descendants:    0\n"
                                                   "Metadata:       yes\n"
                                                   "Creation Time:  2023-11-14 22:15:20 +0000\n"
                                                   "Memory:         yes\n"
                                                   "Memory File:    /vm/mem.bin\n"
                                                   "Quiesced:       no\n"
                                                   "Disks:          root  external  "
                                                   "/img/root.qcow2  overlay /img/root.s3.qcow2\n"
                                                   "                data  excluded  /img/data.raw\n"
                                                   "Description:    before the upgrade\\n(second "
                                                   "line)\n");
    EXPECT_EQ(render_info(example(), "s1", "web"), "Name:           s1\n"
                                                   "Domain:         web\n"
                                                   "Current:        no\n"
                                                   "State:          running\n"
                                                   "Location:       internal\n"
                                                   "Parent:         -\n"
                                                   "Children:       2\n"
                                                   "Descendants:    3\n"
                                                   "Metadata:       yes\n"
                                                   "Creation Time:  2023-11-14 22:13:20 +0000\n"
                                                   "Memory:         no\n"
                                                   "Quiesced:       no\n"
                                                   "Disks:          -\n"
                                                   "Description:    -\n");
    EXPECT_THROW(render_info(example(), "nope", "web"), error);
}

TEST_F(tree_view, terminal_control_sequences_are_escaped) {
    snapshot_tree t;
    auto r = record("x", t0);
    r.description = "\x1b[2J\x1b]0;owned\x07 \xe2\x80\xae evil";
    r.disks = {{"root", disk_snapshot::mode::internal, "/img/a\nb.qcow2", "", ""}};
    t.add(r);
    const auto info = render_info(t, "x", "vm\x1b");
    EXPECT_EQ(info.find('\x1b'), std::string::npos);
    EXPECT_EQ(info.find('\x07'), std::string::npos);
    EXPECT_EQ(info.find("\xe2\x80\xae"), std::string::npos);
    EXPECT_NE(info.find("Description:    \\x1b[2J\\x1b]0;owned\\x07 \\u202e evil\n"),
              std::string::npos)
        << info;
    EXPECT_NE(info.find("/img/a\\nb.qcow2"), std::string::npos) << info;
    EXPECT_NE(info.find("Domain:         vm\\x1b\n"), std::string::npos) << info;
}

TEST_F(tree_view, json_list_has_current_flags_and_no_definitions) {
    const auto v = to_json(example());
    const auto& a = v.as_array();
    ASSERT_EQ(a.size(), 4u);
    EXPECT_EQ(a[0].at("name"), "s1");
    EXPECT_EQ(a[0].at("current"), false);
    EXPECT_EQ(a[0].at("children"), 2);
    EXPECT_TRUE(a[0].at("parent").is_null());
    EXPECT_EQ(a[2].at("name"), "s3");
    EXPECT_EQ(a[2].at("current"), true);
    EXPECT_EQ(a[2].at("parent"), "s2");
    EXPECT_EQ(a[2].at("location"), "external");
    EXPECT_EQ(a[2].at("disks").as_array().size(), 2u);
    EXPECT_FALSE(a[2].as_object().contains("definition"));
}

TEST_F(tree_view, yaml_dump_reads_back) {
    const auto t = example();
    auto r = t.at("s3");
    r.name = "$(rm -rf) ✓: yes";
    const auto text = to_yaml(r);
    const auto y = YAML::Load(text);
    EXPECT_EQ(y["name"].as<std::string>(), r.name);
    EXPECT_EQ(y["description"].as<std::string>(), r.description);
    EXPECT_EQ(y["created_at"].as<std::int64_t>(), r.created_at);
    EXPECT_EQ(y["state"].as<std::string>(), "paused");
    EXPECT_EQ(y["location"].as<std::string>(), "external");
    EXPECT_TRUE(y["memory"].as<bool>());
    EXPECT_EQ(y["parent"].as<std::string>(), "s2");
    EXPECT_EQ(y["disks"][0]["overlay"].as<std::string>(), "/img/root.s3.qcow2");
    EXPECT_EQ(y["disks"][1]["mode"].as<std::string>(), "excluded");
    EXPECT_EQ(y["definition"].as<std::string>(), r.definition);
    EXPECT_NE(text.find("definition: |\n  name: web\n  cpus: 2\n"), std::string::npos) << text;

    EXPECT_TRUE(YAML::Load(to_yaml(t.at("s1")))["parent"].IsNull());
}

} // namespace
} // namespace qmpkit::snapshot
