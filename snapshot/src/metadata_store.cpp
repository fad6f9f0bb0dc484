#include "free_space.hpp"
#include "text.hpp"

#include <qmpkit/launcher/atomic_file.hpp>
#include <qmpkit/launcher/error.hpp>
#include <qmpkit/qmp/json_text.hpp>
#include <qmpkit/snapshot/error.hpp>
#include <qmpkit/snapshot/metadata_store.hpp>

#include <boost/json.hpp>

#include <algorithm>
#include <map>
#include <system_error>

#ifndef QMPKIT_VERSION
#define QMPKIT_VERSION "unknown"
#endif

namespace qmpkit::snapshot {
namespace {

namespace json = boost::json;

class file_reader {
public:
    explicit file_reader(const std::filesystem::path& origin)
        : origin_(origin.string()) {}

    [[noreturn]] void corrupt(const std::string& what) const {
        throw error(error_kind::metadata_corrupt,
                    "snapshot metadata " + origin_ + " is corrupt: " + what);
    }

    // A record's complaint already names its field; put the file in front.
    [[noreturn]] void rethrow(const error& e) const { corrupt(e.what()); }

private:
    std::string origin_;
};

std::string shown(std::string_view s) {
    return "\"" + detail::printable_short(s) + "\"";
}

// Inserts records parents first, whatever order the file lists them in: a clock set back can
// give a child an earlier created_at than its parent.
void insert_all(snapshot_tree& tree, std::vector<snapshot_record> records,
                const file_reader& file) {
    std::map<std::string, std::size_t> index;
    for (std::size_t i = 0; i < records.size(); ++i)
        if (!index.emplace(records[i].name, i).second)
            file.corrupt("snapshot " + shown(records[i].name) + " appears twice");
    for (const auto& r : records)
        if (r.parent && !index.contains(*r.parent))
            file.corrupt("the parent " + shown(*r.parent) + " of snapshot " + shown(r.name) +
                         " does not exist");
    std::vector<bool> done(records.size());
    std::size_t remaining = records.size();
    while (remaining > 0) {
        const std::size_t before = remaining;
        for (std::size_t i = 0; i < records.size(); ++i) {
            if (done[i] || (records[i].parent && !tree.contains(*records[i].parent)))
                continue;
            tree.add(std::move(records[i]));
            done[i] = true;
            --remaining;
        }
        if (remaining == before) {
            for (std::size_t i = 0; i < records.size(); ++i)
                if (!done[i])
                    file.corrupt("snapshot " + shown(records[i].name) +
                                 " is its own ancestor (the parents form a cycle)");
        }
    }
}

} // namespace

metadata_store::metadata_store(std::filesystem::path file)
    : file_(std::move(file)) {}

metadata_store::metadata_store(const launcher::state_directory& dir)
    : file_(dir.path() / file_name) {}

std::string metadata_store::serialize(const snapshot_tree& tree) {
    json::array snapshots;
    for (const auto* record : tree.all())
        snapshots.push_back(to_json(*record));
    json::object doc;
    doc["format"] = format_name;
    doc["version"] = format_version;
    doc["written_by"] = "qmpkit " QMPKIT_VERSION;
    doc["current"] = tree.current() ? json::value(*tree.current()) : json::value(nullptr);
    doc["snapshots"] = std::move(snapshots);
    std::string out;
    out += qmp::indented_json(doc);
    out += "\n";
    return out;
}

snapshot_tree metadata_store::parse(std::string_view text, const std::filesystem::path& origin) {
    const file_reader file(origin);
    if (text.find_first_not_of(" \t\r\n") == std::string_view::npos)
        file.corrupt("the file is empty");

    // Paths are bytes, not necessarily UTF-8: read back whatever serialize wrote.
    json::parse_options options;
    options.allow_invalid_utf8 = true;
    boost::system::error_code ec;
    json::stream_parser parser({}, options);
    const auto consumed = parser.write(text.data(), text.size(), ec);
    if (!ec)
        parser.finish(ec);
    if (ec) {
        const auto line = 1 + std::count(text.begin(), text.begin() + consumed, '\n');
        file.corrupt("not valid JSON: " + ec.message() + " at line " + std::to_string(line));
    }
    const json::value doc = parser.release();
    if (!doc.is_object())
        file.corrupt("not a JSON object");
    const auto& o = doc.get_object();

    const auto* format = o.if_contains("format");
    if (!format || !format->is_string() || format->get_string() != format_name)
        file.corrupt("not a qmpkit snapshot metadata file (\"format\" is not \"" +
                     std::string(format_name) + "\")");
    const auto* version = o.if_contains("version");
    // A number beyond int64 parses as uint64: certainly newer than this qmpkit, not corrupt.
    const bool huge = version && version->is_uint64();
    if (!version || !(version->is_int64() || huge) || (!huge && version->get_int64() < 1))
        file.corrupt("\"version\" is missing or not a positive integer");
    if (huge || version->get_int64() > format_version) {
        std::string writer = "a newer qmpkit";
        std::string advice = "a newer qmpkit";
        if (const auto* w = o.if_contains("written_by"); w && w->is_string()) {
            writer = detail::printable_short(w->get_string());
            advice = writer + " or newer";
        }
        throw error(error_kind::metadata_too_new,
                    "snapshot metadata " + origin.string() + " is in format version " +
                        json::serialize(*version) + ", written by " + writer +
                        "; this qmpkit (" QMPKIT_VERSION ") reads version " +
                        std::to_string(format_version) + " only: use " + advice +
                        " to manage these snapshots");
    }

    for (const auto& [key, v] : o)
        if (key != "format" && key != "version" && key != "written_by" && key != "current" &&
            key != "snapshots")
            file.corrupt("unknown field " + shown(key));

    const auto* list = o.if_contains("snapshots");
    if (!list || !list->is_array())
        file.corrupt("\"snapshots\" is missing or not an array");
    std::vector<snapshot_record> records;
    records.reserve(list->get_array().size());
    try {
        std::size_t i = 0;
        for (const auto& v : list->get_array())
            records.push_back(record_from_json(v, "snapshots[" + std::to_string(i++) + "]"));
    } catch (const error& e) {
        file.rethrow(e);
    }

    snapshot_tree tree;
    insert_all(tree, std::move(records), file);

    if (const auto* current = o.if_contains("current"); current && !current->is_null()) {
        if (!current->is_string())
            file.corrupt("\"current\" is neither a snapshot name nor null");
        const std::string name(current->get_string());
        if (!tree.contains(name))
            file.corrupt("the current snapshot " + shown(name) + " does not exist");
        tree.set_current(name);
    }
    return tree;
}

snapshot_tree metadata_store::load() const {
    std::error_code ec;
    const auto status = std::filesystem::status(file_, ec);
    if (status.type() == std::filesystem::file_type::not_found)
        return {};
    if (!ec && status.type() != std::filesystem::file_type::regular)
        throw error(error_kind::metadata_io,
                    "snapshot metadata " + file_.string() + " is not a regular file");
    std::string text;
    try {
        text = launcher::read_file(file_);
    } catch (const launcher::error& e) {
        throw error(error_kind::metadata_io, e.what());
    }
    return parse(text, file_);
}

void metadata_store::save(const snapshot_tree& tree) const {
    const auto text = serialize(tree);
    try {
        launcher::write_file_atomically(file_, text);
    } catch (const launcher::error& e) {
        throw error(error_kind::metadata_io,
                    e.what() + detail::full_file_system_hint({file_.parent_path()}));
    }
}

} // namespace qmpkit::snapshot
