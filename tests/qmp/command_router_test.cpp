#include <qmpkit/qmp/command_router.hpp>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <vector>

namespace qmpkit::qmp {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;
using ::testing::UnorderedElementsAre;
using ids = std::vector<std::uint64_t>;
using match = command_router::match;

std::pair<match, std::uint64_t> completes(std::uint64_t id) {
    return {match::completes, id};
}

// Submits n in-band commands and returns their ids.
ids submit_n(command_router& r, int n) {
    ids out;
    for (int i = 0; i < n; ++i)
        out.push_back(r.submit());
    return out;
}

TEST(command_router, ids_are_unique_and_increasing) {
    command_router r;
    ids seen;
    for (int i = 0; i < 50; ++i)
        seen.push_back(r.submit(i % 5 == 0));
    EXPECT_TRUE(std::is_sorted(seen.begin(), seen.end()));
    EXPECT_EQ(std::adjacent_find(seen.begin(), seen.end()), seen.end());
    EXPECT_GT(seen.front(), 0u);
}

TEST(command_router, hands_out_each_sendable_id_once_in_submission_order) {
    command_router r;
    const auto a = r.submit();
    const auto b = r.submit();
    EXPECT_THAT(r.take_sendable(), ElementsAre(a, b));
    EXPECT_THAT(r.take_sendable(), IsEmpty());
    const auto c = r.submit();
    EXPECT_THAT(r.take_sendable(), ElementsAre(c));
}

TEST(command_router, keeps_at_most_eight_in_flight_and_queues_the_ninth) {
    command_router r;
    const auto first = submit_n(r, 9);
    EXPECT_THAT(r.take_sendable(), ElementsAre(first[0], first[1], first[2], first[3], first[4],
                                               first[5], first[6], first[7]));
    EXPECT_EQ(r.in_flight(), 8u);
    EXPECT_EQ(r.queued(), 1u);

    // A reply frees one slot: the ninth goes out, and only it.
    EXPECT_EQ(r.on_reply(first[3]), completes(first[3]));
    EXPECT_THAT(r.take_sendable(), ElementsAre(first[8]));
    EXPECT_EQ(r.in_flight(), 8u);
    EXPECT_EQ(r.queued(), 0u);
}

TEST(command_router, honours_a_custom_window) {
    command_router r(2);
    const auto c = submit_n(r, 4);
    EXPECT_THAT(r.take_sendable(), ElementsAre(c[0], c[1]));
    r.on_reply(c[0]);
    r.on_reply(c[1]);
    EXPECT_THAT(r.take_sendable(), ElementsAre(c[2], c[3]));
}

TEST(command_router, a_zero_window_still_lets_one_command_through) {
    command_router r(0);
    const auto c = submit_n(r, 2);
    EXPECT_THAT(r.take_sendable(), ElementsAre(c[0]));
    r.on_reply(c[0]);
    EXPECT_THAT(r.take_sendable(), ElementsAre(c[1]));
}

TEST(command_router, completes_replies_out_of_order) {
    command_router r;
    const auto c = submit_n(r, 3);
    r.take_sendable();
    EXPECT_EQ(r.on_reply(c[2]), completes(c[2]));
    EXPECT_EQ(r.on_reply(c[0]), completes(c[0]));
    EXPECT_EQ(r.on_reply(c[1]), completes(c[1]));
    EXPECT_EQ(r.in_flight(), 0u);
}

TEST(command_router, a_reply_without_id_completes_the_oldest_in_band_command) {
    command_router r;
    const auto a = r.submit();
    const auto oob = r.submit(true);
    const auto b = r.submit();
    r.take_sendable();
    EXPECT_EQ(r.on_reply(std::nullopt), completes(a));
    EXPECT_EQ(r.on_reply(std::nullopt), completes(b));
    EXPECT_EQ(r.on_reply(std::nullopt).first, match::unknown);
    EXPECT_EQ(r.on_reply(oob), completes(oob));
}

TEST(command_router, a_reply_without_id_after_an_out_of_order_reply_takes_the_oldest_left) {
    command_router r;
    const auto c = submit_n(r, 3);
    r.take_sendable();
    r.on_reply(c[0]);
    EXPECT_EQ(r.on_reply(std::nullopt), completes(c[1]));
}

TEST(command_router, reports_unknown_ids) {
    command_router r;
    const auto a = r.submit();
    r.take_sendable();
    EXPECT_EQ(r.on_reply(a + 100), std::make_pair(match::unknown, a + 100));
    EXPECT_EQ(r.on_reply(a), completes(a));
    // A second reply to the same id is unknown too.
    EXPECT_EQ(r.on_reply(a).first, match::unknown);
}

TEST(command_router, a_reply_for_a_queued_command_is_unknown) {
    command_router r(1);
    const auto c = submit_n(r, 2);
    r.take_sendable();
    EXPECT_EQ(r.on_reply(c[1]).first, match::unknown);
    EXPECT_EQ(r.queued(), 1u);
}

TEST(command_router, abandoning_a_queued_command_drops_it_unsent) {
    command_router r;
    const auto c = submit_n(r, 10);
    r.take_sendable();
    EXPECT_TRUE(r.abandon(c[8]));
    EXPECT_EQ(r.queued(), 1u);
    r.on_reply(c[0]);
    EXPECT_THAT(r.take_sendable(), ElementsAre(c[9])) << "c[8] never goes out";
    EXPECT_EQ(r.on_reply(c[8]).first, match::unknown);
}

TEST(command_router, abandoning_a_sent_command_holds_its_slot_until_the_reply) {
    command_router r;
    const auto c = submit_n(r, 9);
    r.take_sendable();
    EXPECT_FALSE(r.abandon(c[2]));
    EXPECT_EQ(r.in_flight(), 8u);
    EXPECT_THAT(r.take_sendable(), IsEmpty()) << "qemu still holds the abandoned command";

    EXPECT_EQ(r.on_reply(c[2]), std::make_pair(match::abandoned, c[2]));
    EXPECT_THAT(r.take_sendable(), ElementsAre(c[8]));
}

TEST(command_router, a_reply_without_id_for_an_abandoned_oldest_command_is_abandoned) {
    command_router r;
    const auto c = submit_n(r, 2);
    r.take_sendable();
    r.abandon(c[0]);
    EXPECT_EQ(r.on_reply(std::nullopt), std::make_pair(match::abandoned, c[0]));
    EXPECT_EQ(r.on_reply(std::nullopt), completes(c[1]));
}

TEST(command_router, abandoning_an_admitted_but_untaken_command_frees_its_slot) {
    command_router r(1);
    const auto c = submit_n(r, 2);
    EXPECT_TRUE(r.abandon(c[0])) << "not taken by the writer yet: never sent";
    EXPECT_THAT(r.take_sendable(), ElementsAre(c[1]));
}

TEST(command_router, abandoning_an_unknown_or_finished_command_changes_nothing) {
    command_router r;
    const auto a = r.submit();
    r.take_sendable();
    r.on_reply(a);
    EXPECT_FALSE(r.abandon(a));
    EXPECT_FALSE(r.abandon(a + 50));
    EXPECT_EQ(r.in_flight(), 0u);
    EXPECT_EQ(r.queued(), 0u);
}

TEST(command_router, out_of_band_commands_bypass_the_window) {
    command_router r;
    const auto in_band = submit_n(r, 9);
    r.take_sendable();
    const auto oob = r.submit(/*out_of_band=*/true);
    EXPECT_THAT(r.take_sendable(), ElementsAre(oob));
    EXPECT_EQ(r.in_flight(), 8u) << "out-of-band commands take no window slot";
    EXPECT_EQ(r.on_reply(oob), completes(oob));
    EXPECT_THAT(r.take_sendable(), IsEmpty()) << "its reply frees no in-band slot";
    EXPECT_EQ(r.on_reply(in_band[0]), completes(in_band[0]));
    EXPECT_THAT(r.take_sendable(), ElementsAre(in_band[8]));
}

TEST(command_router, abandoning_a_sent_out_of_band_command_drops_its_reply) {
    command_router r;
    const auto oob = r.submit(true);
    r.take_sendable();
    EXPECT_FALSE(r.abandon(oob));
    EXPECT_EQ(r.on_reply(oob), std::make_pair(match::abandoned, oob));
}

TEST(command_router, fail_all_returns_every_command_still_wanted) {
    command_router r;
    const auto c = submit_n(r, 10);  // 8 in flight, 2 queued
    const auto oob = r.submit(true); // sendable
    r.take_sendable();
    r.on_reply(c[1]); // done: c[8] admitted
    r.abandon(c[2]);  // sent and abandoned: nobody waits
    r.abandon(c[9]);  // queued and abandoned

    EXPECT_THAT(r.fail_all(), UnorderedElementsAre(c[0], c[3], c[4], c[5], c[6], c[7], c[8], oob));
    EXPECT_EQ(r.in_flight(), 0u);
    EXPECT_EQ(r.queued(), 0u);
    EXPECT_THAT(r.take_sendable(), IsEmpty());
    EXPECT_THAT(r.fail_all(), IsEmpty());
}

TEST(command_router, fail_all_includes_queued_and_untaken_commands) {
    command_router r(1);
    const auto c = submit_n(r, 3);
    EXPECT_THAT(r.fail_all(), UnorderedElementsAre(c[0], c[1], c[2]));
    EXPECT_THAT(r.take_sendable(), IsEmpty());
}

TEST(command_router, keeps_working_after_fail_all_with_fresh_ids) {
    command_router r;
    const auto a = r.submit();
    r.fail_all();
    const auto b = r.submit();
    EXPECT_GT(b, a);
    EXPECT_THAT(r.take_sendable(), ElementsAre(b));
    EXPECT_EQ(r.on_reply(a).first, match::unknown);
}

} // namespace
} // namespace qmpkit::qmp
