// Fuzzes qmp::decoder with arbitrary bytes in arbitrary chunking.
//
// Input: [payload][tail of 6 bytes]. The tail (read from the end by FuzzedDataProvider) picks
// the decoder's size limit, the largest chunk and the seed of the chunk sizes; the payload is
// what qemu would have sent. Invariants:
//   - the messages (and errors) are the same whatever the chunking, and the same as decoding
//     every line on its own: one result per non-blank line, message_too_large for a line over
//     the limit (also for an unfinished last line), nothing for an unfinished line within it;
//   - every message is well-formed: classifying it again, written back as JSON, yields it again;
//   - an error comes with a detail text and no message;
//   - pending_bytes() is what is left of the unfinished last line.
// A second mode mixes feeding with discard_until and reset and checks only that nothing breaks.

#include "fuzz_check.hpp"

#include <qmpkit/qmp/decoder.hpp>
#include <qmpkit/qmp/error.hpp>

#include <boost/json.hpp>

#include <array>
#include <cstddef>
#include <cstdint>
#include <fuzzer/FuzzedDataProvider.h>
#include <random>
#include <string>
#include <string_view>
#include <vector>

namespace {

namespace json = boost::json;
namespace qmp = qmpkit::qmp;
using qmpkit::fuzz::check;

json::value to_json(const qmp::message& m) {
    return std::visit(
        [](const auto& v) -> json::value {
            using T = std::decay_t<decltype(v)>;
            if constexpr (std::is_same_v<T, qmp::greeting>) {
                json::array caps;
                for (const auto& c : v.capabilities)
                    caps.emplace_back(c);
                return json::object{
                    {"QMP", json::object{{"version", v.version}, {"capabilities", caps}}}};
            } else if constexpr (std::is_same_v<T, qmp::reply>) {
                return json::object{{"return", v.value}, {"id", v.id}};
            } else if constexpr (std::is_same_v<T, qmp::error_reply>) {
                return json::object{
                    {"error", json::object{{"class", v.error_class}, {"desc", v.description}}},
                    {"id", v.id}};
            } else {
                return json::object{{"event", v.name},
                                    {"data", v.data},
                                    {"timestamp", json::object{{"seconds", v.seconds},
                                                               {"microseconds", v.microseconds}}}};
            }
        },
        m);
}

bool same(const qmp::message& a, const qmp::message& b) {
    return a.index() == b.index() && to_json(a) == to_json(b);
}

bool same(const qmp::decode_result& a, const qmp::decode_result& b) {
    return a.error == b.error && a.detail == b.detail && same(a.msg, b.msg);
}

void check_well_formed(const qmp::decode_result& r) {
    if (r.error) {
        check(r.error == qmp::errc::protocol_error || r.error == qmp::errc::message_too_large,
              "an error other than protocol_error or message_too_large");
        check(!r.detail.empty(), "an error without detail");
        check(same(r.msg, qmp::message{}), "an error that carries a message");
        return;
    }
    const auto again = qmp::classify(to_json(r.msg));
    check(!again.error, "a message that does not classify again");
    check(same(again.msg, r.msg), "a message that classifies again as something else");
    if (const auto* g = std::get_if<qmp::greeting>(&r.msg)) {
        (void)g->version_string();
        (void)g->offers("oob");
    }
    if (const auto* e = std::get_if<qmp::event>(&r.msg))
        (void)e->timestamp();
    if (const auto* reply = std::get_if<qmp::reply>(&r.msg))
        (void)qmp::numeric_id(reply->id);
}

// Feeds the payload in chunks of 1..max_chunk bytes, taking every result after each feed.
std::vector<qmp::decode_result> decode_chunked(std::string_view payload, std::size_t limit,
                                               std::size_t max_chunk, std::uint32_t seed,
                                               std::size_t& pending) {
    qmp::decoder d(limit);
    std::minstd_rand rng(seed);
    std::vector<qmp::decode_result> out;
    for (std::size_t at = 0; at < payload.size();) {
        const auto n = std::min<std::size_t>(payload.size() - at, 1 + rng() % max_chunk);
        d.feed(payload.substr(at, n));
        at += n;
        while (auto r = d.next())
            out.push_back(std::move(*r));
    }
    check(!d.next(), "a result without new bytes");
    pending = d.pending_bytes();
    return out;
}

// The same, line by line with nothing but boost::json and classify.
std::vector<qmp::decode_result> decode_by_lines(std::string_view payload, std::size_t limit,
                                                std::size_t& pending) {
    std::vector<qmp::decode_result> out;
    auto too_large = [&] {
        out.push_back({qmp::make_error_code(qmp::errc::message_too_large),
                       "message longer than " + std::to_string(limit) + " bytes",
                       {}});
    };
    std::size_t at = 0;
    for (auto nl = payload.find('\n'); nl != std::string_view::npos;
         at = nl + 1, nl = payload.find('\n', at)) {
        const auto line = payload.substr(at, nl - at);
        if (line.size() > limit) {
            too_large();
            continue;
        }
        if (line.find_first_not_of(" \t\r") == std::string_view::npos)
            continue;
        boost::system::error_code ec;
        auto doc = json::parse(line, ec);
        if (ec) {
            // The detail text is the decoder's own business; compare the code only.
            out.push_back({qmp::make_error_code(qmp::errc::protocol_error), {}, {}});
            continue;
        }
        out.push_back(qmp::classify(doc));
    }
    const auto rest = payload.size() - at;
    if (rest > limit)
        too_large();
    pending = rest > limit ? 0 : rest;
    return out;
}

void check_equal_streams(const std::vector<qmp::decode_result>& model,
                         const std::vector<qmp::decode_result>& got, const char* what) {
    check(model.size() == got.size(), what);
    for (std::size_t i = 0; i < model.size(); ++i) {
        if (model[i].error == qmp::errc::protocol_error && model[i].detail.empty()) {
            check(got[i].error == qmp::errc::protocol_error, what);
            continue;
        }
        check(same(model[i], got[i]), what);
    }
}

constexpr std::array<std::size_t, 8> limits = {
    qmp::decoder::default_max_message_size, 1, 16, 40, 64, 128, 1024, 4096};
constexpr std::array<std::size_t, 8> chunk_caps = {1, 2, 3, 7, 16, 64, 512, 1 << 20};

void mixed_operations(FuzzedDataProvider& in) {
    qmp::decoder d(limits[in.ConsumeIntegral<std::uint8_t>() % limits.size()]);
    while (in.remaining_bytes() > 0) {
        switch (in.ConsumeIntegralInRange<int>(0, 5)) {
        case 0:
        case 1:
            d.feed(in.ConsumeRandomLengthString(256));
            break;
        case 2:
            while (auto r = d.next())
                check_well_formed(*r);
            break;
        case 3: {
            const auto before = d.pending_bytes();
            d.discard_until(static_cast<char>(in.ConsumeBool() ? '\xff' : '\n'));
            check(d.pending_bytes() <= before, "discard_until added bytes");
            break;
        }
        case 4:
            d.reset();
            check(d.pending_bytes() == 0, "bytes left after reset");
            break;
        default:
            if (auto r = d.next())
                check_well_formed(*r);
            break;
        }
    }
    while (auto r = d.next())
        check_well_formed(*r);
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    FuzzedDataProvider in(data, size);
    const auto mode = in.ConsumeIntegral<std::uint8_t>();
    if (mode >= 0xf0) {
        mixed_operations(in);
        return 0;
    }
    const auto limit = limits[mode % limits.size()];
    const auto max_chunk = chunk_caps[(mode / limits.size()) % chunk_caps.size()];
    const auto seed = in.ConsumeIntegral<std::uint32_t>();
    in.ConsumeIntegral<std::uint8_t>(); // reserved: keeps the tail 6 bytes long
    const auto payload = in.ConsumeRemainingBytesAsString();

    std::size_t pending_model = 0, pending_whole = 0, pending_chunked = 0;
    const auto model = decode_by_lines(payload, limit, pending_model);
    const auto whole = decode_chunked(payload, limit, payload.size() + 1, seed, pending_whole);
    const auto chunked = decode_chunked(payload, limit, max_chunk, seed, pending_chunked);

    for (const auto& r : chunked)
        check_well_formed(r);
    check_equal_streams(model, whole, "one chunk: not what the lines decode to on their own");
    check_equal_streams(whole, chunked, "split into chunks: not what one chunk decodes to");
    for (std::size_t i = 0; i < whole.size(); ++i)
        check(same(whole[i], chunked[i]), "split into chunks: another detail text");
    check(pending_whole == pending_model, "one chunk: pending_bytes() is off");
    check(pending_chunked == pending_model, "split into chunks: pending_bytes() is off");
    return 0;
}
