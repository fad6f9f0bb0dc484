#pragma once

// Private. What a qemu that qmpkit starts has in its environment beyond the caller's.
//
// glibc's malloc asks for transparent huge pages for qemu (GLIBC_TUNABLES
// glibc.malloc.hugetlb=1): starting qemu is mostly page faults on its heap, where `-kernel` and
// `-initrd` are read whole, and every standby, template reset, clone and boot starts one. The
// figures are in configs/README.md ("huge pages"). glibc acts on it where transparent huge pages
// are "madvise" (Debian's default); a caller's own glibc.malloc.hugetlb setting is kept.

#include "host/environment.hpp"

#include <cstdlib>
#include <sstream>
#include <string>

namespace qmpkit::launcher::detail {

// `caller_tunables`: the caller's GLIBC_TUNABLES, "name=value" items separated by ':', or null.
inline environment_additions qemu_environment_additions(const char* caller_tunables) {
    const std::string tunables = caller_tunables ? caller_tunables : "";
    std::istringstream items(tunables);
    for (std::string item; std::getline(items, item, ':');)
        if (item.starts_with("glibc.malloc.hugetlb="))
            return {};
    return {
        {"GLIBC_TUNABLES", (tunables.empty() ? "" : tunables + ":") + "glibc.malloc.hugetlb=1"}};
}

inline environment_additions qemu_environment_additions() {
    return qemu_environment_additions(std::getenv("GLIBC_TUNABLES"));
}

} // namespace qmpkit::launcher::detail
