#include "vm/qemu_environment.hpp"

#include <gtest/gtest.h>

namespace qmpkit::launcher::detail {
namespace {

TEST(qemu_environment, asks_glibc_for_huge_pages_for_qemus_heap) {
    const auto env = qemu_environment_additions(nullptr);
    ASSERT_EQ(env.size(), 1u);
    EXPECT_EQ(env[0].first, "GLIBC_TUNABLES");
    EXPECT_EQ(env[0].second, "glibc.malloc.hugetlb=1");
}

TEST(qemu_environment, keeps_the_callers_other_tunables) {
    const auto env = qemu_environment_additions("glibc.malloc.arena_max=2");
    ASSERT_EQ(env.size(), 1u);
    EXPECT_EQ(env[0].second, "glibc.malloc.arena_max=2:glibc.malloc.hugetlb=1");
}

TEST(qemu_environment, leaves_a_huge_page_setting_of_the_callers_own) {
    EXPECT_TRUE(qemu_environment_additions("glibc.malloc.hugetlb=0").empty());
    EXPECT_TRUE(
        qemu_environment_additions("glibc.malloc.arena_max=2:glibc.malloc.hugetlb=2").empty());
}

TEST(qemu_environment, a_name_that_only_ends_like_the_setting_is_another_tunable) {
    const auto env = qemu_environment_additions("x.glibc.malloc.hugetlb=0");
    ASSERT_EQ(env.size(), 1u);
    EXPECT_EQ(env[0].second, "x.glibc.malloc.hugetlb=0:glibc.malloc.hugetlb=1");
}

} // namespace
} // namespace qmpkit::launcher::detail
