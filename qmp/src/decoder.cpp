#include <qmpkit/qmp/decoder.hpp>
#include <qmpkit/qmp/error.hpp>

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include <algorithm>

namespace qmpkit::qmp {
namespace {

namespace json = boost::json;

decode_result failure(errc code, std::string detail) {
    return {make_error_code(code), std::move(detail), {}};
}

std::string excerpt(std::string_view text) {
    constexpr std::size_t limit = 120;
    if (text.size() <= limit)
        return std::string(text);
    // Reserved up front: otherwise GCC 12 at -O2 warns (falsely) that the append overruns the
    // short-string buffer.
    std::string out;
    out.reserve(limit + 3);
    out.append(text.data(), limit);
    out.append("...");
    return out;
}

bool is_blank(std::string_view line) {
    return std::all_of(line.begin(), line.end(),
                       [](char c) { return c == ' ' || c == '\t' || c == '\r'; });
}

json::value id_of(const json::object& object) {
    const auto* id = object.if_contains("id");
    return id ? *id : json::value{};
}

} // namespace

decode_result classify(const json::value& document) {
    if (!document.is_object())
        return failure(errc::protocol_error,
                       "not a JSON object: " + excerpt(json::serialize(document)));
    const auto& object = document.get_object();

    if (const auto* qmp = object.if_contains("QMP")) {
        if (!qmp->is_object())
            return failure(errc::protocol_error, "greeting: \"QMP\" is not an object");
        greeting g;
        if (const auto* version = qmp->get_object().if_contains("version");
            version && version->is_object())
            g.version = version->get_object();
        if (const auto* caps = qmp->get_object().if_contains("capabilities");
            caps && caps->is_array()) {
            for (const auto& c : caps->get_array())
                if (c.is_string())
                    g.capabilities.emplace_back(c.get_string());
        }
        return {{}, {}, std::move(g)};
    }
    if (const auto* ret = object.if_contains("return"))
        return {{}, {}, reply{id_of(object), *ret}};
    if (const auto* err = object.if_contains("error")) {
        const auto* body = err->if_object();
        const auto* cls = body ? body->if_contains("class") : nullptr;
        const auto* desc = body ? body->if_contains("desc") : nullptr;
        if (!cls || !cls->is_string() || !desc || !desc->is_string())
            return failure(errc::protocol_error, "error reply without string class/desc: " +
                                                     excerpt(json::serialize(document)));
        return {{},
                {},
                error_reply{id_of(object), std::string(cls->get_string()),
                            std::string(desc->get_string())}};
    }
    if (const auto* name = object.if_contains("event")) {
        if (!name->is_string())
            return failure(errc::protocol_error, "event name is not a string");
        event e;
        e.name = name->get_string();
        if (const auto* data = object.if_contains("data"); data && data->is_object())
            e.data = data->get_object();
        if (const auto* ts = object.if_contains("timestamp"); ts && ts->is_object()) {
            auto field = [&](const char* key) -> std::int64_t {
                const auto* v = ts->get_object().if_contains(key);
                return v && v->is_int64() ? v->get_int64() : 0;
            };
            e.seconds = field("seconds");
            e.microseconds = field("microseconds");
        }
        return {{}, {}, std::move(e)};
    }
    return failure(errc::protocol_error, "neither greeting, return, error nor event: " +
                                             excerpt(json::serialize(document)));
}

decoder::decoder(std::size_t max_message_size)
    : max_message_size_(max_message_size) {}

void decoder::feed(std::string_view bytes) {
    buffer_.append(bytes);
}

void decoder::reset() {
    buffer_.clear();
    begin_ = scanned_ = 0;
    skipping_line_ = false;
}

bool decoder::discard_until(char delimiter) {
    const auto at = buffer_.find(delimiter, begin_);
    skipping_line_ = false;
    if (at == std::string::npos) {
        buffer_.clear();
        begin_ = scanned_ = 0;
        return false;
    }
    begin_ = scanned_ = at + 1;
    compact();
    return true;
}

void decoder::compact() {
    // Drop consumed bytes only once they dominate, so a long line fed in small chunks is not
    // moved over and over.
    if (begin_ > 0 && begin_ >= buffer_.size() / 2) {
        buffer_.erase(0, begin_);
        scanned_ -= begin_;
        begin_ = 0;
    }
}

std::optional<decode_result> decoder::next() {
    for (;;) {
        const auto newline = buffer_.find('\n', std::max(scanned_, begin_));
        if (newline == std::string::npos) {
            scanned_ = buffer_.size();
            if (!skipping_line_ && buffer_.size() - begin_ > max_message_size_) {
                skipping_line_ = true;
                begin_ = scanned_ = buffer_.size();
                compact();
                return failure(errc::message_too_large, "message longer than " +
                                                            std::to_string(max_message_size_) +
                                                            " bytes");
            }
            if (skipping_line_) {
                begin_ = scanned_ = buffer_.size();
            }
            compact();
            return std::nullopt;
        }

        const std::string_view line(buffer_.data() + begin_, newline - begin_);
        begin_ = scanned_ = newline + 1;
        if (skipping_line_) {
            skipping_line_ = false;
            compact();
            continue;
        }
        if (line.size() > max_message_size_) {
            compact();
            return failure(errc::message_too_large,
                           "message longer than " + std::to_string(max_message_size_) + " bytes");
        }
        if (is_blank(line))
            continue;

        boost::system::error_code ec;
        auto document = boost::json::parse(line, ec);
        std::optional<decode_result> result;
        if (ec)
            result = failure(errc::protocol_error,
                             "malformed JSON (" + ec.message() + "): " + excerpt(line));
        else
            result = classify(document);
        compact();
        return result;
    }
}

} // namespace qmpkit::qmp
