// The decisions a pool takes on its record, step by step, without qemu (the pool itself runs
// against qemu in tests/cli/pool_test.cpp).

#include "pool_record.hpp"

#include <qmpkit/snapshot/error.hpp>

#include <gtest/gtest.h>

#include <set>
#include <string>

namespace qmpkit::snapshot {
namespace {

using namespace detail;

pool_status pool_of(int size) {
    pool_status p;
    p.name = "p";
    p.origin = "vm";
    p.point = "rp";
    p.size = size;
    p.lease_timeout = std::chrono::seconds(60);
    for (int i = 1; i <= size; ++i)
        p.members.push_back({"p-" + std::to_string(i), member_state::free, 100});
    return p;
}

const auto all_running = [](const std::string&) { return true; };

TEST(pool_record, round_trips_every_state) {
    auto p = pool_of(4);
    p.strategy = launcher::reset_strategy::standby;
    p.members[1] = {"p-2", member_state::leased, 110, "abc", "worker 3", 170, ""};
    p.members[2].state = member_state::restoring;
    p.members[3] = {"p-4", member_state::broken, 120, "", "", 0, "qemu: no \"RAM\"\n"};
    const auto back = parse_pool(dump_pool(p), "pool.json");
    EXPECT_EQ(dump_pool(back), dump_pool(p));
    EXPECT_EQ(back.members[1].holder, "worker 3");
    EXPECT_EQ(back.members[3].problem, "qemu: no \"RAM\"\n");
    EXPECT_EQ(back.strategy, launcher::reset_strategy::standby);
}

TEST(pool_record, refuses_what_it_did_not_write_naming_the_file) {
    for (const auto* text : {"", "[]", "{\"format\":1}",
                             "{\"format\":1,\"name\":\"p\",\"origin\":\"vm\",\"point\":"
                             "\"rp\",\"size\":1,\"lease_timeout\":5,\"strategy\":"
                             "\"template\",\"destroying\":false,\"members\":[{\"vm\":"
                             "\"p-1\",\"state\":\"sleeping\",\"since\":1}]}"}) {
        try {
            parse_pool(text, "/state/.pools/p/pool.json");
            ADD_FAILURE() << "accepted: " << text;
        } catch (const error& e) {
            EXPECT_EQ(e.kind(), error_kind::metadata_corrupt) << text;
            EXPECT_NE(std::string(e.what()).find("/state/.pools/p/pool.json"), std::string::npos);
        }
    }
    try {
        parse_pool("{\"format\":2}", "pool.json");
        ADD_FAILURE();
    } catch (const error& e) {
        EXPECT_EQ(e.kind(), error_kind::metadata_too_new);
    }
}

TEST(pool_record, hands_out_each_member_once_until_it_comes_back) {
    auto p = pool_of(2);
    std::vector<std::string> dead;
    std::set<std::string> handed;
    for (int i = 0; i < 2; ++i) {
        auto* m = take_free(p, all_running, 200, 30, "id" + std::to_string(i), "w", dead);
        ASSERT_NE(m, nullptr);
        EXPECT_TRUE(handed.insert(m->vm).second);
        EXPECT_EQ(m->expires_at, 230);
    }
    EXPECT_EQ(take_free(p, all_running, 201, 30, "id9", "w", dead), nullptr);
    give_back(p, "p-1", "id0", 202);
    EXPECT_EQ(find_member(p, "p-1")->state, member_state::restoring);
    // Restoring is not free: only the background reset makes it free again.
    EXPECT_EQ(take_free(p, all_running, 203, 30, "id9", "w", dead), nullptr);
    EXPECT_TRUE(dead.empty());
    EXPECT_EQ(count_by_state(p), "0 free, 1 leased, 1 restoring, 0 broken");
}

TEST(pool_record, a_member_whose_qemu_is_gone_is_restored_not_handed_out) {
    auto p = pool_of(3);
    std::vector<std::string> dead;
    auto* m = take_free(
        p, [](const std::string& vm) { return vm == "p-3"; }, 200, 30, "id", "w", dead);
    ASSERT_NE(m, nullptr);
    EXPECT_EQ(m->vm, "p-3");
    EXPECT_EQ(dead, (std::vector<std::string>{"p-1", "p-2"}));
    EXPECT_EQ(find_member(p, "p-1")->state, member_state::restoring);
}

TEST(pool_record, a_lapsed_lease_is_taken_back_and_its_release_refused) {
    auto p = pool_of(1);
    std::vector<std::string> dead;
    take_free(p, all_running, 200, 30, "old", "w", dead);
    EXPECT_TRUE(reclaim_lapsed(p, 229).empty());
    EXPECT_EQ(reclaim_lapsed(p, 230), std::vector<std::string>{"p-1"});
    EXPECT_THROW(give_back(p, "p-1", "old", 231), error); // restoring, not leased
    p.members[0].state = member_state::free;
    take_free(p, all_running, 232, 30, "new", "w2", dead);
    try {
        give_back(p, "p-1", "old", 233);
        ADD_FAILURE();
    } catch (const error& e) {
        EXPECT_NE(std::string(e.what()).find("lapsed"), std::string::npos) << e.what();
    }
    EXPECT_EQ(p.members[0].lease, "new"); // untouched by the refused release
    give_back(p, "p-1", "", 234);         // no id: whoever holds it
    EXPECT_EQ(p.members[0].state, member_state::restoring);
    EXPECT_THROW(give_back(p, "p-9", "", 235), error);
}

TEST(pool_record, broken_members_are_retried_after_the_back_off) {
    auto p = pool_of(1);
    p.members[0] = {"p-1", member_state::broken, 100, "", "", 0, "no point"};
    EXPECT_TRUE(retry_broken(p, 129, 30).empty());
    EXPECT_EQ(retry_broken(p, 130, 30), std::vector<std::string>{"p-1"});
    EXPECT_TRUE(p.members[0].problem.empty());
}

TEST(pool_record, new_member_names_skip_members_and_existing_vms) {
    auto p = pool_of(2);
    EXPECT_EQ(next_member_name(p, [](const std::string& n) { return n == "p-3"; }), "p-4");
}

} // namespace
} // namespace qmpkit::snapshot
