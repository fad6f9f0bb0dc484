#pragma once

#include <qmpkit/launcher/diagnostic.hpp>

#include <stdexcept>
#include <string>
#include <vector>

namespace qmpkit::launcher {

// The one exception type of the launcher layer. A definition problem carries its diagnostics,
// and what() is all of them, one per line, so that a single catch can show every problem at once.
class error : public std::runtime_error {
public:
    explicit error(const std::string& message);
    explicit error(diagnostic d);
    explicit error(std::vector<diagnostic> diagnostics);

    // Empty when the error is not about a definition.
    const std::vector<diagnostic>& diagnostics() const noexcept { return diagnostics_; }

private:
    std::vector<diagnostic> diagnostics_;
};

} // namespace qmpkit::launcher
