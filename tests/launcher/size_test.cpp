#include <qmpkit/launcher/error.hpp>
#include <qmpkit/launcher/size.hpp>

#include <gtest/gtest.h>

#include <cstdint>
#include <string_view>

namespace qmpkit::launcher {
namespace {

struct good_size {
    std::string_view text;
    std::uint64_t bytes;
};

TEST(size, parses_bytes_and_binary_units) {
    const good_size cases[] = {
        {"0", 0},           {"4096", 4096},      {"512B", 512},       {"1K", kib},
        {"1k", kib},        {"512M", 512 * mib}, {"64MiB", 64 * mib}, {"64Mi", 64 * mib},
        {"64MB", 64 * mib}, {"1G", gib},         {"1GiB", gib},       {"1.5G", 1536 * mib},
        {"0.5K", 512},      {"2.000M", 2 * mib}, {"1T", tib},         {"16777215T", 16777215 * tib},
    };
    for (const auto& c : cases) {
        SCOPED_TRACE(c.text);
        EXPECT_EQ(parse_size(c.text), c.bytes);
    }
}

struct bad_size {
    std::string_view text;
    std::string_view fragment;
};

TEST(size, rejects_what_is_not_a_size) {
    const bad_size cases[] = {
        {"", "empty"},
        {"-1M", "negative"},
        {"M", "expected a number"},
        {"12QB", "unknown unit 'QB'"},
        {"1 G", "unknown unit ' G'"},
        {"1GiBB", "unknown unit 'GiBB'"},
        {"1Gb", "unknown unit 'Gb'"},
        {"1.", "digits after the decimal point"},
        {"1.5", "not a whole number of bytes"},
        {"1.0001K", "not a whole number of bytes"},
        {"0x10", "unknown unit 'x10'"},
        {"99999999999999999999", "too large"},
        {"16777216T", "too large"},
    };
    for (const auto& c : cases) {
        SCOPED_TRACE(c.text);
        try {
            parse_size(c.text);
            ADD_FAILURE() << "accepted";
        } catch (const error& e) {
            EXPECT_NE(std::string_view(e.what()).find(c.fragment), std::string_view::npos)
                << e.what();
            EXPECT_NE(std::string_view(e.what()).find("'" + std::string(c.text) + "'"),
                      std::string_view::npos)
                << e.what();
        }
    }
}

TEST(size, formats_the_largest_exact_unit) {
    EXPECT_EQ(format_size(0), "0");
    EXPECT_EQ(format_size(1000), "1000");
    EXPECT_EQ(format_size(kib), "1K");
    EXPECT_EQ(format_size(256 * mib), "256M");
    EXPECT_EQ(format_size(1536 * mib), "1536M");
    EXPECT_EQ(format_size(2 * gib), "2G");
    EXPECT_EQ(format_size(3 * tib), "3T");
}

TEST(size, format_reads_back) {
    for (std::uint64_t bytes : {std::uint64_t{1}, std::uint64_t{512}, 3 * kib + 1, 1536 * mib,
                                5 * tib, std::uint64_t{0xffffffffffffffff}}) {
        SCOPED_TRACE(bytes);
        EXPECT_EQ(parse_size(format_size(bytes)), bytes);
    }
}

} // namespace
} // namespace qmpkit::launcher
