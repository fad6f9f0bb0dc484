#include <qmpkit/launcher/source_map.hpp>

#include <utility>

namespace qmpkit::launcher {

std::string_view parent_field(std::string_view field) {
    if (!field.empty() && field.back() == ']') {
        auto open = field.rfind('[');
        return open == std::string_view::npos ? std::string_view{} : field.substr(0, open);
    }
    auto dot = field.rfind('.');
    return dot == std::string_view::npos ? std::string_view{} : field.substr(0, dot);
}

source_map::source_map(std::string file)
    : file_(std::move(file)) {}

void source_map::set(std::string field, int line, int column) {
    positions_.insert_or_assign(std::move(field), source_location{file_, line, column});
}

const source_location* source_map::find(std::string_view field) const {
    auto it = positions_.find(field);
    return it == positions_.end() ? nullptr : &it->second;
}

source_location source_map::locate(std::string_view field) const {
    for (;;) {
        if (const auto* found = find(field))
            return *found;
        if (field.empty())
            return source_location{file_, 0, 0};
        field = parent_field(field);
    }
}

diagnostic source_map::make_diagnostic(std::string field, std::string message) const {
    auto where = locate(field);
    return diagnostic{std::move(where.file), where.line, where.column, std::move(field),
                      std::move(message)};
}

} // namespace qmpkit::launcher
