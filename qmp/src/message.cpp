#include <qmpkit/qmp/message.hpp>

#include <algorithm>
#include <optional>

namespace qmpkit::qmp {

bool greeting::offers(std::string_view capability) const {
    for (const auto& c : capabilities)
        if (c == capability)
            return true;
    return false;
}

std::string greeting::version_string() const {
    const auto* qemu = version.if_contains("qemu");
    if (!qemu || !qemu->is_object())
        return {};
    const auto& v = qemu->get_object();
    auto part = [&](const char* key) -> std::string {
        const auto* p = v.if_contains(key);
        return p && p->is_int64() ? std::to_string(p->get_int64()) : "?";
    };
    return part("major") + "." + part("minor") + "." + part("micro");
}

std::chrono::system_clock::time_point event::timestamp() const {
    // Converting huge values would overflow (undefined behaviour), so both parts are clamped to
    // the range of a time_point first; their sum then still fits in microseconds.
    using clock = std::chrono::system_clock;
    using us = std::chrono::microseconds;
    constexpr std::int64_t max_us = std::chrono::duration_cast<us>(clock::duration::max()).count();
    constexpr std::int64_t max_s = max_us / 1'000'000;
    const auto total = std::clamp(std::clamp(seconds, -max_s, max_s) * 1'000'000 +
                                      std::clamp(microseconds, -max_us, max_us),
                                  -max_us, max_us);
    return clock::time_point{std::chrono::duration_cast<clock::duration>(us{total})};
}

std::optional<std::uint64_t> numeric_id(const boost::json::value& id) {
    if (id.is_uint64())
        return id.get_uint64();
    if (id.is_int64() && id.get_int64() >= 0)
        return static_cast<std::uint64_t>(id.get_int64());
    return std::nullopt;
}

} // namespace qmpkit::qmp
