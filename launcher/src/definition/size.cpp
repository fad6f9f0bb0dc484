#include <qmpkit/launcher/error.hpp>
#include <qmpkit/launcher/size.hpp>

#include <array>
#include <limits>
#include <utility>

namespace qmpkit::launcher {

namespace {

using wide = unsigned __int128;

constexpr std::string_view unit_help = "use K, M, G or T, optionally followed by i, iB or B";

[[noreturn]] void fail(std::string_view text, std::string_view why) {
    throw error("invalid size '" + std::string(text) + "': " + std::string(why));
}

bool is_digit(char c) noexcept {
    return c >= '0' && c <= '9';
}

std::uint64_t unit_multiplier(char c) noexcept {
    switch (c) {
    case 'K':
    case 'k':
        return kib;
    case 'M':
    case 'm':
        return mib;
    case 'G':
    case 'g':
        return gib;
    case 'T':
    case 't':
        return tib;
    default:
        return 0;
    }
}

} // namespace

std::uint64_t parse_size(std::string_view text) {
    if (text.empty())
        fail(text, "empty");
    if (text.front() == '-')
        fail(text, "a size cannot be negative");

    std::size_t i = 0;
    wide whole = 0;
    for (; i < text.size() && is_digit(text[i]); ++i) {
        whole = whole * 10 + static_cast<unsigned>(text[i] - '0');
        if (whole > std::numeric_limits<std::uint64_t>::max())
            fail(text, "too large");
    }
    if (i == 0)
        fail(text, std::string("expected a number of bytes, or a number and a unit (") +
                       std::string(unit_help) + ")");

    // The fraction is kept as digits over a power of ten so that "1.5G" is computed exactly.
    wide fraction = 0;
    wide scale = 1;
    if (i < text.size() && text[i] == '.') {
        ++i;
        std::size_t first = i;
        std::size_t last_nonzero = i;
        for (; i < text.size() && is_digit(text[i]); ++i)
            if (text[i] != '0')
                last_nonzero = i + 1;
        if (i == first)
            fail(text, "expected digits after the decimal point");
        if (last_nonzero - first > 18)
            fail(text, "too many decimal places");
        for (std::size_t k = first; k < last_nonzero; ++k) {
            fraction = fraction * 10 + static_cast<unsigned>(text[k] - '0');
            scale *= 10;
        }
    }

    std::string_view suffix = text.substr(i);
    std::uint64_t multiplier = 1;
    if (!suffix.empty() && suffix != "B") {
        multiplier = unit_multiplier(suffix.front());
        auto rest = suffix.substr(1);
        if (multiplier == 0 || !(rest.empty() || rest == "i" || rest == "iB" || rest == "B"))
            fail(text,
                 "unknown unit '" + std::string(suffix) + "' (" + std::string(unit_help) + ")");
    }

    wide fractional_bytes = fraction * multiplier;
    if (fractional_bytes % scale != 0)
        fail(text, "not a whole number of bytes");
    wide bytes = whole * multiplier + fractional_bytes / scale;
    if (bytes > std::numeric_limits<std::uint64_t>::max())
        fail(text, "too large");
    return static_cast<std::uint64_t>(bytes);
}

std::string format_size(std::uint64_t bytes) {
    static constexpr std::array<std::pair<std::uint64_t, char>, 4> units{
        {{tib, 'T'}, {gib, 'G'}, {mib, 'M'}, {kib, 'K'}}};
    if (bytes != 0)
        for (auto [multiplier, letter] : units)
            if (bytes % multiplier == 0)
                return std::to_string(bytes / multiplier) + letter;
    return std::to_string(bytes);
}

} // namespace qmpkit::launcher
