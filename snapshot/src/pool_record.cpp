#include "pool_record.hpp"

#include <qmpkit/snapshot/error.hpp>

#include <boost/json.hpp>

#include <algorithm>
#include <array>

namespace qmpkit::snapshot {

namespace {
constexpr std::array<std::string_view, 4> member_state_names = {"free", "leased", "restoring",
                                                                "broken"};
}

std::string_view to_string(member_state s) noexcept {
    return member_state_names[static_cast<std::size_t>(s)];
}

namespace {

boost::json::object member_json(const pool_member& m) {
    boost::json::object o{{"vm", m.vm}, {"state", to_string(m.state)}, {"since", m.since}};
    if (m.state == member_state::leased) {
        o["lease"] = m.lease;
        o["holder"] = m.holder;
        o["expires_at"] = m.expires_at;
    }
    if (m.state == member_state::broken)
        o["problem"] = m.problem;
    return o;
}

} // namespace

boost::json::object to_json(const pool_status& pool) {
    boost::json::array members;
    for (const auto& m : pool.members)
        members.push_back(member_json(m));
    return {{"name", pool.name},
            {"origin", pool.origin},
            {"point", pool.point},
            {"size", pool.size},
            {"lease_timeout", pool.lease_timeout.count()},
            {"strategy", launcher::to_string(pool.strategy)},
            {"destroying", pool.destroying},
            {"members", std::move(members)}};
}

namespace detail {
namespace {

namespace json = boost::json;

// The record's format; a newer one is refused rather than misread.
constexpr std::int64_t pool_format = 1;

member_state state_from(std::string_view text) {
    for (std::size_t i = 0; i < member_state_names.size(); ++i)
        if (member_state_names[i] == text)
            return static_cast<member_state>(i);
    throw std::invalid_argument("unknown member state \"" + std::string(text) + "\"");
}

std::string string_or_empty(const json::object& o, std::string_view key) {
    const auto* v = o.if_contains(key);
    return v ? std::string(v->as_string()) : std::string();
}

} // namespace

std::string dump_pool(const pool_status& pool) {
    auto o = to_json(pool);
    o["format"] = pool_format;
    return json::serialize(o) + "\n";
}

pool_status parse_pool(std::string_view text, const std::filesystem::path& file) {
    try {
        const auto v = json::parse(text);
        const auto& o = v.as_object();
        if (o.at("format").to_number<std::int64_t>() > pool_format)
            throw error(error_kind::metadata_too_new,
                        file.string() + " was written by a newer qmpkit (format " +
                            json::serialize(o.at("format")) + ")");
        pool_status pool;
        pool.name = o.at("name").as_string();
        pool.origin = o.at("origin").as_string();
        pool.point = o.at("point").as_string();
        pool.size = o.at("size").to_number<int>();
        pool.lease_timeout = std::chrono::seconds(o.at("lease_timeout").to_number<std::int64_t>());
        const auto strategy = launcher::reset_strategy_from_string(o.at("strategy").as_string());
        if (!strategy)
            throw std::invalid_argument("unknown strategy " + json::serialize(o.at("strategy")));
        pool.strategy = *strategy;
        pool.destroying = o.at("destroying").as_bool();
        for (const auto& mv : o.at("members").as_array()) {
            const auto& m = mv.as_object();
            pool_member member;
            member.vm = m.at("vm").as_string();
            member.state = state_from(m.at("state").as_string());
            member.since = m.at("since").to_number<std::int64_t>();
            member.lease = string_or_empty(m, "lease");
            member.holder = string_or_empty(m, "holder");
            if (const auto* e = m.if_contains("expires_at"))
                member.expires_at = e->to_number<std::int64_t>();
            member.problem = string_or_empty(m, "problem");
            pool.members.push_back(std::move(member));
        }
        return pool;
    } catch (const error&) {
        throw;
    } catch (const std::exception& e) {
        throw error(error_kind::metadata_corrupt,
                    file.string() + " is not a pool record qmpkit wrote: " + e.what());
    }
}

pool_member* find_member(pool_status& pool, std::string_view vm) {
    const auto it = std::find_if(pool.members.begin(), pool.members.end(),
                                 [&](const pool_member& m) { return m.vm == vm; });
    return it == pool.members.end() ? nullptr : &*it;
}

namespace {
void to_restoring(pool_member& m, std::int64_t now) {
    m.state = member_state::restoring;
    m.since = now;
    m.lease.clear();
    m.holder.clear();
    m.expires_at = 0;
    m.problem.clear();
}
} // namespace

std::vector<std::string> reclaim_lapsed(pool_status& pool, std::int64_t now) {
    std::vector<std::string> names;
    for (auto& m : pool.members)
        if (m.state == member_state::leased && m.expires_at <= now) {
            to_restoring(m, now);
            names.push_back(m.vm);
        }
    return names;
}

std::vector<std::string> retry_broken(pool_status& pool, std::int64_t now, std::int64_t backoff) {
    std::vector<std::string> names;
    for (auto& m : pool.members)
        if (m.state == member_state::broken && now - m.since >= backoff) {
            to_restoring(m, now);
            names.push_back(m.vm);
        }
    return names;
}

pool_member* take_free(pool_status& pool, const std::function<bool(const std::string&)>& usable,
                       std::int64_t now, std::int64_t ttl, const std::string& id,
                       const std::string& holder, std::vector<std::string>& to_restore) {
    for (auto& m : pool.members) {
        if (m.state != member_state::free)
            continue;
        if (!usable(m.vm)) {
            to_restoring(m, now);
            to_restore.push_back(m.vm);
            continue;
        }
        m.state = member_state::leased;
        m.since = now;
        m.lease = id;
        m.holder = holder;
        m.expires_at = now + ttl;
        return &m;
    }
    return nullptr;
}

void give_back(pool_status& pool, std::string_view vm, std::string_view id, std::int64_t now) {
    auto* m = find_member(pool, vm);
    if (!m)
        throw error(error_kind::not_found,
                    "VM '" + std::string(vm) + "' is not a member of pool '" + pool.name + "'");
    if (m->state != member_state::leased)
        throw error(error_kind::other, "VM '" + std::string(vm) + "' of pool '" + pool.name +
                                           "' is not leased (it is " +
                                           std::string(to_string(m->state)) +
                                           "): its lease may have lapsed and been taken back");
    if (!id.empty() && m->lease != id)
        throw error(error_kind::other, "lease " + std::string(id) + " of VM '" + std::string(vm) +
                                           "' lapsed: the VM was reset and leased again (lease " +
                                           m->lease + "); nothing was released");
    to_restoring(*m, now);
}

std::string next_member_name(const pool_status& pool,
                             const std::function<bool(const std::string&)>& taken) {
    for (int n = 1;; ++n) {
        auto name = pool.name + "-" + std::to_string(n);
        const bool member = std::any_of(pool.members.begin(), pool.members.end(),
                                        [&](const pool_member& m) { return m.vm == name; });
        if (!member && !taken(name))
            return name;
    }
}

std::string count_by_state(const pool_status& pool) {
    std::array<int, member_state_names.size()> counts{};
    for (const auto& m : pool.members)
        ++counts[static_cast<std::size_t>(m.state)];
    std::string text;
    for (std::size_t i = 0; i < counts.size(); ++i)
        text +=
            (i ? ", " : "") + std::to_string(counts[i]) + " " + std::string(member_state_names[i]);
    return text;
}

} // namespace detail
} // namespace qmpkit::snapshot
