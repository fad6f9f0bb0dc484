#pragma once

// Private: UTF-8 handling for names and for printing text that came from users or files.

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

namespace qmpkit::snapshot::detail {

// Decodes the code point at s[i] and advances i past it; nullopt (i unchanged) for an invalid,
// overlong or truncated sequence or a surrogate.
std::optional<char32_t> next_code_point(std::string_view s, std::size_t& i) noexcept;

// Characters that change how the text around them prints: C0, DEL, C1, line and paragraph
// separators, bidi embeddings, overrides and isolates.
bool is_control(char32_t c) noexcept;

// The text with control characters and invalid bytes escaped (\n, \t, \x1b, \u202e), safe to
// write to a terminal or a one-line field. Everything else, backslashes included, is unchanged.
std::string printable(std::string_view s);

// printable(), cut to about max_chars characters with "..." when longer: names in messages.
std::string printable_short(std::string_view s, std::size_t max_chars = 60);

// Terminal columns the text takes (wide East Asian characters and emoji 2, combining marks 0),
// for aligning tables. Assumes printable text.
std::size_t display_width(std::string_view s) noexcept;

// "U+202E"
std::string code_point_name(char32_t c);

} // namespace qmpkit::snapshot::detail
