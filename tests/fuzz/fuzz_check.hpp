#pragma once

// What the fuzz targets share: a failed invariant prints what broke and aborts, so that libFuzzer
// keeps the input as a crash.

#include <cstdio>
#include <cstdlib>

namespace qmpkit::fuzz {

inline void check(bool ok, const char* what) {
    if (ok)
        return;
    std::fprintf(stderr, "fuzz invariant broken: %s\n", what);
    std::fflush(stderr);
    std::abort();
}

} // namespace qmpkit::fuzz
