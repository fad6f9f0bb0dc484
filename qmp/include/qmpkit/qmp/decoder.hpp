#pragma once

// Sans-I/O QMP decoder: feed it bytes as they arrive, in any chunking, and take complete
// messages out. QMP frames every message as one line of JSON ("\r\n" from qemu, "\n" accepted),
// so a malformed or oversized line is reported and skipped without losing the messages around it.

#include <qmpkit/qmp/message.hpp>

#include <boost/system/error_code.hpp>

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

namespace qmpkit::qmp {

// One decoded line: a message, or an error (errc::protocol_error / errc::message_too_large)
// with a detail text for the log.
struct decode_result {
    boost::system::error_code error;
    std::string detail;
    message msg;
};

// Classifies one parsed JSON document as a QMP message.
decode_result classify(const boost::json::value& document);

class decoder {
public:
    static constexpr std::size_t default_max_message_size = 64 * 1024 * 1024;

    explicit decoder(std::size_t max_message_size = default_max_message_size);

    void feed(std::string_view bytes);

    // The next complete message or error, or nullopt until more bytes arrive.
    std::optional<decode_result> next();

    // Drops the bytes held up to and including the first `delimiter` and returns true; when none
    // has arrived yet, drops everything held and returns false (call again after the next feed).
    // A partial line before the delimiter is dropped with it. The guest agent sends 0xFF before
    // its answer to guest-sync-delimited so that a client can skip stale bytes this way.
    bool discard_until(char delimiter);

    // Bytes held that do not yet form a complete line.
    std::size_t pending_bytes() const noexcept { return buffer_.size() - begin_; }

    void reset();

private:
    void compact();

    std::size_t max_message_size_;
    std::string buffer_;
    std::size_t begin_ = 0;      // start of the current line in buffer_
    std::size_t scanned_ = 0;    // everything before this offset holds no '\n' past begin_
    bool skipping_line_ = false; // inside an oversized line that has been reported already
};

} // namespace qmpkit::qmp
