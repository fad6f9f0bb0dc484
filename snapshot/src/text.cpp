#include "text.hpp"

#include <array>
#include <cstdio>
#include <utility>

namespace qmpkit::snapshot::detail {
namespace {

bool in(char32_t c, char32_t lo, char32_t hi) noexcept {
    return c >= lo && c <= hi;
}

bool is_zero_width(char32_t c) noexcept {
    return in(c, 0x0300, 0x036F) || in(c, 0x0483, 0x0489) || in(c, 0x0591, 0x05BD) ||
           in(c, 0x1AB0, 0x1AFF) || in(c, 0x1DC0, 0x1DFF) || in(c, 0x200B, 0x200F) ||
           in(c, 0x20D0, 0x20FF) || in(c, 0xFE00, 0xFE0F) || in(c, 0xFE20, 0xFE2F) ||
           in(c, 0xE0100, 0xE01EF);
}

bool is_wide(char32_t c) noexcept {
    static constexpr std::array<std::pair<char32_t, char32_t>, 15> ranges{{
        {0x1100, 0x115F},   // Hangul Jamo
        {0x2E80, 0x303E},   // CJK radicals, punctuation
        {0x3041, 0x33FF},   // kana, CJK compatibility
        {0x3400, 0x4DBF},   // CJK extension A
        {0x4E00, 0x9FFF},   // CJK unified ideographs
        {0xA000, 0xA4CF},   // Yi
        {0xAC00, 0xD7A3},   // Hangul syllables
        {0xF900, 0xFAFF},   // CJK compatibility ideographs
        {0xFE30, 0xFE4F},   // CJK compatibility forms
        {0xFF00, 0xFF60},   // fullwidth forms
        {0xFFE0, 0xFFE6},   // fullwidth signs
        {0x1F300, 0x1F64F}, // pictographs, emoticons
        {0x1F900, 0x1F9FF}, // supplemental pictographs
        {0x20000, 0x2FFFD}, // CJK extensions
        {0x30000, 0x3FFFD},
    }};
    for (const auto& [lo, hi] : ranges)
        if (in(c, lo, hi))
            return true;
    return false;
}

void append_utf8(std::string& out, std::string_view s, std::size_t from, std::size_t to) {
    out.append(s.substr(from, to - from));
}

} // namespace

std::optional<char32_t> next_code_point(std::string_view s, std::size_t& i) noexcept {
    if (i >= s.size())
        return std::nullopt;
    const auto b0 = static_cast<unsigned char>(s[i]);
    if (b0 < 0x80) {
        ++i;
        return b0;
    }
    std::size_t length = 0;
    char32_t c = 0;
    char32_t min = 0;
    if ((b0 & 0xE0) == 0xC0) {
        length = 2;
        c = b0 & 0x1F;
        min = 0x80;
    } else if ((b0 & 0xF0) == 0xE0) {
        length = 3;
        c = b0 & 0x0F;
        min = 0x800;
    } else if ((b0 & 0xF8) == 0xF0) {
        length = 4;
        c = b0 & 0x07;
        min = 0x10000;
    } else {
        return std::nullopt;
    }
    if (s.size() - i < length)
        return std::nullopt;
    for (std::size_t k = 1; k < length; ++k) {
        const auto b = static_cast<unsigned char>(s[i + k]);
        if ((b & 0xC0) != 0x80)
            return std::nullopt;
        c = (c << 6) | (b & 0x3F);
    }
    if (c < min || c > 0x10FFFF || in(c, 0xD800, 0xDFFF))
        return std::nullopt;
    i += length;
    return c;
}

bool is_control(char32_t c) noexcept {
    return c < 0x20 || in(c, 0x7F, 0x9F) || c == 0x2028 || c == 0x2029 || in(c, 0x202A, 0x202E) ||
           in(c, 0x2066, 0x2069);
}

std::string code_point_name(char32_t c) {
    char buffer[16];
    std::snprintf(buffer, sizeof buffer, "U+%04X", static_cast<unsigned>(c));
    return buffer;
}

std::string printable(std::string_view s) {
    std::string out;
    out.reserve(s.size());
    std::size_t i = 0;
    while (i < s.size()) {
        const std::size_t start = i;
        const auto c = next_code_point(s, i);
        char buffer[16];
        if (!c) {
            std::snprintf(buffer, sizeof buffer, "\\x%02x", static_cast<unsigned char>(s[i]));
            out += buffer;
            ++i;
        } else if (*c == '\n') {
            out += "\\n";
        } else if (*c == '\t') {
            out += "\\t";
        } else if (*c == '\r') {
            out += "\\r";
        } else if (*c < 0x80 && is_control(*c)) {
            std::snprintf(buffer, sizeof buffer, "\\x%02x", static_cast<unsigned>(*c));
            out += buffer;
        } else if (is_control(*c)) {
            std::snprintf(buffer, sizeof buffer, "\\u%04x", static_cast<unsigned>(*c));
            out += buffer;
        } else {
            append_utf8(out, s, start, i);
        }
    }
    return out;
}

std::string printable_short(std::string_view s, std::size_t max_chars) {
    const std::string all = printable(s);
    std::size_t i = 0;
    std::size_t chars = 0;
    while (i < all.size() && chars < max_chars) {
        if (!next_code_point(all, i))
            ++i; // cannot happen: printable() output is valid UTF-8
        ++chars;
    }
    return i < all.size() ? all.substr(0, i) + "..." : all;
}

std::size_t display_width(std::string_view s) noexcept {
    std::size_t width = 0;
    std::size_t i = 0;
    while (i < s.size()) {
        const auto c = next_code_point(s, i);
        if (!c) {
            ++i;
            ++width;
        } else if (is_zero_width(*c)) {
        } else {
            width += is_wide(*c) ? 2 : 1;
        }
    }
    return width;
}

} // namespace qmpkit::snapshot::detail
