#pragma once

#include <qmpkit/launcher/vm_definition.hpp>

#include <string>
#include <string_view>

namespace qmpkit::launcher {

// What the host offers for hardware acceleration, gathered once so that the decision in
// resolve_accel can be tested with made-up hosts.
struct accel_probe {
    std::string cpuinfo;     // contents of /proc/cpuinfo (empty if unreadable)
    bool kvm_usable = false; // /dev/kvm opened read-write
};

accel_probe probe_host();

// True when a "flags" line of cpuinfo lists vmx (Intel VT-x) or svm (AMD-V).
bool has_hardware_virtualization(std::string_view cpuinfo) noexcept;

// automatic becomes kvm when the CPU has virtualization extensions and /dev/kvm is usable, tcg
// otherwise. kvm and tcg are returned as they are: an explicit kvm that cannot work is left to
// qemu to report, rather than silently running a hundred times slower.
accel_mode resolve_accel(accel_mode requested, const accel_probe& probe) noexcept;

// The same, probing this host only when requested is automatic.
accel_mode resolve_accel(accel_mode requested);

} // namespace qmpkit::launcher
