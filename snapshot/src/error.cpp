#include <qmpkit/snapshot/error.hpp>

namespace qmpkit::snapshot {

std::string_view to_string(error_kind kind) noexcept {
    switch (kind) {
    case error_kind::other:
        return "other";
    case error_kind::not_found:
        return "not_found";
    case error_kind::name_taken:
        return "name_taken";
    case error_kind::invalid_name:
        return "invalid_name";
    case error_kind::metadata_corrupt:
        return "metadata_corrupt";
    case error_kind::metadata_too_new:
        return "metadata_too_new";
    case error_kind::metadata_io:
        return "metadata_io";
    case error_kind::not_running:
        return "not_running";
    case error_kind::running:
        return "running";
    case error_kind::config_mismatch:
        return "config_mismatch";
    case error_kind::unsupported:
        return "unsupported";
    case error_kind::drift:
        return "drift";
    case error_kind::timeout:
        return "timeout";
    }
    return "other";
}

error::error(const std::string& message)
    : std::runtime_error(message) {}

error::error(error_kind kind, const std::string& message)
    : std::runtime_error(message)
    , kind_(kind) {}

} // namespace qmpkit::snapshot
