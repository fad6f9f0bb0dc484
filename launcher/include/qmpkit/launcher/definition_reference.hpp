#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace qmpkit::launcher {

// One field of the definition's YAML as the reference documents it, in Markdown: code in
// backquotes, '|' escaped.
struct field_reference {
    std::string key;
    std::string type;          // "string", "`q35` \\| `pc` \\| `microvm`", "integer 1–255", ...
    std::string default_value; // "`q35`", "none", "**required**", "the disk's `name`", ...
    std::string meaning;
};

// One mapping and its fields, printed from the same schema the loader, the validator and
// dump_definition use: configs/README.md holds their tables (a test keeps them equal), and
// `qmpkit --generate definition-man` prints them as the qmpkit-definition(5) man page.
struct definition_fields {
    std::string section; // "" for the top level, "disks[]", "disks[].encryption", "network", ...
    std::vector<field_reference> fields;

    // The Markdown table (Field, Type, Default, Meaning), each line ending in '\n'.
    std::string table() const;
};

// Every mapping, the top level first, then each in the order its field appears.
std::vector<definition_fields> definition_reference();

// The reference's Markdown as plain text (for a man page or an editor's hint): no code quotes or
// bold, '|' unescaped.
std::string plain_text(std::string_view markdown);

// The same schema as a JSON Schema (draft-07) document, for editors that check and complete YAML
// as it is typed (`# yaml-language-server: $schema=...`): every key, type, enum value, range
// and required field; what only the validator can tell (names used twice, files) is not in it.
std::string definition_json_schema();

} // namespace qmpkit::launcher
