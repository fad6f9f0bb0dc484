#include "command_arguments.hpp"
#include "context.hpp"
#include "docs.hpp"
#include "exit_codes.hpp"

#include <qmpkit/launcher/error.hpp>
#include <qmpkit/qmp/error.hpp>
#include <qmpkit/snapshot/error.hpp>

#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <cstdio>
#include <initializer_list>
#include <iostream>
#include <optional>
#include <stdexcept>
#include <string_view>

namespace {

using namespace qmpkit;

int exit_code_for(const qmp::error& e) {
    using qmp::errc;
    const auto& code = e.code();
    if (code == errc::timeout)
        return cli::exit_code::timeout;
    if (code == errc::disconnected || code == errc::not_connected ||
        code == errc::negotiation_failed || code.category() != qmp::qmp_category())
        return cli::exit_code::unreachable;
    return cli::exit_code::failed;
}

// CLI11 reports a mistyped command ("qmpkit strat x.yaml") as "A subcommand is required", which
// hides the word it did not know. The deepest command chosen still wants a subcommand and words
// were left over: name the first of them.
std::optional<std::string> unknown_command(const CLI::App& app) {
    const CLI::App* at = &app;
    while (!at->get_subcommands().empty())
        at = at->get_subcommands().front();
    const auto left = app.remaining(true);
    if (at->get_require_subcommand_min() == 0 || at->get_subcommands().size() > 0 || left.empty())
        return std::nullopt;
    const auto where = at == &app ? std::string("qmpkit") : "qmpkit " + at->get_name();
    const auto& word = left.front();
    return where + ": unknown " + (word.starts_with('-') ? "option '" : "command '") + word + "'";
}

// The command a call names, after the global options; nullopt when there is none or an option
// this does not know comes first (then every command is registered, for CLI11 to report).
std::optional<std::string_view> command_word(int argc, char** argv) {
    for (int i = 1; i < argc; ++i) {
        const std::string_view a = argv[i];
        if (a == "--state-dir" || a == "--lock-timeout")
            ++i;
        else if (a == "--json" || a == "--verbose" || a.starts_with("--state-dir=") ||
                 a.starts_with("--lock-timeout=") ||
                 (a.size() >= 2 && a.find_first_not_of('v', 1) == std::string_view::npos &&
                  a[0] == '-'))
            continue;
        else if (a.starts_with('-'))
            return std::nullopt;
        else
            return a;
    }
    return std::nullopt;
}

// Building every command's options costs more than a short command's own work: a call
// registers only the group its command belongs to. A word none claims (a typo, a spelling added
// elsewhere) gets them all, so parsing and its messages stay as they were.
bool register_group_of(std::string_view word, CLI::App& app, cli::context& ctx) {
    using registrar = void (*)(CLI::App&, cli::context&);
    struct group {
        std::initializer_list<std::string_view> words;
        registrar add;
    };
    static const group groups[] = {
        {{"start", "run", "validate", "wait-ready", "shutdown", "destroy", "remove", "undefine",
          "status", "list", "gc"},
         cli::register_lifecycle_commands},
        {{"disks", "attach-disk", "detach-disk"}, cli::register_device_commands},
        {{"shell", "exec", "guest-ping", "console", "ssh", "cp"}, cli::register_guest_commands},
        {{"disk"}, cli::register_disk_commands},
        {{"reset", "reset-point", "clone"}, cli::register_reset_commands},
        {{"pool"}, cli::register_pool_commands},
        {{"qmp", "events"}, cli::register_qmp_commands},
        {{"domblklist", "suspend", "resume"}, cli::register_virsh_commands},
    };
    if (word == "snapshot" || word.starts_with("snapshot-")) {
        cli::register_snapshot_commands(app, ctx);
        return true;
    }
    for (const auto& g : groups)
        for (const auto w : g.words)
            if (w == word) {
                g.add(app, ctx);
                return true;
            }
    return false;
}

std::shared_ptr<spdlog::logger> make_logger(int verbosity) {
    auto logger = spdlog::stderr_color_mt("qmpkit");
    logger->set_pattern("%^%l%$: %v");
    logger->set_level(verbosity >= 2   ? spdlog::level::trace
                      : verbosity == 1 ? spdlog::level::debug
                                       : spdlog::level::warn);
    return logger;
}

} // namespace

int main(int argc, char** argv) {
    // A harness probing for the tool: no command tree, and no exception (CLI11 reports
    // --version by throwing, and the first throw pays for unwinding tables).
    if (argc == 2 && std::string_view(argv[1]) == "--version") {
        std::fputs("qmpkit " QMPKIT_VERSION "\n", stdout);
        return cli::exit_code::ok;
    }
    CLI::App app{"qmpkit: run and snapshot QEMU virtual machines over QMP, without libvirt"};
    app.set_version_flag("--version", std::string("qmpkit ") + QMPKIT_VERSION);
    app.require_subcommand(1);

    cli::context ctx;
    app.add_flag("--json", ctx.json, "machine-readable output");
    app.add_flag("-v,--verbose", ctx.verbosity, "more logging on stderr (-vv: every QMP message)");
    app.add_option("--state-dir", ctx.state_dir, "where VMs keep their runtime files")
        ->envname("QMPKIT_STATE_DIR");
    app.add_option("--lock-timeout", ctx.lock_timeout,
                   "seconds to wait while another command works on the VM")
        ->capture_default_str()
        ->check(cli::non_negative_number());

    // `qmpkit --version` needs no command at all; any other call builds only the command group
    // of the word typed (a word no group claims, such as help, builds them all).
    const bool version_only = argc == 2 && std::string_view(argv[1]) == "--version";
    const auto word = command_word(argc, argv);
    if (!version_only && (!word || !register_group_of(*word, app, ctx))) {
        cli::register_lifecycle_commands(app, ctx);
        cli::register_device_commands(app, ctx);
        cli::register_guest_commands(app, ctx);
        cli::register_disk_commands(app, ctx);
        cli::register_snapshot_commands(app, ctx);
        cli::register_reset_commands(app, ctx);
        cli::register_pool_commands(app, ctx);
        cli::register_qmp_commands(app, ctx);
        cli::register_virsh_commands(app, ctx);
        cli::register_help_command(app, ctx);
    }

    // Hidden: the build prints the bash completion and the man page from this command tree.
    if (cli::is_generate_request(argc, argv))
        return cli::generate(app, argc, argv, std::string("qmpkit ") + QMPKIT_VERSION);

    try {
        app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
        if (auto unknown = unknown_command(app); unknown && e.get_exit_code() != 0) {
            std::cerr << *unknown << "\nRun with --help for more information.\n";
            return cli::exit_code::usage;
        }
        const int code = app.exit(e);
        return code == 0 ? cli::exit_code::ok : cli::exit_code::usage;
    }

    ctx.logger = make_logger(ctx.verbosity);
    try {
        return ctx.action();
    } catch (const qmp::error& e) {
        std::cerr << "qmpkit: " << e.what() << "\n";
        return exit_code_for(e);
    } catch (const snapshot::error& e) {
        std::cerr << "qmpkit: " << e.what() << "\n";
        return e.kind() == snapshot::error_kind::invalid_name ? cli::exit_code::usage
               : e.kind() == snapshot::error_kind::timeout    ? cli::exit_code::timeout
                                                              : cli::exit_code::failed;
    } catch (const launcher::error& e) {
        std::cerr << "qmpkit: " << e.what() << "\n";
        if (!e.diagnostics().empty())
            return cli::exit_code::usage;
        return e.kind() == launcher::error_kind::timed_out ? cli::exit_code::timeout
                                                           : cli::exit_code::failed;
    } catch (const std::invalid_argument& e) {
        std::cerr << "qmpkit: " << e.what() << "\n";
        return cli::exit_code::usage;
    } catch (const std::exception& e) {
        std::cerr << "qmpkit: " << e.what() << "\n";
        return cli::exit_code::failed;
    }
}
