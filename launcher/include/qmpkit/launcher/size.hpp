#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace qmpkit::launcher {

inline constexpr std::uint64_t kib = 1024;
inline constexpr std::uint64_t mib = 1024 * kib;
inline constexpr std::uint64_t gib = 1024 * mib;
inline constexpr std::uint64_t tib = 1024 * gib;

// Bytes as an integer ("4096", "512B"), or a number and a binary unit K/M/G/T, optionally
// followed by i, iB or B ("512M", "1GiB", "64MiB", "1.5G"). A fraction must come out as whole
// bytes. Throws error (without a location; the caller knows the field) when the text is not a size.
std::uint64_t parse_size(std::string_view text);

// The shortest exact spelling parse_size reads back: 268435456 -> "256M", 1610612736 -> "1536M",
// 1000 -> "1000".
std::string format_size(std::uint64_t bytes);

} // namespace qmpkit::launcher
