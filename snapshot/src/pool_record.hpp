#pragma once

// A pool's record (pool.json) and the decisions taken on it, without I/O: what vm_pool changes
// under the pool's lock, written so that it can be tested step by step without qemu.

#include <qmpkit/snapshot/vm_pool.hpp>

#include <cstdint>
#include <filesystem>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

namespace qmpkit::snapshot::detail {

std::string dump_pool(const pool_status& pool);
// Throws error(metadata_corrupt) naming `file` for anything that is not what dump_pool wrote.
pool_status parse_pool(std::string_view text, const std::filesystem::path& file);

pool_member* find_member(pool_status& pool, std::string_view vm);

// Members whose lease ran out go back to restoring; returns their names.
std::vector<std::string> reclaim_lapsed(pool_status& pool, std::int64_t now);

// Broken members whose last failure is older than `backoff` go back to restoring; returns them.
std::vector<std::string> retry_broken(pool_status& pool, std::int64_t now, std::int64_t backoff);

// Hands out the first free member that `usable` accepts (its qemu runs): leased to `holder`
// under `id` until now + ttl. Free members `usable` refuses go to restoring and are added to
// `to_restore`. nullptr when none is free.
pool_member* take_free(pool_status& pool, const std::function<bool(const std::string&)>& usable,
                       std::int64_t now, std::int64_t ttl, const std::string& id,
                       const std::string& holder, std::vector<std::string>& to_restore);

// Gives a leased member back: it goes to restoring. Refuses (error) a member not in the pool,
// not leased, or leased under another id than a non-empty `id`.
void give_back(pool_status& pool, std::string_view vm, std::string_view id, std::int64_t now);

// The first <pool>-<n> that is neither a member nor `taken` (a VM by that name exists).
std::string next_member_name(const pool_status& pool,
                             const std::function<bool(const std::string&)>& taken);

// "3 free, 1 leased, 0 restoring, 0 broken", for messages.
std::string count_by_state(const pool_status& pool);

} // namespace qmpkit::snapshot::detail
