#pragma once

// virsh's ways of writing a command line, for commands qmpkit shares with virsh:
//   - an argument written positionally (qmpkit's form, `snapshot-revert tiny s1`) or as a named
//     option (virsh's, `--domain tiny --snapshotname s1`), or a mix of both, as virsh reads them;
//   - virsh flags that mean nothing in qmpkit, accepted with a one-line note on stderr.

#include <CLI/CLI.hpp>

#include <memory>
#include <string>
#include <vector>

namespace qmpkit::cli {

class virsh_form {
public:
    explicit virsh_form(CLI::App* cmd);

    // Adds one argument: the positional `positional` and the options `named` (e.g. "--domain")
    // that give it too. Arguments are positional in the order they are added. Returns the index
    // for value().
    std::size_t add_argument(const std::string& positional, const std::vector<std::string>& named,
                             const std::string& help, bool required = true);

    // A virsh flag accepted for habit's sake; finish() prints `qmpkit: note: FLAG NOTE` once
    // when it was given. `help` is what --help says of it.
    void add_note_flag(const std::string& flag, const std::string& note, const std::string& help);
    // The same for a virsh option that takes a value (e.g. --driver qemu).
    void add_note_option(const std::string& option, const std::string& note,
                         const std::string& help);

    // Called from the command's callback, after parsing. Places the positional words as virsh
    // does: when as many words are given as arguments are missing a named form, they fill those
    // in order (`--domain tiny s1`); otherwise word N is argument N, and an argument given both
    // ways must have the same value. Throws CLI::ParseError (a usage error) for two different
    // values or a required argument missing, then prints the notes.
    void finish();

    // The argument's value after finish(); empty when an optional one was not given.
    const std::string& value(std::size_t index) const;
    bool given(std::size_t index) const;

private:
    struct argument {
        std::string positional;
        std::string positional_value;
        CLI::Option* positional_option = nullptr;
        std::vector<std::pair<CLI::Option*, std::string>> named; // option, its value
        bool required = true;
        std::string value;
        bool given = false;
    };
    struct note {
        CLI::Option* option;
        std::string text;
        std::string value; // options with a value store it here
    };

    CLI::App* cmd_;
    std::vector<std::unique_ptr<argument>> arguments_;
    std::vector<std::unique_ptr<note>> notes_;
};

// `qmpkit: note: TEXT` on stderr.
void print_note(const std::string& text);

} // namespace qmpkit::cli
