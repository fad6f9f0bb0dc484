#pragma once

#include <qmpkit/qmp/command_router.hpp>
#include <qmpkit/qmp/decoder.hpp>

#include <chrono>
#include <cstddef>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace spdlog {
class logger;
}

namespace qmpkit::qmp {

struct client_options {
    // Default deadline of a command; execute_options::timeout overrides it per command.
    std::chrono::milliseconds command_timeout{std::chrono::seconds(30)};
    // Deadline for connecting and for the greeting plus qmp_capabilities.
    std::chrono::milliseconds connect_timeout{std::chrono::seconds(10)};
    std::size_t max_in_flight = command_router::default_max_in_flight;
    std::size_t max_message_size = decoder::default_max_message_size;
    // Events a listener holds before the oldest are dropped (with a warning).
    std::size_t listener_queue_limit = 4096;
    // Every QMP message is logged at trace level. Null: the client logs nothing.
    std::shared_ptr<spdlog::logger> logger;
};

struct execute_options {
    // Overrides client_options::command_timeout; zero means no deadline.
    std::optional<std::chrono::milliseconds> timeout;
    // Send as exec-oob (only when qemu offered and the client negotiated "oob").
    bool out_of_band = false;
    // File descriptors sent with the command in SCM_RIGHTS ancillary data (getfd, add-fd).
    // They stay owned by the caller.
    std::vector<int> fds;
};

} // namespace qmpkit::qmp
