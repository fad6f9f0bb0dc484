#include "share_mounts.hpp"

#include <qmpkit/launcher/error.hpp>
#include <qmpkit/snapshot/error.hpp>

#include <boost/json.hpp>
#include <spdlog/logger.h>

#include <algorithm>
#include <sstream>

namespace qmpkit::snapshot::detail {
namespace {

namespace json = boost::json;
using namespace std::chrono_literals;

// /proc/self/mounts writes a blank, tab, newline and backslash in a field as \ooo.
std::string unescape_mount_field(const std::string& field) {
    std::string out;
    for (std::size_t i = 0; i < field.size(); ++i) {
        if (field[i] == '\\' && i + 3 < field.size() &&
            std::all_of(field.begin() + static_cast<std::ptrdiff_t>(i) + 1,
                        field.begin() + static_cast<std::ptrdiff_t>(i) + 4,
                        [](char c) { return c >= '0' && c <= '7'; })) {
            out += static_cast<char>((field[i + 1] - '0') * 64 + (field[i + 2] - '0') * 8 +
                                     (field[i + 3] - '0'));
            i += 3;
        } else {
            out += field[i];
        }
    }
    return out;
}

bool is_share(const launcher::vm_definition& def, const std::string& tag) {
    return std::any_of(def.shares.begin(), def.shares.end(),
                       [&](const auto& s) { return s.tag == tag; });
}

// Runs a command (no shell) through the agent; the exit code, and stderr for messages.
qmp::guest_exec_status run(qmp::guest_agent& agent, std::string path,
                           std::vector<std::string> args) {
    qmp::guest_exec_request request;
    request.path = std::move(path);
    request.args = std::move(args);
    return agent.exec(request, 30s);
}

std::vector<guest_share_mount> mounted_shares(qmp::guest_agent& agent,
                                              const launcher::vm_definition& def) {
    const auto s = run(agent, "cat", {"/proc/self/mounts"});
    if (!s.succeeded())
        throw error(error_kind::other,
                    "reading the guest's /proc/self/mounts failed: " + s.failure());
    return parse_share_mounts(s.out, def);
}

// Mounts `m` again with its own options; on failure, with the options qmpkit would use.
bool mount_again(qmp::guest_agent& agent, const launcher::vm_definition& def,
                 const guest_share_mount& m, std::string& problem) {
    auto s = run(agent, "mount", {"-t", "9p", "-o", m.options, m.tag, m.directory});
    if (s.succeeded())
        return true;
    for (const auto& share : def.shares)
        if (share.tag == m.tag) {
            s = run(agent, "mount",
                    {"-t", "9p", "-o", launcher::share_mount_options(share), m.tag, m.directory});
            if (s.succeeded())
                return true;
        }
    problem = s.failure();
    return false;
}

} // namespace

std::vector<guest_share_mount> parse_share_mounts(const std::string& text,
                                                  const launcher::vm_definition& def) {
    std::vector<guest_share_mount> mounts;
    std::istringstream lines(text);
    for (std::string line; std::getline(lines, line);) {
        std::istringstream fields(line);
        std::string source, directory, type, options;
        if (!(fields >> source >> directory >> type >> options) || type != "9p")
            continue;
        source = unescape_mount_field(source);
        if (is_share(def, source))
            mounts.push_back({source, unescape_mount_field(directory), options});
    }
    return mounts;
}

std::vector<std::string> blocking_share_tags(qmp::client& qmp, const launcher::vm_definition& def) {
    std::vector<std::string> tags;
    if (def.shares.empty())
        return tags;
    const auto info = qmp.execute("query-migrate");
    const auto* reasons =
        info.is_object() ? info.as_object().if_contains("blocked-reasons") : nullptr;
    if (!reasons || !reasons->is_array())
        return tags;
    for (const auto& share : def.shares)
        for (const auto& reason : reasons->as_array())
            if (reason.is_string() &&
                std::string_view(reason.as_string()).find("mount_tag '" + share.tag + "'") !=
                    std::string_view::npos) {
                tags.push_back(share.tag);
                break;
            }
    return tags;
}

shares_unmounted::shares_unmounted(const launcher::state_directory& dir,
                                   const launcher::vm_definition& def, qmp::client& qmp,
                                   bool guest_running, const std::string& operation,
                                   std::shared_ptr<spdlog::logger> logger)
    : vm_(dir.vm_name())
    , def_(def)
    , logger_(std::move(logger)) {
    const auto tags = blocking_share_tags(qmp, def);
    if (tags.empty())
        return;
    std::string list;
    for (const auto& t : tags)
        list += (list.empty() ? "'" : ", '") + t + "'";
    const auto cannot = "cannot " + operation + " of VM '" + vm_ + "': the guest has share " +
                        list + " mounted, and qemu saves no memory while a 9p share is mounted";
    if (!def.guest_agent)
        throw error(error_kind::unsupported,
                    cannot + "; unmount it in the guest first, or give the VM a guest agent "
                             "(guest_agent: true) so that qmpkit unmounts it for the operation");
    if (!guest_running)
        throw error(error_kind::unsupported,
                    cannot + "; the guest is paused, so its agent cannot unmount it: resume it "
                             "first (qmpkit resume)");
    qmp::guest_agent_options options;
    options.sync_timeout = 5s;
    options.command_timeout = 30s;
    options.logger = logger_;
    try {
        session_.emplace(launcher::open_guest_agent(dir, def, options));
        session_->agent.sync();
        auto mounts = mounted_shares(session_->agent, def);
        // Nested mounts first.
        std::reverse(mounts.begin(), mounts.end());
        for (const auto& m : mounts) {
            const auto s = run(session_->agent, "umount", {m.directory});
            if (!s.succeeded())
                throw error(error_kind::unsupported,
                            cannot + "; unmounting it from " + m.directory +
                                " failed: " + s.failure() +
                                " (a process in the guest works in it: end it, or unmount the "
                                "share yourself)");
            unmounted_.insert(unmounted_.begin(), m);
            if (logger_)
                logger_->info("VM '{}': unmounted share '{}' from {} to {}", vm_, m.tag,
                              m.directory, operation);
        }
        if (const auto left = blocking_share_tags(qmp, def); !left.empty())
            throw error(error_kind::unsupported,
                        cannot + "; share '" + left.front() +
                            "' still blocks it after unmounting every mount of it the guest "
                            "lists");
    } catch (const error&) {
        remount();
        throw;
    } catch (const std::exception& e) {
        remount();
        throw error(error_kind::unsupported,
                    cannot + "; its guest agent could not unmount it: " + e.what());
    }
}

shares_unmounted::~shares_unmounted() {
    try {
        remount();
    } catch (const std::exception& e) {
        if (logger_)
            logger_->warn("VM '{}': shares were not mounted again: {}", vm_, e.what());
    }
}

void shares_unmounted::remount() {
    if (unmounted_.empty() || !session_)
        return;
    auto mounts = std::exchange(unmounted_, {});
    std::string failed;
    for (const auto& m : mounts) {
        std::string problem;
        try {
            session_->agent.resync_needed();
            session_->agent.sync();
            if (mount_again(session_->agent, def_, m, problem))
                continue;
        } catch (const std::exception& e) {
            problem = e.what();
        }
        failed += (failed.empty() ? "" : "; ") + m.tag + " on " + m.directory + ": " + problem;
    }
    if (!failed.empty() && logger_)
        logger_->warn("VM '{}': mounting the shares again failed ({}); mount them in the guest",
                      vm_, failed);
}

void mount_declared_shares(qmp::guest_agent& agent, const launcher::vm_definition& def,
                           const std::shared_ptr<spdlog::logger>& logger) {
    if (std::none_of(def.shares.begin(), def.shares.end(),
                     [](const auto& s) { return !s.mount.empty(); }))
        return;
    try {
        const auto mounted = mounted_shares(agent, def);
        for (const auto& share : def.shares) {
            if (share.mount.empty() ||
                std::any_of(mounted.begin(), mounted.end(),
                            [&](const auto& m) { return m.directory == share.mount; }))
                continue;
            std::string problem;
            if (!mount_again(agent, def,
                             {share.tag, share.mount, launcher::share_mount_options(share)},
                             problem) &&
                logger)
                logger->warn("share '{}' was not mounted on {} again: {}", share.tag, share.mount,
                             problem);
        }
    } catch (const std::exception& e) {
        if (logger)
            logger->warn("the shares were not mounted again: {}", e.what());
    }
}

void mount_declared_shares(const launcher::state_directory& dir, const launcher::vm_definition& def,
                           const std::shared_ptr<spdlog::logger>& logger) {
    if (!def.guest_agent || std::none_of(def.shares.begin(), def.shares.end(),
                                         [](const auto& s) { return !s.mount.empty(); }))
        return;
    try {
        qmp::guest_agent_options options;
        options.sync_timeout = 10s;
        options.command_timeout = 30s;
        options.logger = logger;
        auto session = launcher::open_guest_agent(dir, def, options);
        mount_declared_shares(session.agent, def, logger);
    } catch (const std::exception& e) {
        if (logger)
            logger->warn("VM '{}': the shares were not mounted again: {}", dir.vm_name(), e.what());
    }
}

} // namespace qmpkit::snapshot::detail
