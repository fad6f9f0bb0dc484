#include <qmpkit/snapshot/error.hpp>
#include <qmpkit/snapshot/snapshot_tree.hpp>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace qmpkit::snapshot {
namespace {

using names = std::vector<std::string>;
using ::testing::ElementsAre;

snapshot_record record(std::string name, std::int64_t created_at,
                       std::optional<std::string> parent = std::nullopt) {
    snapshot_record r;
    r.name = std::move(name);
    r.created_at = created_at;
    r.parent = std::move(parent);
    return r;
}

// a
// +- b
// |  +- d
// |  +- e
// |     +- f
// +- c
snapshot_tree six() {
    snapshot_tree t;
    t.add(record("a", 1));
    t.add(record("b", 2, "a"));
    t.add(record("c", 3, "a"));
    t.add(record("d", 4, "b"));
    t.add(record("e", 5, "b"));
    t.add(record("f", 6, "e"));
    return t;
}

error_kind kind_of(const std::function<void()>& f, std::string* message = nullptr) {
    try {
        f();
    } catch (const error& e) {
        if (message)
            *message = e.what();
        return e.kind();
    }
    ADD_FAILURE() << "no error";
    return error_kind::other;
}

TEST(snapshot_tree, add_and_find) {
    snapshot_tree t;
    EXPECT_TRUE(t.empty());
    t.add(record("s1", 10));
    t.add(record("s2", 20, "s1"));
    EXPECT_EQ(t.size(), 2u);
    ASSERT_NE(t.find("s2"), nullptr);
    EXPECT_EQ(t.find("s2")->parent, "s1");
    EXPECT_EQ(t.find("nope"), nullptr);
    EXPECT_TRUE(t.contains("s1"));
    EXPECT_EQ(t.at("s1").created_at, 10);
    EXPECT_FALSE(t.current()) << "adding does not make a snapshot current";
}

TEST(snapshot_tree, refuses_duplicates_missing_parents_and_bad_names) {
    snapshot_tree t;
    t.add(record("s1", 10));
    std::string message;
    EXPECT_EQ(kind_of([&] { t.add(record("s1", 11)); }, &message), error_kind::name_taken);
    EXPECT_EQ(message, "a snapshot named \"s1\" already exists");
    EXPECT_EQ(kind_of([&] { t.add(record("s2", 11, "ghost")); }, &message), error_kind::not_found);
    EXPECT_EQ(message, "parent snapshot \"ghost\" of \"s2\" does not exist");
    EXPECT_EQ(kind_of([&] { t.add(record("-rf", 11)); }), error_kind::invalid_name);
    EXPECT_EQ(t.size(), 1u) << "failed adds change nothing";
}

TEST(snapshot_tree, at_names_the_missing_snapshot) {
    const auto t = six();
    std::string message;
    EXPECT_EQ(kind_of([&] { t.at("zz"); }, &message), error_kind::not_found);
    EXPECT_EQ(message, "no snapshot named \"zz\"");
    EXPECT_EQ(kind_of([&] { t.children("zz"); }), error_kind::not_found);
    EXPECT_EQ(kind_of([&] { t.descendants("zz"); }), error_kind::not_found);
    EXPECT_EQ(kind_of([&] { t.parent("zz"); }), error_kind::not_found);
}

TEST(snapshot_tree, relations_on_six_nodes) {
    const auto t = six();
    EXPECT_THAT(t.roots(), ElementsAre("a"));
    EXPECT_THAT(t.leaves(), ElementsAre("c", "d", "f"));
    EXPECT_THAT(t.children("a"), ElementsAre("b", "c"));
    EXPECT_THAT(t.children("b"), ElementsAre("d", "e"));
    EXPECT_TRUE(t.children("f").empty());
    EXPECT_THAT(t.descendants("a"), ElementsAre("b", "d", "e", "f", "c"));
    EXPECT_EQ(t.descendant_count("a"), 5u);
    EXPECT_EQ(t.descendant_count("b"), 3u);
    EXPECT_EQ(t.descendant_count("e"), 1u);
    EXPECT_EQ(t.descendant_count("c"), 0u);
    EXPECT_EQ(t.parent("f"), "e");
    EXPECT_EQ(t.parent("a"), std::nullopt);
    EXPECT_THAT(t.ancestors("f"), ElementsAre("e", "b", "a"));
    EXPECT_TRUE(t.ancestors("a").empty());
}

TEST(snapshot_tree, all_is_in_creation_order_ties_by_name) {
    snapshot_tree t;
    t.add(record("zeta", 5));
    t.add(record("beta", 7));
    t.add(record("alpha", 7));
    t.add(record("early", 1, "beta")); // a clock set back: a child older than its parent
    names order;
    for (const auto* r : t.all())
        order.push_back(r->name);
    EXPECT_THAT(order, ElementsAre("early", "zeta", "alpha", "beta"));
    EXPECT_THAT(t.roots(), ElementsAre("zeta", "alpha", "beta"));
}

TEST(snapshot_tree, remove_middle_reparents_children_and_moves_current) {
    auto t = six();
    t.set_current("b");
    const auto removed = t.remove("b");
    EXPECT_EQ(removed.name, "b");
    EXPECT_FALSE(t.contains("b"));
    EXPECT_EQ(t.parent("d"), "a");
    EXPECT_EQ(t.parent("e"), "a");
    EXPECT_EQ(t.parent("f"), "e");
    EXPECT_THAT(t.children("a"), ElementsAre("c", "d", "e"));
    EXPECT_EQ(t.current(), "a");
}

TEST(snapshot_tree, remove_root_makes_children_roots_and_clears_current) {
    auto t = six();
    t.set_current("a");
    t.remove("a");
    EXPECT_THAT(t.roots(), ElementsAre("b", "c"));
    EXPECT_FALSE(t.current());
}

TEST(snapshot_tree, remove_leaves_current_alone_when_it_is_elsewhere) {
    auto t = six();
    t.set_current("f");
    t.remove("c");
    EXPECT_EQ(t.current(), "f");
    EXPECT_EQ(t.size(), 5u);
}

TEST(snapshot_tree, remove_with_descendants_deepest_first) {
    auto t = six();
    t.set_current("f");
    EXPECT_THAT(t.remove_with_descendants("b"), ElementsAre("f", "d", "e", "b"));
    EXPECT_EQ(t.size(), 2u);
    EXPECT_THAT(t.children("a"), ElementsAre("c"));
    EXPECT_EQ(t.current(), "a");

    auto u = six();
    u.set_current("c");
    EXPECT_THAT(u.remove_with_descendants("e"), ElementsAre("f", "e"));
    EXPECT_EQ(u.current(), "c");
    EXPECT_THAT(u.remove_with_descendants("a"), ElementsAre("d", "b", "c", "a"));
    EXPECT_TRUE(u.empty());
    EXPECT_FALSE(u.current());
}

TEST(snapshot_tree, current) {
    auto t = six();
    EXPECT_EQ(kind_of([&] { t.set_current("ghost"); }), error_kind::not_found);
    t.set_current("d");
    EXPECT_TRUE(t.is_current("d"));
    EXPECT_FALSE(t.is_current("a"));
    t.set_current(std::nullopt);
    EXPECT_FALSE(t.current());
}

TEST(snapshot_tree, copies_are_independent) {
    const auto original = six();
    auto copy = original;
    EXPECT_EQ(copy, original);
    copy.remove("b");
    copy.set_current("a");
    auto r = copy.at("c");
    r.description = "changed";
    copy.update(r);
    EXPECT_EQ(original.size(), 6u);
    EXPECT_EQ(original.parent("d"), "b");
    EXPECT_EQ(original.at("c").description, "");
    EXPECT_FALSE(original.current());
    EXPECT_NE(copy, original);
}

TEST(snapshot_tree, update_replaces_and_guards_the_parent) {
    auto t = six();
    auto c = t.at("c");
    c.description = "new";
    c.parent = "f";
    t.update(c);
    EXPECT_EQ(t.at("c").description, "new");
    EXPECT_THAT(t.children("f"), ElementsAre("c"));

    auto b = t.at("b");
    b.parent = "f"; // below b
    EXPECT_EQ(kind_of([&] { t.update(b); }), error_kind::other);
    b.parent = "b";
    EXPECT_EQ(kind_of([&] { t.update(b); }), error_kind::other);
    b.parent = "ghost";
    EXPECT_EQ(kind_of([&] { t.update(b); }), error_kind::not_found);
    EXPECT_EQ(kind_of([&] { t.update(record("ghost", 1)); }), error_kind::not_found);
    EXPECT_EQ(t.parent("b"), "a");
}

} // namespace
} // namespace qmpkit::snapshot
