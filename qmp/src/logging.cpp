#include "completion.hpp"

#include <spdlog/logger.h>

namespace qmpkit::qmp::detail {

std::shared_ptr<spdlog::logger> logger_or_null(const std::shared_ptr<spdlog::logger>& logger) {
    if (logger)
        return logger;
    // A logger without sinks, switched off, so level checks fail fast.
    static const auto null_logger = [] {
        auto l = std::make_shared<spdlog::logger>("qmpkit-null");
        l->set_level(spdlog::level::off);
        return l;
    }();
    return null_logger;
}

} // namespace qmpkit::qmp::detail
