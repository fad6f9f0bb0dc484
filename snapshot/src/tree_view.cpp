#include "text.hpp"

#include <qmpkit/snapshot/tree_view.hpp>

#include <boost/json.hpp>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <ctime>
#include <numeric>

namespace qmpkit::snapshot {
namespace {

namespace json = boost::json;
using detail::printable;

std::string name_label(const snapshot_tree& tree, const std::string& name, bool mark_current) {
    return printable(name) + (mark_current && tree.is_current(name) ? " *" : "");
}

// virsh's vshTreePrintInternal, line for line, so the shape is the one virsh users know: a "|"
// line above the first child, and after a last child without children of its own a line that
// closes its branch.
void tree_lines(const snapshot_tree& tree, const std::string& name, bool last, bool root,
                std::string& indent, std::vector<std::string>& lines) {
    lines.push_back(indent + (root ? "" : "+- ") + name_label(tree, name, true));
    if (!root)
        indent += last ? "  " : "| ";
    const auto children = tree.children(name);
    if (!children.empty())
        lines.push_back(indent + "  |");
    indent += "  ";
    for (std::size_t i = 0; i < children.size(); ++i)
        tree_lines(tree, children[i], i + 1 == children.size(), false, indent, lines);
    indent.resize(indent.size() - 2);
    if (children.empty() && last)
        lines.push_back(indent);
    if (!root)
        indent.resize(indent.size() - 2);
}

// vshTable's layout: a space before every cell, two more between columns, a rule under the
// header as long as the widest row plus those spaces. Widths are terminal columns.
std::string table(const std::vector<std::vector<std::string>>& rows) {
    std::vector<std::size_t> width(rows.front().size());
    for (const auto& row : rows)
        for (std::size_t c = 0; c < row.size(); ++c)
            width[c] = std::max(width[c], detail::display_width(row[c]));
    std::string out;
    for (std::size_t r = 0; r < rows.size(); ++r) {
        for (std::size_t c = 0; c < rows[r].size(); ++c) {
            out += " " + rows[r][c];
            if (c + 1 < rows[r].size())
                out.append(width[c] - detail::display_width(rows[r][c]) + 2, ' ');
        }
        while (!out.empty() && out.back() == ' ')
            out.pop_back();
        out += "\n";
        if (r == 0)
            out += std::string(std::accumulate(width.begin(), width.end(), std::size_t{0}) +
                                   3 * width.size(),
                               '-') +
                   "\n";
    }
    return out;
}

std::string yes_no(bool b) {
    return b ? "yes" : "no";
}

json::object list_entry(const snapshot_tree& tree, const snapshot_record& record) {
    auto o = to_json(record);
    o.erase("definition");
    o["current"] = tree.is_current(record.name);
    o["children"] = tree.children(record.name).size();
    return o;
}

} // namespace

std::string format_local_time(std::int64_t seconds_since_epoch) {
    const auto t = static_cast<std::time_t>(seconds_since_epoch);
    std::tm local{};
    if (!::localtime_r(&t, &local))
        return std::to_string(seconds_since_epoch);
    char buffer[64];
    const auto n = std::strftime(buffer, sizeof buffer, "%Y-%m-%d %H:%M:%S %z", &local);
    return std::string(buffer, n);
}

std::string render_tree(const snapshot_tree& tree) {
    std::vector<std::string> lines;
    std::string indent;
    for (const auto& root : tree.roots())
        tree_lines(tree, root, true, true, indent, lines);
    // virsh leaves trailing blanks on the connector lines and ends with an empty line.
    for (auto& line : lines)
        while (!line.empty() && line.back() == ' ')
            line.pop_back();
    while (!lines.empty() && lines.back().empty())
        lines.pop_back();
    std::string out;
    for (const auto& line : lines)
        out += line + "\n";
    return out;
}

std::string render_list(const snapshot_tree& tree, const list_options& options,
                        const time_formatter& format_time) {
    std::vector<std::vector<std::string>> rows{{"Name", "Creation Time", "State", "Location"}};
    std::string names;
    if (options.parent_column)
        rows.front().push_back("Parent");
    const auto leaves = tree.leaves();
    for (const auto* r : tree.all()) {
        if (options.roots && r->parent)
            continue;
        if (options.leaves && std::find(leaves.begin(), leaves.end(), r->name) == leaves.end())
            continue;
        if (options.current_only && !tree.is_current(r->name))
            continue;
        if (options.location && r->location != *options.location)
            continue;
        if (options.names_only) {
            names += printable(r->name) + "\n";
            continue;
        }
        std::vector<std::string> row{name_label(tree, r->name, options.mark_current),
                                     format_time(r->created_at), std::string(to_string(r->state)),
                                     std::string(to_string(r->location))};
        if (options.parent_column)
            row.push_back(r->parent ? printable(*r->parent) : "");
        rows.push_back(std::move(row));
    }
    return options.names_only ? names : table(rows);
}

std::string render_info(const snapshot_tree& tree, std::string_view name, std::string_view vm_name,
                        const time_formatter& format_time) {
    const auto& r = tree.at(name);
    std::string out;
    const auto line = [&](std::string_view label, const std::string& value) {
        std::string l(label);
        l.resize(std::max<std::size_t>(l.size(), 15), ' ');
        out += l + " " + value + "\n";
    };
    line("Name:", printable(r.name));
    line("Domain:", printable(vm_name));
    line("Current:", yes_no(tree.is_current(r.name)));
    line("State:", std::string(to_string(r.state)));
    line("Location:", std::string(to_string(r.location)));
    line("Parent:", r.parent ? printable(*r.parent) : "-");
    line("Children:", std::to_string(tree.children(r.name).size()));
    line("Descendants:", std::to_string(tree.descendant_count(r.name)));
    line("Metadata:", "yes");
    line("Creation Time:", format_time(r.created_at));
    line("Memory:", yes_no(r.memory));
    if (!r.memory_file.empty())
        line("Memory File:", printable(r.memory_file.native()));
    line("Quiesced:", yes_no(r.quiesced));

    std::size_t disk_width = 0;
    for (const auto& d : r.disks)
        disk_width = std::max(disk_width, detail::display_width(printable(d.disk)));
    std::string label = "Disks:";
    if (r.disks.empty())
        line(label, "-");
    for (const auto& d : r.disks) {
        auto disk = printable(d.disk);
        disk.append(disk_width - detail::display_width(disk), ' ');
        std::string mode(to_string(d.how));
        mode.resize(8, ' '); // "internal", "external", "excluded"
        std::string text = disk + "  " + mode;
        if (!d.image.empty())
            text += "  " + printable(d.image.native());
        if (!d.overlay.empty())
            text += "  overlay " + printable(d.overlay.native());
        while (!text.empty() && text.back() == ' ')
            text.pop_back();
        line(label, text);
        label.clear();
    }
    line("Description:", r.description.empty() ? "-" : printable(r.description));
    return out;
}

boost::json::value to_json(const snapshot_tree& tree) {
    json::array out;
    for (const auto* r : tree.all())
        out.push_back(list_entry(tree, *r));
    return out;
}

std::string to_yaml(const snapshot_record& record) {
    YAML::Emitter out;
    out << YAML::BeginMap;
    out << YAML::Key << "name" << YAML::Value << record.name;
    out << YAML::Key << "description" << YAML::Value << record.description;
    out << YAML::Key << "created_at" << YAML::Value << record.created_at;
    out << YAML::Key << "state" << YAML::Value << std::string(to_string(record.state));
    out << YAML::Key << "location" << YAML::Value << std::string(to_string(record.location));
    out << YAML::Key << "memory" << YAML::Value << record.memory;
    out << YAML::Key << "memory_file" << YAML::Value << record.memory_file.string();
    out << YAML::Key << "quiesced" << YAML::Value << record.quiesced;
    out << YAML::Key << "parent" << YAML::Value;
    if (record.parent)
        out << *record.parent;
    else
        out << YAML::Null;
    out << YAML::Key << "disks" << YAML::Value << YAML::BeginSeq;
    for (const auto& d : record.disks) {
        out << YAML::BeginMap;
        out << YAML::Key << "disk" << YAML::Value << d.disk;
        out << YAML::Key << "mode" << YAML::Value << std::string(to_string(d.how));
        out << YAML::Key << "image" << YAML::Value << d.image.string();
        out << YAML::Key << "overlay" << YAML::Value << d.overlay.string();
        out << YAML::Key << "node_name" << YAML::Value << d.node_name;
        out << YAML::EndMap;
    }
    out << YAML::EndSeq;
    out << YAML::Key << "definition" << YAML::Value;
    if (record.definition.empty())
        out << "";
    else
        out << YAML::Literal << record.definition;
    out << YAML::EndMap;
    return std::string(out.c_str()) + "\n";
}

} // namespace qmpkit::snapshot
