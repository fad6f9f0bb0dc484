#include <qmpkit/launcher/diagnostic.hpp>

#include <algorithm>
#include <climits>
#include <utility>

namespace qmpkit::launcher {

std::string to_string(const diagnostic& d) {
    std::string out;
    if (!d.file.empty()) {
        out += d.file;
        if (d.line > 0) {
            out += ':' + std::to_string(d.line);
            if (d.column > 0)
                out += ':' + std::to_string(d.column);
        }
        out += ": ";
    }
    if (!d.field.empty())
        out += d.field + ": ";
    out += d.message;
    return out;
}

void sort_by_position(std::vector<diagnostic>& diagnostics) {
    auto key = [](const diagnostic& d) {
        return std::pair(d.line == 0 ? INT_MAX : d.line, d.column);
    };
    std::stable_sort(diagnostics.begin(), diagnostics.end(),
                     [&](const diagnostic& a, const diagnostic& b) { return key(a) < key(b); });
}

} // namespace qmpkit::launcher
