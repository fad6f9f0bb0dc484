#include "text.hpp"

#include <qmpkit/snapshot/error.hpp>
#include <qmpkit/snapshot/snapshot_record.hpp>

#include <boost/json.hpp>

#include <algorithm>
#include <cstdint>
#include <limits>
#include <set>

namespace qmpkit::snapshot {
namespace {

namespace json = boost::json;

std::string_view kind_name(const json::value& v) {
    switch (v.kind()) {
    case json::kind::null:
        return "null";
    case json::kind::bool_:
        return "a boolean";
    case json::kind::int64:
    case json::kind::uint64:
    case json::kind::double_:
        return "a number";
    case json::kind::string:
        return "a string";
    case json::kind::array:
        return "an array";
    case json::kind::object:
        return "an object";
    }
    return "something else";
}

std::string shown(std::string_view s) {
    return "\"" + detail::printable_short(s) + "\"";
}

// Reads one JSON object field by field, so that every complaint names the field's path
// ("disks[0].mode") and anything left unread can be refused as unknown.
class object_reader {
public:
    object_reader(const json::value& value, std::string path, std::string_view prefix)
        : path_(std::move(path))
        , prefix_(prefix) {
        if (!value.is_object())
            fail_at(path_, std::string("expected an object, got ") + std::string(kind_name(value)));
        object_ = &value.get_object();
    }

    // Added to every later complaint, once the snapshot's name is known.
    void set_context(std::string context) { context_ = std::move(context); }

    const json::value* optional(std::string_view key) {
        seen_.insert(std::string(key));
        const auto* v = object_->if_contains(key);
        return v && !v->is_null() ? v : nullptr;
    }

    const json::value& required(std::string_view key) {
        const auto* v = optional(key);
        if (!v)
            fail(key, "missing");
        return *v;
    }

    std::string string(std::string_view key, bool is_required) {
        const auto* v = is_required ? &required(key) : optional(key);
        if (!v)
            return {};
        if (!v->is_string())
            fail(key, std::string("expected a string, got ") + std::string(kind_name(*v)));
        return std::string(v->get_string());
    }

    std::filesystem::path path(std::string_view key) {
        auto text = string(key, false);
        if (text.find('\0') != std::string::npos)
            fail(key, "contains a NUL byte");
        return text;
    }

    bool boolean(std::string_view key) {
        const auto* v = optional(key);
        if (!v)
            return false;
        if (!v->is_bool())
            fail(key, std::string("expected true or false, got ") + std::string(kind_name(*v)));
        return v->get_bool();
    }

    std::int64_t integer(std::string_view key) {
        const auto& v = required(key);
        if (v.is_int64())
            return v.get_int64();
        if (v.is_uint64() && v.get_uint64() <= std::uint64_t(std::numeric_limits<int64_t>::max()))
            return static_cast<std::int64_t>(v.get_uint64());
        fail(key, std::string("expected an integer, got ") + std::string(kind_name(v)));
    }

    template <typename Enum>
    Enum enumeration(std::string_view key, std::optional<Enum> (*parse)(std::string_view) noexcept,
                     std::string_view expected) {
        const auto text = string(key, true);
        const auto e = parse(text);
        if (!e)
            fail(key, "unknown value " + shown(text) + " (expected " + std::string(expected) + ")");
        return *e;
    }

    const json::array& array(std::string_view key) {
        const auto& v = required(key);
        if (!v.is_array())
            fail(key, std::string("expected an array, got ") + std::string(kind_name(v)));
        return v.get_array();
    }

    std::string field_path(std::string_view key) const {
        return path_.empty() ? std::string(key) : path_ + "." + std::string(key);
    }

    void refuse_unknown() const {
        for (const auto& [key, v] : *object_)
            if (!seen_.contains(std::string(key)))
                fail(key, "unknown field (written by a newer qmpkit, or edited by hand)");
    }

    [[noreturn]] void fail(std::string_view key, const std::string& what) const {
        fail_at(field_path(key), what);
    }

private:
    [[noreturn]] void fail_at(const std::string& field, const std::string& what) const {
        std::string message(prefix_);
        if (!message.empty() && !field.empty())
            message += field.starts_with('[') ? "" : ".";
        message += field;
        message += (message.empty() ? "" : ": ") + what;
        if (!context_.empty())
            message += " (" + context_ + ")";
        throw error(error_kind::metadata_corrupt, message);
    }

    const json::object* object_ = nullptr;
    std::string path_;
    std::string_view prefix_;
    std::string context_;
    std::set<std::string> seen_;
};

disk_snapshot disk_from_json(const json::value& value, std::string path, std::string_view prefix,
                             const std::string& context) {
    object_reader r(value, std::move(path), prefix);
    r.set_context(context);
    disk_snapshot d;
    d.disk = r.string("disk", true);
    if (d.disk.empty())
        r.fail("disk", "empty");
    d.how = r.enumeration<disk_snapshot::mode>("mode", disk_snapshot_mode_from_string,
                                               "internal, external or excluded");
    d.image = r.path("image");
    d.overlay = r.path("overlay");
    d.node_name = r.string("node_name", false);
    r.refuse_unknown();
    return d;
}

} // namespace

std::string_view to_string(snapshot_location v) noexcept {
    switch (v) {
    case snapshot_location::internal:
        return "internal";
    case snapshot_location::external:
        return "external";
    }
    return "internal";
}

std::string_view to_string(vm_state v) noexcept {
    switch (v) {
    case vm_state::running:
        return "running";
    case vm_state::paused:
        return "paused";
    case vm_state::shutoff:
        return "shutoff";
    }
    return "shutoff";
}

std::string_view to_string(disk_snapshot::mode v) noexcept {
    switch (v) {
    case disk_snapshot::mode::internal:
        return "internal";
    case disk_snapshot::mode::external:
        return "external";
    case disk_snapshot::mode::excluded:
        return "excluded";
    }
    return "excluded";
}

std::optional<snapshot_location> snapshot_location_from_string(std::string_view s) noexcept {
    for (auto v : {snapshot_location::internal, snapshot_location::external})
        if (to_string(v) == s)
            return v;
    return std::nullopt;
}

std::optional<vm_state> vm_state_from_string(std::string_view s) noexcept {
    for (auto v : {vm_state::running, vm_state::paused, vm_state::shutoff})
        if (to_string(v) == s)
            return v;
    return std::nullopt;
}

std::optional<disk_snapshot::mode> disk_snapshot_mode_from_string(std::string_view s) noexcept {
    using m = disk_snapshot::mode;
    for (auto v : {m::internal, m::external, m::excluded})
        if (to_string(v) == s)
            return v;
    return std::nullopt;
}

std::optional<std::string> snapshot_name_problem(std::string_view name) {
    if (name.empty())
        return "is empty";
    if (name.size() > max_snapshot_name_bytes)
        return "is " + std::to_string(name.size()) + " bytes long; at most " +
               std::to_string(max_snapshot_name_bytes) + " are allowed";
    if (name == "." || name == "..")
        return "is \"" + std::string(name) + "\", which names a directory";
    if (name.front() == '-')
        return "starts with '-', which would read as an option";
    std::size_t i = 0;
    while (i < name.size()) {
        const std::size_t at = i;
        const auto c = detail::next_code_point(name, i);
        if (!c)
            return "is not valid UTF-8 (at byte " + std::to_string(at) + ")";
        if (*c == '/')
            return "contains '/'";
        if (*c == 0)
            return "contains a NUL byte";
        if (detail::is_control(*c))
            return "contains the control character " + detail::code_point_name(*c) + " (at byte " +
                   std::to_string(at) + ")";
    }
    return std::nullopt;
}

bool is_valid_snapshot_name(std::string_view name) {
    return !snapshot_name_problem(name);
}

void require_valid_snapshot_name(std::string_view name, std::string_view what) {
    if (auto problem = snapshot_name_problem(name))
        throw error(error_kind::invalid_name,
                    "invalid " + std::string(what) + " " + shown(name) + ": it " + *problem);
}

std::optional<launcher::image_snapshot>
shadowing_snapshot(const std::vector<launcher::image_snapshot>& snapshots, std::string_view name) {
    for (const auto& s : snapshots)
        if (s.id == name && s.name != name)
            return s;
    return std::nullopt;
}

boost::json::object to_json(const snapshot_record& record) {
    json::array disks;
    for (const auto& d : record.disks)
        disks.push_back(json::object{{"disk", d.disk},
                                     {"mode", to_string(d.how)},
                                     {"image", d.image.string()},
                                     {"overlay", d.overlay.string()},
                                     {"node_name", d.node_name}});
    json::object o;
    o["name"] = record.name;
    o["description"] = record.description;
    o["created_at"] = record.created_at;
    o["state"] = to_string(record.state);
    o["location"] = to_string(record.location);
    o["memory"] = record.memory;
    o["memory_file"] = record.memory_file.string();
    o["quiesced"] = record.quiesced;
    o["parent"] = record.parent ? json::value(*record.parent) : json::value(nullptr);
    o["disks"] = std::move(disks);
    o["definition"] = record.definition;
    return o;
}

snapshot_record record_from_json(const boost::json::value& value, std::string_view where) {
    object_reader r(value, "", where);
    snapshot_record record;
    record.name = r.string("name", true);
    if (auto problem = snapshot_name_problem(record.name))
        r.fail("name", shown(record.name) + " " + *problem);
    const std::string context = "snapshot " + shown(record.name);
    r.set_context(context);
    record.description = r.string("description", false);
    record.created_at = r.integer("created_at");
    record.state =
        r.enumeration<vm_state>("state", vm_state_from_string, "running, paused or shutoff");
    record.location = r.enumeration<snapshot_location>("location", snapshot_location_from_string,
                                                       "internal or external");
    record.memory = r.boolean("memory");
    record.memory_file = r.path("memory_file");
    record.quiesced = r.boolean("quiesced");
    if (r.optional("parent")) {
        record.parent = r.string("parent", true);
        if (*record.parent == record.name)
            r.fail("parent", "the snapshot is its own parent");
    }
    std::set<std::string> disk_names;
    const auto& disks = r.array("disks");
    for (std::size_t i = 0; i < disks.size(); ++i) {
        auto d = disk_from_json(disks[i], "disks[" + std::to_string(i) + "]", where, context);
        if (!disk_names.insert(d.disk).second)
            r.fail("disks[" + std::to_string(i) + "]", "disk " + shown(d.disk) + " appears twice");
        record.disks.push_back(std::move(d));
    }
    record.definition = r.string("definition", false);
    r.refuse_unknown();
    return record;
}

} // namespace qmpkit::snapshot
