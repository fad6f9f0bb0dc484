#include <qmpkit/launcher/error.hpp>

#include <utility>

namespace qmpkit::launcher {

namespace {

std::string join_lines(const std::vector<diagnostic>& diagnostics) {
    std::string out;
    for (const auto& d : diagnostics) {
        if (!out.empty())
            out += '\n';
        out += to_string(d);
    }
    return out;
}

} // namespace

error::error(const std::string& message)
    : std::runtime_error(message) {}

error::error(diagnostic d)
    : error(std::vector<diagnostic>{std::move(d)}) {}

error::error(std::vector<diagnostic> diagnostics)
    : std::runtime_error(join_lines(diagnostics))
    , kind_(error_kind::definition)
    , diagnostics_(std::move(diagnostics)) {}

error::error(error_kind kind, const std::string& message)
    : std::runtime_error(message)
    , kind_(kind) {}

} // namespace qmpkit::launcher
