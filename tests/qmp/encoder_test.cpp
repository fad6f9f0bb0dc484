#include <qmpkit/qmp/encoder.hpp>

#include <boost/json/parse.hpp>
#include <gtest/gtest.h>

namespace qmpkit::qmp {
namespace {

namespace json = boost::json;

TEST(encode_command, writes_execute_with_id_and_a_trailing_newline) {
    const auto text = encode_command("query-status", {}, 1);
    ASSERT_FALSE(text.empty());
    EXPECT_EQ(text.back(), '\n');
    EXPECT_EQ(text.find('\n'), text.size() - 1) << "one line";
    EXPECT_EQ(json::parse(text), json::parse(R"({"execute": "query-status", "id": 1})"));
}

TEST(encode_command, leaves_out_empty_arguments) {
    const auto command = json::parse(encode_command("stop", {}, 7)).as_object();
    EXPECT_FALSE(command.contains("arguments"));
}

TEST(encode_command, writes_arguments) {
    const json::object arguments{{"device", "drive0"}, {"force", true}};
    EXPECT_EQ(json::parse(encode_command("eject", arguments, 3)),
              json::parse(R"({"execute": "eject", "arguments": {"device": "drive0",
                             "force": true}, "id": 3})"));
}

TEST(encode_command, writes_exec_oob_for_out_of_band_commands) {
    const auto command =
        json::parse(encode_command("migrate-pause", {}, 9, /*out_of_band=*/true)).as_object();
    EXPECT_EQ(command.at("exec-oob"), "migrate-pause");
    EXPECT_FALSE(command.contains("execute"));
    EXPECT_EQ(command.at("id"), 9);
}

TEST(encode_command, keeps_ids_above_int64_exact) {
    const std::uint64_t id = (std::uint64_t(1) << 63) + 5;
    const auto command = json::parse(encode_command("x", {}, id)).as_object();
    EXPECT_EQ(command.at("id").to_number<std::uint64_t>(), id);
}

TEST(encode_command, escapes_strings_so_the_line_stays_one_line) {
    const auto text =
        encode_command("human-monitor-command", {{"command-line", "info\nstatus \"quoted\""}}, 2);
    EXPECT_EQ(text.find('\n'), text.size() - 1);
    EXPECT_EQ(json::parse(text).at("arguments").at("command-line"), "info\nstatus \"quoted\"");
}

} // namespace
} // namespace qmpkit::qmp
