#include <qmpkit/qmp/error.hpp>
#include <qmpkit/qmp/message.hpp>

#include <gtest/gtest.h>

#include <cstdint>
#include <limits>

namespace qmpkit::qmp {
namespace {

namespace json = boost::json;

TEST(numeric_id, takes_non_negative_integers) {
    EXPECT_EQ(numeric_id(json::value(0)), 0u);
    EXPECT_EQ(numeric_id(json::value(42)), 42u);
    EXPECT_EQ(numeric_id(json::value(std::int64_t(42))), 42u);
    EXPECT_EQ(numeric_id(json::value(std::numeric_limits<std::uint64_t>::max())),
              std::numeric_limits<std::uint64_t>::max());
}

TEST(numeric_id, refuses_everything_else) {
    EXPECT_EQ(numeric_id(json::value(nullptr)), std::nullopt);
    EXPECT_EQ(numeric_id(json::value(-1)), std::nullopt);
    EXPECT_EQ(numeric_id(json::value(1.0)), std::nullopt);
    EXPECT_EQ(numeric_id(json::value("1")), std::nullopt);
    EXPECT_EQ(numeric_id(json::value(true)), std::nullopt);
    EXPECT_EQ(numeric_id(json::value(json::object{{"id", 1}})), std::nullopt);
}

TEST(greeting, reports_version_and_capabilities) {
    greeting g;
    g.version = {{"qemu", {{"major", 8}, {"minor", 1}, {"micro", 3}}}, {"package", ""}};
    g.capabilities = {"oob"};
    EXPECT_EQ(g.version_string(), "8.1.3");
    EXPECT_TRUE(g.offers("oob"));
    EXPECT_FALSE(g.offers("oo"));
}

TEST(error, carries_code_and_diagnostics_in_its_message) {
    error e(make_error_code(errc::command_failed),
            {"blockdev-add", "GenericError", "Duplicate node name"});
    EXPECT_EQ(e.code(), errc::command_failed);
    EXPECT_EQ(e.diag().command, "blockdev-add");
    EXPECT_STREQ(e.what(), "blockdev-add: GenericError: Duplicate node name");

    error local(make_error_code(errc::timeout), {"query-status", "", ""});
    EXPECT_EQ(std::string(local.what()), "query-status: " + local.code().message());
}

TEST(errc, has_a_message_for_every_code) {
    for (int e = static_cast<int>(errc::protocol_error);
         e <= static_cast<int>(errc::fd_passing_failed); ++e) {
        const auto code = make_error_code(static_cast<errc>(e));
        EXPECT_EQ(code.category().name(), std::string("qmp"));
        EXPECT_NE(code.message(), "unknown qmp error") << e;
    }
}

} // namespace
} // namespace qmpkit::qmp
