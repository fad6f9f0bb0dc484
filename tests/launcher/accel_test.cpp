#include <qmpkit/launcher/accel.hpp>

#include <gtest/gtest.h>

namespace qmpkit::launcher {
namespace {

constexpr std::string_view intel = "processor\t: 0\n"
                                   "vendor_id\t: GenuineIntel\n"
                                   "flags\t\t: fpu vme de pse tsc msr vmx smx est\n"
                                   "bugs\t\t: spectre_v1\n";
constexpr std::string_view amd = "processor\t: 0\n"
                                 "flags\t\t: fpu sse2 svm extapic\n";
constexpr std::string_view no_virtualization = "processor\t: 0\n"
                                               "flags\t\t: fpu vme svm_lock vmx_ept_x\n"
                                               "vmx flags\t: vnmi preemption_timer\n";

TEST(accel, finds_virtualization_flags) {
    EXPECT_TRUE(has_hardware_virtualization(intel));
    EXPECT_TRUE(has_hardware_virtualization(amd));
    EXPECT_TRUE(has_hardware_virtualization("flags: vmx"));
    EXPECT_FALSE(has_hardware_virtualization(no_virtualization));
    EXPECT_FALSE(has_hardware_virtualization(""));
    EXPECT_FALSE(has_hardware_virtualization("model name : vmx svm\n"));
}

TEST(accel, auto_needs_both_the_cpu_and_the_device) {
    EXPECT_EQ(resolve_accel(accel_mode::automatic, {std::string(intel), true}), accel_mode::kvm);
    EXPECT_EQ(resolve_accel(accel_mode::automatic, {std::string(amd), true}), accel_mode::kvm);
    EXPECT_EQ(resolve_accel(accel_mode::automatic, {std::string(intel), false}), accel_mode::tcg);
    EXPECT_EQ(resolve_accel(accel_mode::automatic, {std::string(no_virtualization), true}),
              accel_mode::tcg);
    EXPECT_EQ(resolve_accel(accel_mode::automatic, {"", false}), accel_mode::tcg);
}

TEST(accel, an_explicit_choice_is_honoured) {
    EXPECT_EQ(resolve_accel(accel_mode::kvm, {"", false}), accel_mode::kvm);
    EXPECT_EQ(resolve_accel(accel_mode::tcg, {std::string(intel), true}), accel_mode::tcg);
    EXPECT_EQ(resolve_accel(accel_mode::kvm), accel_mode::kvm);
    EXPECT_EQ(resolve_accel(accel_mode::tcg), accel_mode::tcg);
}

TEST(accel, this_host_resolves_to_something_concrete) {
    auto probe = probe_host();
    auto resolved = resolve_accel(accel_mode::automatic);
    EXPECT_EQ(resolved, resolve_accel(accel_mode::automatic, probe));
    EXPECT_NE(resolved, accel_mode::automatic);
}

} // namespace
} // namespace qmpkit::launcher
