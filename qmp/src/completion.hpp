#pragma once

// Private helpers of the QMP layer's asynchronous operations: posting a completion
// (post_completion.hpp, shared with the layers above) and the logger they write to.

#include <qmpkit/qmp/post_completion.hpp>

#include <memory>

namespace spdlog {
class logger;
}

namespace qmpkit::qmp::detail {

// options.logger, or a logger that drops everything.
std::shared_ptr<spdlog::logger> logger_or_null(const std::shared_ptr<spdlog::logger>& logger);

} // namespace qmpkit::qmp::detail
