#include "free_space.hpp"
#include "operation_journal.hpp"

#include <qmpkit/launcher/atomic_file.hpp>
#include <qmpkit/launcher/error.hpp>
#include <qmpkit/qmp/json_text.hpp>
#include <qmpkit/snapshot/error.hpp>

#include <boost/json.hpp>

#include <cstdio>
#include <system_error>

namespace qmpkit::snapshot::detail {
namespace {

namespace json = boost::json;
namespace fs = std::filesystem;

constexpr int journal_version = 1;

json::value path_value(const fs::path& p) {
    return json::value(p.native());
}

std::string text(const json::object& o, std::string_view key) {
    const auto* v = o.if_contains(key);
    return v && v->is_string() ? std::string(v->get_string()) : std::string();
}

} // namespace

fs::path journal_file(const launcher::state_directory& dir) {
    return dir.path() / "snapshot-op.json";
}

void write_journal(const launcher::state_directory& dir, const operation_journal& j) {
    json::array tags, overlays, creates;
    for (const auto& t : j.tags)
        tags.push_back({{"image", path_value(t.image)}, {"tag", t.tag}});
    for (const auto& o : j.overlays)
        overlays.push_back(
            {{"disk", o.disk}, {"image", path_value(o.image)}, {"overlay", path_value(o.overlay)}});
    for (const auto& c : j.creates)
        creates.push_back(path_value(c));
    json::object doc{{"format", "qmpkit-snapshot-operation"},
                     {"version", journal_version},
                     {"operation", j.operation},
                     {"snapshot", j.snapshot},
                     {"pid", j.pid},
                     {"started_at", j.started_at},
                     {"was_running", j.was_running},
                     {"before_digest", j.before_digest},
                     {"after_metadata", j.after_metadata},
                     {"after_definition",
                      j.after_definition ? json::value(*j.after_definition) : json::value(nullptr)},
                     {"tags", std::move(tags)},
                     {"overlays", std::move(overlays)},
                     {"creates", std::move(creates)}};
    try {
        launcher::write_file_atomically(journal_file(dir), qmp::indented_json(doc) + "\n");
    } catch (const launcher::error& e) {
        throw error(error_kind::metadata_io,
                    e.what() + full_file_system_hint({dir.path()}) + ". Nothing was changed.");
    }
}

std::optional<operation_journal> read_journal(const launcher::state_directory& dir) {
    const auto file = journal_file(dir);
    std::error_code ec;
    if (!fs::exists(file, ec))
        return std::nullopt;
    std::string content;
    try {
        content = launcher::read_file(file);
    } catch (const launcher::error& e) {
        throw error(error_kind::metadata_io, e.what());
    }
    auto corrupt = [&](const std::string& why) {
        return error(error_kind::metadata_corrupt,
                     "the record of an interrupted snapshot operation " + file.string() +
                         " is unreadable: " + why + " (remove it by hand)");
    };
    json::parse_options options;
    options.allow_invalid_utf8 = true;
    boost::system::error_code parse_error;
    const auto doc = json::parse(content, parse_error, {}, options);
    if (parse_error || !doc.is_object())
        throw corrupt(parse_error ? parse_error.message() : "not a JSON object");
    const auto& o = doc.get_object();
    if (text(o, "format") != "qmpkit-snapshot-operation")
        throw corrupt("not a qmpkit operation record");
    try {
        if (o.at("version").to_number<int>() != journal_version)
            throw corrupt("version " + json::serialize(o.at("version")) + " is not " +
                          std::to_string(journal_version));
        operation_journal j;
        j.operation = text(o, "operation");
        j.snapshot = text(o, "snapshot");
        j.pid = o.at("pid").to_number<std::int64_t>();
        j.started_at = o.at("started_at").to_number<std::int64_t>();
        j.was_running = o.at("was_running").as_bool();
        j.before_digest = text(o, "before_digest");
        j.after_metadata = text(o, "after_metadata");
        if (const auto& d = o.at("after_definition"); d.is_string())
            j.after_definition = std::string(d.get_string());
        for (const auto& t : o.at("tags").as_array())
            j.tags.push_back({text(t.as_object(), "image"), text(t.as_object(), "tag")});
        for (const auto& v : o.at("overlays").as_array()) {
            const auto& x = v.as_object();
            j.overlays.push_back({text(x, "disk"), text(x, "image"), text(x, "overlay")});
        }
        for (const auto& c : o.at("creates").as_array())
            j.creates.emplace_back(std::string(c.as_string()));
        return j;
    } catch (const error&) {
        throw;
    } catch (const std::exception& e) {
        throw corrupt(e.what());
    }
}

void remove_journal(const launcher::state_directory& dir) noexcept {
    std::error_code ignored;
    fs::remove(journal_file(dir), ignored);
}

std::string digest_of(std::string_view bytes) {
    std::uint64_t h = 14695981039346656037ull;
    for (unsigned char c : bytes) {
        h ^= c;
        h *= 1099511628211ull;
    }
    char out[17];
    std::snprintf(out, sizeof out, "%016llx", static_cast<unsigned long long>(h));
    return out;
}

std::string digest_of_file(const fs::path& file) {
    std::error_code ec;
    if (!fs::exists(file, ec))
        return "absent";
    try {
        return digest_of(launcher::read_file(file));
    } catch (const launcher::error&) {
        return "unreadable";
    }
}

} // namespace qmpkit::snapshot::detail
