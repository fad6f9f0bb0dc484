#include <qmpkit/qmp/message.hpp>

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

std::optional<std::uint64_t> numeric_id(const boost::json::value& id) {
    if (id.is_uint64())
        return id.get_uint64();
    if (id.is_int64() && id.get_int64() >= 0)
        return static_cast<std::uint64_t>(id.get_int64());
    return std::nullopt;
}

} // namespace qmpkit::qmp
