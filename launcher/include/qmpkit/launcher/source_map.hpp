#pragma once

#include <qmpkit/launcher/diagnostic.hpp>

#include <map>
#include <string>
#include <string_view>

namespace qmpkit::launcher {

struct source_location {
    std::string file;
    int line = 0; // 1-based; 0 when unknown
    int column = 0;

    friend bool operator==(const source_location&, const source_location&) = default;
};

// Where each field of a loaded definition was written, so that any later layer can report a
// problem against the YAML line the user has to edit. Field paths look like "memory",
// "disks[0].format", "network.forwards[1].host_port".
class source_map {
public:
    source_map() = default;
    explicit source_map(std::string file);

    const std::string& file() const noexcept { return file_; }
    bool empty() const noexcept { return positions_.empty(); }

    void set(std::string field, int line, int column);

    // The exact field, if it was written in the YAML.
    const source_location* find(std::string_view field) const;

    // The field, or else the closest enclosing one that was written: a defaulted
    // "disks[0].format" is reported at "disks[0]". Line 0 when nothing encloses it.
    source_location locate(std::string_view field) const;

    diagnostic make_diagnostic(std::string field, std::string message) const;

    // Where a definition came from is not part of its value: a definition dumped and loaded
    // again, or built in code, compares equal to the original.
    friend bool operator==(const source_map&, const source_map&) noexcept { return true; }

private:
    std::string file_;
    std::map<std::string, source_location, std::less<>> positions_;
};

// "disks[1].size" -> "disks[1]" -> "disks" -> "".
std::string_view parent_field(std::string_view field);

} // namespace qmpkit::launcher
