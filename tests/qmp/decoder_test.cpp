#include <qmpkit/qmp/decoder.hpp>
#include <qmpkit/qmp/error.hpp>

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace qmpkit::qmp {
namespace {

namespace json = boost::json;
using ::testing::ElementsAre;

// One decoded line as text, so whole decodings compare with one EXPECT.
std::string describe(const decode_result& r) {
    if (r.error)
        return "failure " + r.error.message();
    struct visitor {
        std::string operator()(const greeting& g) const {
            std::string caps;
            for (const auto& c : g.capabilities)
                caps += (caps.empty() ? "" : ",") + c;
            return "greeting " + g.version_string() + " [" + caps + "]";
        }
        std::string operator()(const reply& r) const {
            return "reply id=" + json::serialize(r.id) + " " + json::serialize(r.value);
        }
        std::string operator()(const error_reply& e) const {
            return "error id=" + json::serialize(e.id) + " " + e.error_class + ": " + e.description;
        }
        std::string operator()(const event& e) const {
            return "event " + e.name + " " + json::serialize(e.data) + " @" +
                   std::to_string(e.seconds) + "." + std::to_string(e.microseconds);
        }
    };
    return std::visit(visitor{}, r.msg);
}

std::vector<std::string> drain(decoder& d) {
    std::vector<std::string> out;
    while (auto r = d.next())
        out.push_back(describe(*r));
    return out;
}

std::vector<std::string> decode_all(std::string_view bytes) {
    decoder d;
    d.feed(bytes);
    return drain(d);
}

const std::string protocol_error = "failure " + make_error_code(errc::protocol_error).message();
const std::string too_large = "failure " + make_error_code(errc::message_too_large).message();

// A session as qemu sends it: greeting, a reply, an event, an error, a reply without id.
const std::string session =
    "{\"QMP\": {\"version\": {\"qemu\": {\"micro\": 22, \"minor\": 2, \"major\": 7}, "
    "\"package\": \"Debian 1:7.2+dfsg-7\"}, \"capabilities\": [\"oob\"]}}\r\n"
    "{\"return\": {}, \"id\": 1}\r\n"
    "{\"timestamp\": {\"seconds\": 1700000000, \"microseconds\": 123456}, \"event\": \"STOP\"}\r\n"
    "{\"id\": 2, \"error\": {\"class\": \"CommandNotFound\", \"desc\": \"The command foo has "
    "not been found\"}}\r\n"
    "{\"return\": {\"status\": \"running\", \"running\": true}}\r\n";

const std::vector<std::string> session_decoded = {
    "greeting 7.2.22 [oob]",
    "reply id=1 {}",
    "event STOP {} @1700000000.123456",
    "error id=2 CommandNotFound: The command foo has not been found",
    "reply id=null {\"status\":\"running\",\"running\":true}",
};

TEST(decoder, decodes_a_session_fed_at_once) {
    EXPECT_EQ(decode_all(session), session_decoded);
}

TEST(decoder, decodes_a_session_split_at_every_byte_position) {
    for (std::size_t split = 0; split <= session.size(); ++split) {
        decoder d;
        std::vector<std::string> out;
        d.feed(std::string_view(session).substr(0, split));
        for (auto& m : drain(d))
            out.push_back(m);
        d.feed(std::string_view(session).substr(split));
        for (auto& m : drain(d))
            out.push_back(m);
        EXPECT_EQ(out, session_decoded) << "split at " << split;
        EXPECT_EQ(d.pending_bytes(), 0u);
    }
}

TEST(decoder, decodes_a_session_fed_byte_by_byte) {
    decoder d;
    std::vector<std::string> out;
    for (char c : session) {
        d.feed(std::string_view(&c, 1));
        for (auto& m : drain(d))
            out.push_back(m);
    }
    EXPECT_EQ(out, session_decoded);
}

TEST(decoder, holds_an_incomplete_line_until_its_newline) {
    decoder d;
    d.feed("{\"return\": {}, \"id\": 7}");
    EXPECT_FALSE(d.next());
    EXPECT_EQ(d.pending_bytes(), 23u);
    d.feed("\r");
    EXPECT_FALSE(d.next());
    d.feed("\n{\"ret");
    EXPECT_THAT(drain(d), ElementsAre("reply id=7 {}"));
    EXPECT_EQ(d.pending_bytes(), 5u);
}

TEST(decoder, accepts_crlf_and_lf_line_ends) {
    EXPECT_THAT(decode_all("{\"return\": 1, \"id\": 1}\r\n{\"return\": 2, \"id\": 2}\n"
                           "{\"return\": 3, \"id\": 3}\r\n"),
                ElementsAre("reply id=1 1", "reply id=2 2", "reply id=3 3"));
}

TEST(decoder, skips_blank_lines) {
    EXPECT_THAT(decode_all("\n\r\n  \t\r\n{\"return\": {}, \"id\": 1}\r\n\r\n\n"),
                ElementsAre("reply id=1 {}"));
}

TEST(decoder, classifies_greeting) {
    decoder d;
    d.feed(session.substr(0, session.find('\n') + 1));
    auto r = d.next();
    ASSERT_TRUE(r);
    ASSERT_FALSE(r->error);
    const auto* g = std::get_if<greeting>(&r->msg);
    ASSERT_TRUE(g);
    EXPECT_EQ(g->version_string(), "7.2.22");
    EXPECT_TRUE(g->offers("oob"));
    EXPECT_FALSE(g->offers("something-else"));
    EXPECT_EQ(g->version.at("package").as_string(), "Debian 1:7.2+dfsg-7");
}

TEST(decoder, classifies_greeting_without_capabilities_or_version) {
    auto r = classify(json::parse(R"({"QMP": {"capabilities": []}})"));
    ASSERT_FALSE(r.error);
    const auto& g = std::get<greeting>(r.msg);
    EXPECT_TRUE(g.capabilities.empty());
    EXPECT_EQ(g.version_string(), "");
}

TEST(decoder, classifies_reply_ids) {
    EXPECT_THAT(decode_all("{\"return\": {\"a\": [1, 2]}, \"id\": 42}\n"
                           "{\"return\": {}}\n"
                           "{\"return\": {}, \"id\": null}\n"
                           "{\"return\": \"text\", \"id\": \"foreign\"}\n"),
                ElementsAre("reply id=42 {\"a\":[1,2]}", "reply id=null {}", "reply id=null {}",
                            "reply id=\"foreign\" \"text\""));
}

TEST(decoder, classifies_error_with_and_without_id) {
    EXPECT_THAT(
        decode_all("{\"error\": {\"class\": \"GenericError\", \"desc\": \"nope\"}, \"id\": 3}\n"
                   "{\"error\": {\"class\": \"GenericError\", \"desc\": \"JSON parse error\"}}\n"),
        ElementsAre("error id=3 GenericError: nope",
                    "error id=null GenericError: JSON parse error"));
}

TEST(decoder, classifies_event_with_data_and_timestamp) {
    decoder d;
    d.feed("{\"event\": \"SHUTDOWN\", \"data\": {\"guest\": true, \"reason\": \"guest-shutdown\"}, "
           "\"timestamp\": {\"seconds\": 1700000001, \"microseconds\": 5}}\r\n");
    auto r = d.next();
    ASSERT_TRUE(r);
    const auto& e = std::get<event>(r->msg);
    EXPECT_EQ(e.name, "SHUTDOWN");
    EXPECT_EQ(e.data.at("reason").as_string(), "guest-shutdown");
    EXPECT_EQ(e.seconds, 1700000001);
    EXPECT_EQ(e.microseconds, 5);
    EXPECT_EQ(e.timestamp().time_since_epoch(),
              std::chrono::seconds(1700000001) + std::chrono::microseconds(5));
}

TEST(decoder, classifies_event_without_data_or_timestamp) {
    EXPECT_THAT(decode_all("{\"event\": \"RESUME\"}\n"), ElementsAre("event RESUME {} @0.0"));
}

TEST(decoder, reports_malformed_json_and_decodes_the_next_message) {
    decoder d;
    d.feed("{\"return\": {}, \"id\": 1\r\n"
           "{\"return\": {}, \"id\": 2}\r\n"
           "not json at all\n"
           "{\"return\": {}, \"id\": 3} trailing\n"
           "{\"return\": {}, \"id\": 4}\n");
    auto first = d.next();
    ASSERT_TRUE(first);
    EXPECT_EQ(first->error, errc::protocol_error);
    EXPECT_THAT(first->detail, ::testing::HasSubstr("malformed JSON"));
    EXPECT_THAT(drain(d),
                ElementsAre("reply id=2 {}", protocol_error, protocol_error, "reply id=4 {}"));
}

TEST(decoder, reports_non_object_lines_and_decodes_the_next_message) {
    EXPECT_THAT(decode_all("[1, 2]\n42\n\"text\"\nnull\n{\"return\": true, \"id\": 5}\n"),
                ElementsAre(protocol_error, protocol_error, protocol_error, protocol_error,
                            "reply id=5 true"));
}

TEST(decoder, reports_objects_that_are_no_qmp_message) {
    EXPECT_THAT(decode_all("{}\n"
                           "{\"QMP\": 1}\n"
                           "{\"error\": \"plain text\"}\n"
                           "{\"error\": {\"class\": \"GenericError\"}}\n"
                           "{\"event\": 7}\n"
                           "{\"something\": \"else\"}\n"
                           "{\"event\": \"STOP\"}\n"),
                ElementsAre(protocol_error, protocol_error, protocol_error, protocol_error,
                            protocol_error, protocol_error, "event STOP {} @0.0"));
}

TEST(decoder, reports_an_oversized_line_once_and_resumes_after_it) {
    decoder d(64);
    d.feed("{\"return\": \"" + std::string(100, 'x') + "\", \"id\": 1}\r\n" +
           "{\"return\": {}, \"id\": 2}\r\n");
    auto r = d.next();
    ASSERT_TRUE(r);
    EXPECT_EQ(r->error, errc::message_too_large);
    EXPECT_THAT(drain(d), ElementsAre("reply id=2 {}"));
}

TEST(decoder, accepts_a_line_of_exactly_the_limit) {
    const std::string line = "{\"return\": \"" + std::string(20, 'x') + "\", \"id\": 1}";
    decoder d(line.size());
    d.feed(line + "\n");
    EXPECT_THAT(drain(d), ElementsAre("reply id=1 \"" + std::string(20, 'x') + "\""));
}

TEST(decoder, reports_an_oversized_line_arriving_in_small_chunks_once) {
    decoder d(64);
    d.feed("{\"return\": {}, \"id\": 1}\n");
    EXPECT_THAT(drain(d), ElementsAre("reply id=1 {}"));

    const std::string big = "{\"return\": \"" + std::string(1000, 'y') + "\", \"id\": 2}\r\n";
    std::vector<std::string> out;
    for (std::size_t at = 0; at < big.size(); at += 7) {
        d.feed(std::string_view(big).substr(at, 7));
        for (auto& m : drain(d))
            out.push_back(m);
        // The skipped line is not buffered.
        EXPECT_LE(d.pending_bytes(), 64u + 7u);
    }
    EXPECT_THAT(out, ElementsAre(too_large));

    d.feed("{\"return\": {}, \"id\": 3}\r\n");
    EXPECT_THAT(drain(d), ElementsAre("reply id=3 {}"));
}

TEST(decoder, resumes_when_the_oversized_line_ends_in_the_same_chunk_as_the_next_message) {
    decoder d(64);
    d.feed(std::string(80, 'z'));
    EXPECT_THAT(drain(d), ElementsAre(too_large));
    d.feed(std::string(80, 'z') + "\r\n{\"return\": {}, \"id\": 9}\r\n{\"ret");
    EXPECT_THAT(drain(d), ElementsAre("reply id=9 {}"));
    d.feed("urn\": {}, \"id\": 10}\r\n");
    EXPECT_THAT(drain(d), ElementsAre("reply id=10 {}"));
}

TEST(decoder, decodes_a_300k_line_fed_in_4k_chunks) {
    // query-qmp-schema answers with about 207 KB in one line.
    json::array schema;
    for (int i = 0; i < 4500; ++i)
        schema.push_back(json::object{{"name", "command-" + std::to_string(i)},
                                      {"meta-type", "command"},
                                      {"arg-type", "0"},
                                      {"ret-type", "1"}});
    const auto line = json::serialize(json::object{{"return", schema}, {"id", 12}}) + "\r\n";
    ASSERT_GT(line.size(), 300u * 1024);

    decoder d;
    std::vector<decode_result> out;
    for (std::size_t at = 0; at < line.size(); at += 4096) {
        d.feed(std::string_view(line).substr(at, 4096));
        while (auto r = d.next())
            out.push_back(std::move(*r));
    }
    ASSERT_EQ(out.size(), 1u);
    ASSERT_FALSE(out[0].error) << out[0].detail;
    const auto& r = std::get<reply>(out[0].msg);
    EXPECT_EQ(numeric_id(r.id), 12u);
    EXPECT_EQ(r.value, schema);
    EXPECT_EQ(d.pending_bytes(), 0u);
}

// The guest agent's resynchronisation: stale bytes, then 0xFF, then the reply that counts.
TEST(decoder, discard_until_skips_stale_bytes_up_to_the_delimiter) {
    decoder d;
    d.feed("{\"return\": 1}\n{\"return\": {\"pid\"");
    EXPECT_FALSE(d.discard_until('\xff'));
    EXPECT_EQ(d.pending_bytes(), 0u);
    // The delimiter may arrive in the middle of a partial line, before its newline.
    d.feed(": 7}, \"x\": [1,2");
    EXPECT_FALSE(d.discard_until('\xff'));
    d.feed("]}\n\xff{\"return\": 42}\n{\"return\": {}}\n");
    EXPECT_TRUE(d.discard_until('\xff'));
    EXPECT_THAT(drain(d), ElementsAre("reply id=null 42", "reply id=null {}"));
}

TEST(decoder, discard_until_stops_at_the_first_delimiter_and_keeps_what_follows) {
    decoder d;
    d.feed("garbage\xff{\"return\": 1}\n\xff{\"ret");
    EXPECT_TRUE(d.discard_until('\xff'));
    EXPECT_THAT(drain(d), ElementsAre("reply id=null 1"));
    EXPECT_TRUE(d.discard_until('\xff'));
    EXPECT_EQ(d.pending_bytes(), 5u);
    d.feed("urn\": 2}\r\n");
    EXPECT_THAT(drain(d), ElementsAre("reply id=null 2"));
    // Nothing held: nothing found.
    EXPECT_FALSE(d.discard_until('\xff'));
}

TEST(decoder, discard_until_ends_the_skipping_of_an_oversized_line) {
    decoder d(64);
    d.feed(std::string(80, 'z'));
    EXPECT_THAT(drain(d), ElementsAre(too_large));
    d.feed(std::string(10, 'z') + "\xff{\"return\": 3}\n");
    EXPECT_TRUE(d.discard_until('\xff'));
    EXPECT_THAT(drain(d), ElementsAre("reply id=null 3"));
}

TEST(decoder, reset_drops_a_partial_line) {
    decoder d;
    d.feed("{\"return\": {}, \"i");
    d.reset();
    EXPECT_EQ(d.pending_bytes(), 0u);
    d.feed("{\"return\": {}, \"id\": 1}\n");
    EXPECT_THAT(drain(d), ElementsAre("reply id=1 {}"));
}

// Found by fuzzing (tests/fuzz/corpus/qmp_decoder/regression-timestamp-overflow): a timestamp
// beyond what a time_point holds overflowed when converted (undefined behaviour).
TEST(decoder, event_timestamp_out_of_range_is_clamped) {
    decoder d;
    d.feed("{\"event\": \"STOP\", \"timestamp\": {\"seconds\": 9715312217997516, "
           "\"microseconds\": 9223372036854775807}}\n"
           "{\"event\": \"STOP\", \"timestamp\": {\"seconds\": -9223372036854775807, "
           "\"microseconds\": -9223372036854775807}}\n");
    const auto late = std::get<event>(d.next()->msg);
    const auto early = std::get<event>(d.next()->msg);
    EXPECT_EQ(late.seconds, 9715312217997516); // kept as sent
    using clock = std::chrono::system_clock;
    const auto limit =
        std::chrono::duration_cast<std::chrono::microseconds>(clock::duration::max());
    EXPECT_EQ(late.timestamp().time_since_epoch(), limit);
    EXPECT_EQ(early.timestamp().time_since_epoch(), -limit);
}

} // namespace
} // namespace qmpkit::qmp
