#include <qmpkit/snapshot/error.hpp>
#include <qmpkit/snapshot/snapshot_record.hpp>

#include <boost/json.hpp>
#include <gtest/gtest.h>

#include <string>

namespace qmpkit::snapshot {
namespace {

namespace json = boost::json;

snapshot_record full_record() {
    snapshot_record r;
    r.name = "before upgrade ✓";
    r.description = "line one\nline \"two\"";
    r.created_at = 1'700'000'000;
    r.state = vm_state::paused;
    r.location = snapshot_location::external;
    r.memory = true;
    r.memory_file = "/var/lib/qmpkit/vm/mem 1.bin";
    r.quiesced = true;
    r.parent = "base";
    r.disks = {
        {"root", disk_snapshot::mode::external, "/img/root.qcow2", "/img/root.s1.qcow2", "ov-root"},
        {"cdrom", disk_snapshot::mode::excluded, "/iso/boot.iso", "", ""},
    };
    r.definition = "name: vm\ncpus: 2\n";
    return r;
}

TEST(snapshot_record, enums_round_trip_through_their_spelling) {
    for (auto v : {vm_state::running, vm_state::paused, vm_state::shutoff})
        EXPECT_EQ(vm_state_from_string(to_string(v)), v);
    for (auto v : {snapshot_location::internal, snapshot_location::external})
        EXPECT_EQ(snapshot_location_from_string(to_string(v)), v);
    using m = disk_snapshot::mode;
    for (auto v : {m::internal, m::external, m::excluded})
        EXPECT_EQ(disk_snapshot_mode_from_string(to_string(v)), v);
    EXPECT_EQ(to_string(vm_state::shutoff), "shutoff");
    EXPECT_FALSE(vm_state_from_string("Running"));
    EXPECT_FALSE(snapshot_location_from_string(""));
    EXPECT_FALSE(disk_snapshot_mode_from_string("internal "));
}

struct name_case {
    std::string name;
    const char* problem; // nullptr: valid
};

TEST(snapshot_name, validation_table) {
    const name_case cases[] = {
        {"", "is empty"},
        {"../x", "contains '/'"},
        {"a/b", "contains '/'"},
        {std::string(10 * 1024, 'a'), "is 10240 bytes long; at most 128"},
        {std::string(128, 'a'), nullptr},
        {std::string(129, 'a'), "is 129 bytes long"},
        {"\n", "control character U+000A"},
        {"a\tb", "control character U+0009 (at byte 1)"},
        {"x\x7f", "control character U+007F"},
        {"x\xc2\x85", "control character U+0085"},     // NEL
        {"x\xe2\x80\xae", "control character U+202E"}, // right-to-left override
        {std::string("a\0b", 3), "contains a NUL byte"},
        {"-x", "starts with '-'"},
        {".", "which names a directory"},
        {"..", "which names a directory"},
        {"42", nullptr}, // virsh's default names are digits; see shadowing_snapshot
        {"1462931376", nullptr},
        {"\xff", "not valid UTF-8 (at byte 0)"},
        {"ab\xc0\xaf", "not valid UTF-8 (at byte 2)"}, // overlong '/'
        {"\xed\xa0\x80", "not valid UTF-8"},           // surrogate
        {"ok name ✓", nullptr},
        {"$(rm -rf)", nullptr},
        {"`id`; echo |&<>'\"*?", nullptr},
        {"スナップショット", nullptr},
        {"🚀 launch", nullptr},
        {"x-", nullptr},
        {"v1.0", nullptr},
        {"42a", nullptr},
        {".hidden", nullptr},
        {"a..b", nullptr},
    };
    for (const auto& c : cases) {
        SCOPED_TRACE(c.name.size() > 40 ? c.name.substr(0, 40) + "..." : c.name);
        const auto problem = snapshot_name_problem(c.name);
        if (!c.problem) {
            EXPECT_FALSE(problem) << *problem;
            EXPECT_TRUE(is_valid_snapshot_name(c.name));
            EXPECT_NO_THROW(require_valid_snapshot_name(c.name));
        } else {
            ASSERT_TRUE(problem);
            EXPECT_NE(problem->find(c.problem), std::string::npos) << *problem;
            EXPECT_FALSE(is_valid_snapshot_name(c.name));
        }
    }
}

TEST(snapshot_name, a_digits_name_is_shadowed_only_by_another_snapshots_id) {
    using launcher::image_snapshot;
    const std::vector<image_snapshot> image{{.id = "1", .name = "a"},
                                            {.id = "2", .name = "b"},
                                            {.id = "3", .name = "3"},
                                            {.id = "4", .name = "17"}};
    ASSERT_TRUE(shadowing_snapshot(image, "1"));
    EXPECT_EQ(shadowing_snapshot(image, "1")->name, "a");
    EXPECT_EQ(shadowing_snapshot(image, "2")->name, "b");
    EXPECT_FALSE(shadowing_snapshot(image, "3")); // its own id
    EXPECT_FALSE(shadowing_snapshot(image, "17"));
    EXPECT_FALSE(shadowing_snapshot(image, "a"));
    EXPECT_FALSE(shadowing_snapshot({}, "1"));
}

TEST(snapshot_name, error_quotes_the_name_escaped_and_shortened) {
    try {
        require_valid_snapshot_name("bad\nname\x1b[2J");
        FAIL() << "no error";
    } catch (const error& e) {
        EXPECT_EQ(e.kind(), error_kind::invalid_name);
        EXPECT_STREQ(e.what(), "invalid snapshot name \"bad\\nname\\x1b[2J\": it contains the "
                               "control character U+000A (at byte 3)");
    }
    try {
        require_valid_snapshot_name(std::string(10 * 1024, 'a'));
        FAIL() << "no error";
    } catch (const error& e) {
        EXPECT_LT(std::string(e.what()).size(), 200u) << e.what();
        EXPECT_NE(std::string(e.what()).find("...\": it is 10240 bytes long"), std::string::npos);
    }
}

TEST(snapshot_record, json_round_trip_is_exact) {
    const auto r = full_record();
    const auto text = json::serialize(to_json(r));
    EXPECT_EQ(record_from_json(json::parse(text)), r);

    snapshot_record minimal;
    minimal.name = "m";
    EXPECT_EQ(record_from_json(to_json(minimal)), minimal);
    EXPECT_TRUE(to_json(minimal).at("parent").is_null());
}

TEST(snapshot_record, json_leaves_out_nothing) {
    const auto o = to_json(full_record());
    for (const char* key : {"name", "description", "created_at", "state", "location", "memory",
                            "memory_file", "quiesced", "parent", "disks", "definition"})
        EXPECT_TRUE(o.contains(key)) << key;
    EXPECT_EQ(o.at("state"), "paused");
    EXPECT_EQ(o.at("disks").at(0).at("mode"), "external");
}

std::string corrupt_message(json::object o) {
    try {
        record_from_json(o, "snapshots[3]");
    } catch (const error& e) {
        EXPECT_EQ(e.kind(), error_kind::metadata_corrupt);
        return e.what();
    }
    ADD_FAILURE() << "no error";
    return {};
}

TEST(snapshot_record, json_errors_name_the_field) {
    const auto good = to_json(full_record());

    auto o = good;
    o.erase("name");
    EXPECT_EQ(corrupt_message(o), "snapshots[3].name: missing");

    o = good;
    o["created_at"] = "yesterday";
    EXPECT_EQ(corrupt_message(o), "snapshots[3].created_at: expected an integer, got a string "
                                  "(snapshot \"before upgrade ✓\")");

    o = good;
    o["state"] = "crashed";
    EXPECT_EQ(corrupt_message(o),
              "snapshots[3].state: unknown value \"crashed\" (expected running, paused or "
              "shutoff) (snapshot \"before upgrade ✓\")");

    o = good;
    o["disks"].as_array()[1].as_object()["mode"] = 7;
    EXPECT_EQ(corrupt_message(o), "snapshots[3].disks[1].mode: expected a string, got a number "
                                  "(snapshot \"before upgrade ✓\")");

    o = good;
    o["disks"].as_array()[1].as_object()["disk"] = "root";
    EXPECT_EQ(corrupt_message(o), "snapshots[3].disks[1]: disk \"root\" appears twice "
                                  "(snapshot \"before upgrade ✓\")");

    o = good;
    o["name"] = "a/b";
    EXPECT_EQ(corrupt_message(o), "snapshots[3].name: \"a/b\" contains '/'");

    o = good;
    o["colour"] = "blue";
    EXPECT_EQ(corrupt_message(o),
              "snapshots[3].colour: unknown field (written by a newer qmpkit, or edited by hand) "
              "(snapshot \"before upgrade ✓\")");

    o = good;
    o["parent"] = o["name"];
    EXPECT_NE(corrupt_message(o).find("its own parent"), std::string::npos);

    o = good;
    o["memory"] = 1;
    EXPECT_NE(corrupt_message(o).find("memory: expected true or false, got a number"),
              std::string::npos);

    try {
        record_from_json(json::value("x"), "snapshots[0]");
        FAIL() << "no error";
    } catch (const error& e) {
        EXPECT_STREQ(e.what(), "snapshots[0]: expected an object, got a string");
    }
}

} // namespace
} // namespace qmpkit::snapshot
