#pragma once

// Private. What a qemu that qmpkit starts has in its environment beyond the caller's.
//
// glibc's malloc asks for transparent huge pages (GLIBC_TUNABLES glibc.malloc.hugetlb=1) for
// qemu. Starting qemu is mostly page faults on its heap, and with `-kernel`/`-initrd` the whole
// kernel and initrd are read into malloc'd buffers: on these machines a start of the tiny guest's
// qemu took 8,300 page faults and 155 ms of CPU, and with the setting 3,300 faults and 124 ms,
// its resident memory the same within 1 MiB. Every standby, template reset, clone and boot
// starts a qemu, so this is CPU that back-to-back resets no longer compete with. Where glibc is
// older than 2.35 or transparent huge pages are "never", glibc ignores the setting. A setting of
// the caller's own for glibc.malloc.hugetlb is kept.

#include "host/environment.hpp"

#include <cstdlib>
#include <string>

namespace qmpkit::launcher::detail {

inline environment_additions qemu_environment(const char* caller_tunables) {
    const std::string tunables = caller_tunables ? caller_tunables : "";
    if (tunables.find("glibc.malloc.hugetlb=") != std::string::npos)
        return {};
    return {
        {"GLIBC_TUNABLES", (tunables.empty() ? "" : tunables + ":") + "glibc.malloc.hugetlb=1"}};
}

inline environment_additions qemu_environment() {
    return qemu_environment(std::getenv("GLIBC_TUNABLES"));
}

} // namespace qmpkit::launcher::detail
