#pragma once

// Errors of the QMP layer. Asynchronous operations complete with a boost::system::error_code
// in the qmp::errc category; the blocking facade (client) throws qmp::error, which carries the
// same code plus the diagnostics a person needs: the command sent and qemu's error class/desc.

#include <boost/system/error_code.hpp>

#include <stdexcept>
#include <string>

namespace qmpkit::qmp {

enum class errc {
    protocol_error = 1, // the peer sent bytes that are not a QMP message
    message_too_large,  // a message exceeded client_options::max_message_size
    command_failed,     // qemu answered with an error object ({class, desc})
    hmp_error,          // human-monitor-command answered text starting with "Error:"
    negotiation_failed, // no greeting, or qmp_capabilities refused
    disconnected,       // the socket closed under us: qemu quit or died
    closed,             // the client was closed locally
    not_connected,      // an operation needs a connected, negotiated client
    timeout,            // the operation's deadline passed
    cancelled,          // the caller cancelled the operation
    fd_passing_failed,  // sendmsg with SCM_RIGHTS failed
};

const boost::system::error_category& qmp_category() noexcept;

inline boost::system::error_code make_error_code(errc e) noexcept {
    return {static_cast<int>(e), qmp_category()};
}

// What went wrong, in terms a person can act on.
struct diagnostics {
    std::string command;     // the QMP command that was sent (empty if none)
    std::string error_class; // qemu's error class, e.g. "CommandNotFound" (command_failed only)
    std::string description; // qemu's desc, or a description of the local failure
};

// The one exception type of the QMP layer (thrown by the blocking facade).
class error : public std::runtime_error {
public:
    error(boost::system::error_code code, diagnostics diag);

    const boost::system::error_code& code() const noexcept { return code_; }
    const diagnostics& diag() const noexcept { return diag_; }

private:
    boost::system::error_code code_;
    diagnostics diag_;
};

} // namespace qmpkit::qmp

template <>
struct boost::system::is_error_code_enum<qmpkit::qmp::errc> : std::true_type {};
