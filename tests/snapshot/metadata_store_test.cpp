#include <qmpkit/launcher/definition_loader.hpp>
#include <qmpkit/snapshot/error.hpp>
#include <qmpkit/snapshot/metadata_store.hpp>

#include <boost/json.hpp>
#include <gtest/gtest.h>

#include <fstream>
#include <random>
#include <sys/stat.h>
#include <unistd.h>

namespace qmpkit::snapshot {
namespace {

namespace fs = std::filesystem;
namespace json = boost::json;

class temp_dir {
public:
    temp_dir() {
        std::random_device rd;
        path_ = fs::temp_directory_path() / ("qmpkit-snapshot-test-" + std::to_string(rd()));
        fs::create_directories(path_);
    }
    ~temp_dir() {
        std::error_code ec;
        fs::permissions(path_, fs::perms::owner_all, ec);
        fs::remove_all(path_, ec);
    }
    const fs::path& path() const { return path_; }

private:
    fs::path path_;
};

void write(const fs::path& file, std::string_view text) {
    std::ofstream(file, std::ios::binary) << text;
}

std::string read(const fs::path& file) {
    std::ifstream in(file, std::ios::binary);
    return {std::istreambuf_iterator<char>(in), {}};
}

std::string long_description() {
    std::string d;
    while (d.size() < 10 * 1024)
        d += "Zeile mit Ümlauten, \"quotes\", \\backslashes\\, tabs\tand ✓ marks; ";
    return d + "\nlast line\n";
}

std::string sample_definition() {
    launcher::vm_definition def;
    def.name = "web server";
    def.disks.push_back({.name = "root", .file = "/var/lib/vms/web server/root disk.qcow2"});
    return launcher::dump_definition(def);
}

snapshot_tree sample_tree() {
    snapshot_tree t;
    snapshot_record base;
    base.name = "base";
    base.created_at = 1'700'000'000;
    base.state = vm_state::shutoff;
    base.definition = sample_definition();
    base.disks = {{"root", disk_snapshot::mode::internal, "/var/lib/vms/web server/root disk.qcow2",
                   "", "root"}};
    t.add(base);

    snapshot_record u;
    u.name = "vor dem Update ✓ 日本";
    u.description = long_description();
    u.created_at = 1'700'000'100;
    u.state = vm_state::running;
    u.location = snapshot_location::external;
    u.memory = true;
    u.memory_file = "/var/lib/vms/web server/memory \"1\".bin";
    u.quiesced = true;
    u.parent = "base";
    u.definition = sample_definition();
    u.disks = {{"root", disk_snapshot::mode::external, "/var/lib/vms/web server/root disk.qcow2",
                "/var/lib/vms/web server/root disk.vor dem Update.qcow2", "overlay-root-1"},
               {"scratch", disk_snapshot::mode::excluded, "/tmp/scratch.raw", "", ""}};
    t.add(u);

    snapshot_record shell;
    shell.name = "$(rm -rf ~) `id` ; | &";
    shell.created_at = 1'700'000'100; // same second as its sibling
    shell.parent = "base";
    t.add(shell);

    t.set_current("vor dem Update ✓ 日本");
    return t;
}

TEST(metadata_store, missing_file_is_an_empty_tree) {
    temp_dir dir;
    const metadata_store store(dir.path() / "snapshots.json");
    const auto t = store.load();
    EXPECT_TRUE(t.empty());
    EXPECT_FALSE(t.current());
}

TEST(metadata_store, lives_in_the_state_directory) {
    const launcher::state_directory sd("/var/lib/qmpkit", "vm1");
    EXPECT_EQ(metadata_store(sd).path(), fs::path("/var/lib/qmpkit/vm1/snapshots.json"));
}

TEST(metadata_store, round_trip_is_exact) {
    temp_dir dir;
    const metadata_store store(dir.path() / "snapshots.json");
    const auto tree = sample_tree();
    store.save(tree);
    const auto loaded = store.load();
    EXPECT_EQ(loaded, tree);
    EXPECT_EQ(loaded.at("vor dem Update ✓ 日本").description.size(),
              tree.at("vor dem Update ✓ 日本").description.size());
    // The embedded definition still loads as a definition.
    const auto def =
        launcher::load_definition_from_string(loaded.at("base").definition, dir.path() / "vm.yaml");
    EXPECT_EQ(def.name, "web server");
    // Saving what was loaded writes the same bytes.
    const auto first = read(store.path());
    store.save(loaded);
    EXPECT_EQ(read(store.path()), first);
}

TEST(metadata_store, file_is_versioned_readable_json) {
    const auto text = metadata_store::serialize(sample_tree());
    const auto doc = json::parse(text).as_object();
    EXPECT_EQ(doc.at("format"), "qmpkit-snapshots");
    EXPECT_EQ(doc.at("version"), 1);
    EXPECT_TRUE(doc.at("written_by").as_string().starts_with("qmpkit "));
    EXPECT_EQ(doc.at("current"), "vor dem Update ✓ 日本");
    EXPECT_EQ(doc.at("snapshots").as_array().size(), 3u);
    EXPECT_NE(text.find("\n  \"snapshots\": [\n"), std::string::npos) << "indented";

    snapshot_tree empty;
    const auto e = json::parse(metadata_store::serialize(empty)).as_object();
    EXPECT_TRUE(e.at("current").is_null());
    EXPECT_TRUE(e.at("snapshots").as_array().empty());
}

TEST(metadata_store, paths_that_are_not_utf8_survive) {
    snapshot_tree t;
    snapshot_record r;
    r.name = "latin1";
    r.disks = {{"root", disk_snapshot::mode::internal, "/img/caf\xe9.qcow2", "", ""}};
    t.add(r);
    const auto loaded = metadata_store::parse(metadata_store::serialize(t), "x.json");
    EXPECT_EQ(loaded.at("latin1").disks.at(0).image, fs::path("/img/caf\xe9.qcow2"));
}

TEST(metadata_store, a_child_listed_before_its_parent_loads) {
    // A clock set back gives a child an earlier time, so the file lists it first.
    snapshot_tree t;
    snapshot_record p;
    p.name = "parent";
    p.created_at = 100;
    t.add(p);
    snapshot_record c;
    c.name = "child";
    c.created_at = 50;
    c.parent = "parent";
    t.add(c);
    t.set_current("child");
    const auto text = metadata_store::serialize(t);
    ASSERT_LT(text.find("\"child\""), text.find("\"parent\": null"));
    EXPECT_EQ(metadata_store::parse(text, "x.json"), t);
}

TEST(metadata_store, save_is_atomic_and_private) {
    temp_dir dir;
    const metadata_store store(dir.path() / "snapshots.json");
    store.save(sample_tree());
    auto t = sample_tree();
    t.remove("base");
    store.save(t);
    std::vector<std::string> files;
    for (const auto& e : fs::directory_iterator(dir.path()))
        files.push_back(e.path().filename().string());
    EXPECT_EQ(files, std::vector<std::string>{"snapshots.json"}) << "no temporary file left";
    struct stat st {};
    ASSERT_EQ(::stat(store.path().c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 0777, 0600u);
    EXPECT_EQ(store.load(), t);
}

TEST(metadata_store, save_into_a_missing_directory_fails_with_io) {
    temp_dir dir;
    const metadata_store store(dir.path() / "gone" / "snapshots.json");
    try {
        store.save(sample_tree());
        FAIL() << "no error";
    } catch (const error& e) {
        EXPECT_EQ(e.kind(), error_kind::metadata_io);
        EXPECT_NE(std::string(e.what()).find("snapshots.json"), std::string::npos) << e.what();
    }
}

TEST(metadata_store, a_directory_in_its_place_fails_with_io) {
    temp_dir dir;
    const metadata_store store(dir.path() / "snapshots.json");
    fs::create_directory(store.path());
    try {
        store.load();
        FAIL() << "no error";
    } catch (const error& e) {
        EXPECT_EQ(e.kind(), error_kind::metadata_io);
        EXPECT_NE(std::string(e.what()).find("is not a regular file"), std::string::npos);
    }
    EXPECT_THROW(store.save(sample_tree()), error);
}

TEST(metadata_store, unreadable_file_fails_with_io) {
    if (::geteuid() == 0)
        GTEST_SKIP() << "root reads files regardless of their mode";
    temp_dir dir;
    const metadata_store store(dir.path() / "snapshots.json");
    store.save(sample_tree());
    fs::permissions(store.path(), fs::perms::none);
    try {
        store.load();
        FAIL() << "no error";
    } catch (const error& e) {
        EXPECT_EQ(e.kind(), error_kind::metadata_io);
    }
}

struct corrupt_case {
    const char* label;
    std::string text;
    const char* expected; // part of the message
};

std::string valid_text() {
    return metadata_store::serialize(sample_tree());
}

std::string edited(const std::function<void(json::object&)>& edit) {
    auto doc = json::parse(valid_text()).as_object();
    edit(doc);
    return json::serialize(doc);
}

json::object& snapshot_at(json::object& doc, std::size_t i) {
    return doc["snapshots"].as_array()[i].as_object();
}

TEST(metadata_store, corrupt_files_are_refused_naming_file_and_problem) {
    const auto valid = valid_text();
    const corrupt_case cases[] = {
        {"truncated", valid.substr(0, valid.size() / 2), "not valid JSON"},
        {"empty", "", "the file is empty"},
        {"blank", "  \n", "the file is empty"},
        {"array", "[]", "not a JSON object"},
        {"other format", R"({"format":"libvirt","version":1,"snapshots":[]})",
         "not a qmpkit snapshot metadata file"},
        {"no format", R"({"version":1,"snapshots":[]})", "not a qmpkit snapshot metadata file"},
        {"version as text", R"({"format":"qmpkit-snapshots","version":"1","snapshots":[]})",
         "\"version\" is missing or not a positive integer"},
        {"version 0", R"({"format":"qmpkit-snapshots","version":0,"snapshots":[]})",
         "\"version\" is missing or not a positive integer"},
        {"no snapshots", R"({"format":"qmpkit-snapshots","version":1})",
         "\"snapshots\" is missing or not an array"},
        {"unknown top-level field",
         R"({"format":"qmpkit-snapshots","version":1,"snapshots":[],"extra":1})",
         "unknown field \"extra\""},
        {"wrong type", edited([](auto& d) { snapshot_at(d, 0)["created_at"] = "noon"; }),
         "snapshots[0].created_at: expected an integer, got a string"},
        {"missing name", edited([](auto& d) { snapshot_at(d, 1).erase("name"); }),
         "snapshots[1].name: missing"},
        {"bad disk mode", edited([](auto& d) {
             snapshot_at(d, 2)["disks"].as_array()[0].as_object()["mode"] = "sideways";
         }),
         "snapshots[2].disks[0].mode: unknown value \"sideways\""},
        {"duplicate names",
         edited([](auto& d) { snapshot_at(d, 2)["name"] = snapshot_at(d, 1)["name"]; }),
         "appears twice"},
        {"missing parent", edited([](auto& d) { snapshot_at(d, 1)["parent"] = "ghost"; }),
         "the parent \"ghost\" of snapshot"},
        {"cycle", edited([](auto& d) { snapshot_at(d, 0)["parent"] = snapshot_at(d, 1)["name"]; }),
         "the parents form a cycle"},
        {"unknown current", edited([](auto& d) { d["current"] = "ghost"; }),
         "the current snapshot \"ghost\" does not exist"},
        {"current of wrong type", edited([](auto& d) { d["current"] = 3; }),
         "\"current\" is neither a snapshot name nor null"},
        {"invalid name", edited([](auto& d) { snapshot_at(d, 2)["name"] = "../../etc"; }),
         "contains '/'"},
    };
    temp_dir dir;
    const auto file = dir.path() / "snapshots.json";
    for (const auto& c : cases) {
        SCOPED_TRACE(c.label);
        write(file, c.text);
        try {
            metadata_store(file).load();
            ADD_FAILURE() << "no error";
        } catch (const error& e) {
            const std::string message = e.what();
            EXPECT_EQ(e.kind(), error_kind::metadata_corrupt) << message;
            EXPECT_NE(message.find("snapshot metadata " + file.string() + " is corrupt: "),
                      std::string::npos)
                << message;
            EXPECT_NE(message.find(c.expected), std::string::npos) << message;
        }
    }
}

TEST(metadata_store, newer_version_is_refused_not_misread) {
    temp_dir dir;
    const auto file = dir.path() / "snapshots.json";
    // Fields this qmpkit does not know must not matter: the version is checked first.
    write(file, R"({"format":"qmpkit-snapshots","version":2,"written_by":"qmpkit 0.9.0",
                    "snapshots":{"new":"layout"},"tags":[]})");
    try {
        metadata_store(file).load();
        FAIL() << "no error";
    } catch (const error& e) {
        EXPECT_EQ(e.kind(), error_kind::metadata_too_new);
        const std::string m = e.what();
        EXPECT_NE(m.find(file.string()), std::string::npos) << m;
        EXPECT_NE(m.find("format version 2, written by qmpkit 0.9.0"), std::string::npos) << m;
        EXPECT_NE(m.find("reads version 1 only: use qmpkit 0.9.0 or newer"), std::string::npos)
            << m;
    }

    write(file, R"({"format":"qmpkit-snapshots","version":18446744073709551615})");
    try {
        metadata_store(file).load();
        FAIL() << "no error";
    } catch (const error& e) {
        EXPECT_EQ(e.kind(), error_kind::metadata_too_new);
        EXPECT_NE(std::string(e.what()).find("use a newer qmpkit"), std::string::npos) << e.what();
    }
}

} // namespace
} // namespace qmpkit::snapshot
