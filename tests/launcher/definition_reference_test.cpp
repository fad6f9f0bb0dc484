// configs/README.md documents each mapping of a definition with a table printed from the schema
// that the loader, the validator and dump_definition use (definition_reference). A table there
// follows a line `<!-- fields: SECTION -->`; this test keeps each equal to the schema's.
// QMPKIT_UPDATE_README=1 writes the schema's tables into the README instead of failing.

#include "test_support.hpp"

#include <qmpkit/launcher/definition_reference.hpp>

#include <boost/json.hpp>
#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>
#include <functional>
#include <sstream>

namespace qmpkit::launcher::test {
namespace {

std::string marker(const std::string& section) {
    return "<!-- fields: " + (section.empty() ? std::string("(top level)") : section) + " -->\n";
}

// The table after the marker: the lines from the next one to the first that is not a table row.
struct table_span {
    std::size_t begin = std::string::npos;
    std::size_t end = std::string::npos;
};

table_span find_table(const std::string& text, const std::string& section) {
    const auto at = text.find(marker(section));
    if (at == std::string::npos)
        return {};
    table_span span;
    span.begin = at + marker(section).size();
    span.end = span.begin;
    while (span.end < text.size() && text[span.end] == '|') {
        const auto newline = text.find('\n', span.end);
        span.end = newline == std::string::npos ? text.size() : newline + 1;
    }
    return span;
}

TEST(definition_reference, the_readme_has_the_schemas_tables) {
    const auto readme = source_dir() / "configs" / "README.md";
    std::ostringstream buffer;
    buffer << std::ifstream(readme).rdbuf();
    auto text = buffer.str();
    ASSERT_FALSE(text.empty()) << readme;

    const bool update = std::getenv("QMPKIT_UPDATE_README") != nullptr;
    for (const auto& fields : definition_reference()) {
        const auto span = find_table(text, fields.section);
        ASSERT_NE(span.begin, std::string::npos)
            << readme << " has no line " << marker(fields.section) << "before the table:\n"
            << fields.table();
        const auto written = text.substr(span.begin, span.end - span.begin);
        if (update)
            text.replace(span.begin, span.end - span.begin, fields.table());
        else
            EXPECT_EQ(written, fields.table())
                << "the table of '" << fields.section << "' in " << readme
                << " differs from the schema (launcher/src/definition/schema.hpp); "
                   "QMPKIT_UPDATE_README=1 rewrites it";
    }
    if (update)
        std::ofstream(readme) << text;
}

TEST(definition_reference, every_mapping_has_a_table_with_a_row_per_key) {
    const auto reference = definition_reference();
    ASSERT_GE(reference.size(), 10u);
    EXPECT_EQ(reference[0].section, "");
    EXPECT_NE(reference[0].table().find("| `name` | string | **required** |"), std::string::npos);
    EXPECT_NE(reference[0].table().find("| `cpus` | integer 1–255 | `1` |"), std::string::npos);
    EXPECT_NE(reference[0].table().find("| `memory` | size, at least `16M`, whole MiB | `256M` |"),
              std::string::npos);
    EXPECT_NE(reference[0].table().find("| `machine` | `q35` \\| `pc` \\| `microvm` | `q35` |"),
              std::string::npos);
    for (const auto& fields : reference) {
        if (fields.section == "disks[]") {
            // pflash is the UEFI store's bus, which only nvram: makes.
            EXPECT_NE(fields.table().find("| `bus` | `virtio` \\| `scsi` \\| `ide` | `virtio` |"),
                      std::string::npos);
        }
    }
}

// The JSON Schema for editors comes from the same schema: every mapping, key, enum, range and
// required field; an empty (null) value is allowed where leaving the key out is.
TEST(definition_reference, the_json_schema_has_every_key_type_and_requirement) {
    const auto schema = boost::json::parse(definition_json_schema()).as_object();
    EXPECT_EQ(schema.at("type"), "object");
    EXPECT_EQ(schema.at("additionalProperties"), false);
    EXPECT_EQ(schema.at("required"), (boost::json::array{"name"}));
    const auto& top = schema.at("properties").as_object();
    // Optional fields take null too: the first choice is the value's own schema.
    auto own = [](const boost::json::value& v) -> const boost::json::object& {
        // (a value, not an object: an object passed here would become a temporary value)
        const auto& o = v.as_object();
        return o.contains("anyOf") && o.at("anyOf").as_array().size() == 2 &&
                       o.at("anyOf").as_array()[1] == boost::json::object{{"type", "null"}}
                   ? o.at("anyOf").as_array()[0].as_object()
                   : o;
    };
    EXPECT_EQ(own(top.at("cpus")).at("minimum"), 1);
    EXPECT_EQ(own(top.at("cpus")).at("maximum"), 255);
    EXPECT_EQ(own(top.at("machine")).at("enum"), (boost::json::array{"q35", "pc", "microvm"}));
    const auto& disk = own(top.at("disks")).at("items").as_object();
    EXPECT_EQ(disk.at("required"), (boost::json::array{"name", "file"}));
    EXPECT_EQ(own(disk.at("properties").at("bus")).at("enum"),
              (boost::json::array{"virtio", "scsi", "ide"}));
    const auto& forward = own(own(top.at("network")).at("properties").at("forwards")).at("items");
    EXPECT_EQ(forward.at("required"), (boost::json::array{"host_port", "guest_port"}));
    EXPECT_TRUE(top.at("name").as_object().contains("description"));

    // As many keys as the reference has rows, mapping by mapping.
    std::size_t keys = 0, rows = 0;
    std::function<void(const boost::json::value&)> count = [&](const boost::json::value& v) {
        const auto& object = own(v);
        if (const auto* items = object.if_contains("items"); items && items->is_object())
            return count(*items);
        if (const auto* properties = object.if_contains("properties"))
            for (const auto& [key, value] : properties->as_object()) {
                ++keys;
                count(value);
            }
    };
    count(boost::json::value(schema));
    for (const auto& fields : definition_reference())
        rows += fields.fields.size();
    EXPECT_EQ(keys, rows);
}

} // namespace
} // namespace qmpkit::launcher::test
