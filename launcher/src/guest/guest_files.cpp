#include <qmpkit/launcher/error.hpp>
#include <qmpkit/launcher/guest_files.hpp>

#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <sstream>
#include <sys/stat.h>
#include <unistd.h>

namespace qmpkit::launcher {
namespace {

namespace fs = std::filesystem;

// What one guest-file-read or -write carries: large enough that a file of several MiB needs few
// round trips, small enough for the agent's JSON parser (its messages are base64, a third more).
constexpr std::size_t chunk_size = 1024 * 1024;

std::string part_name(const std::string& path) {
    return path + ".qmpkit-part";
}

std::string base_name(const std::string& guest_path) {
    auto slash = guest_path.find_last_not_of('/');
    auto trimmed = guest_path.substr(0, slash == std::string::npos ? 0 : slash + 1);
    auto start = trimmed.rfind('/');
    return start == std::string::npos ? trimmed : trimmed.substr(start + 1);
}

// A program in the guest, through the agent; its stderr (or exit code) when it fails.
qmp::guest_exec_status guest_run(qmp::guest_agent& agent, std::vector<std::string> argv) {
    qmp::guest_exec_request request;
    request.path = argv.front();
    request.args.assign(argv.begin() + 1, argv.end());
    return agent.exec(request, std::chrono::seconds(30));
}

std::string octal(unsigned mode) {
    std::ostringstream out;
    out << std::oct << (mode & 07777);
    return out.str();
}

// A descriptor closed on scope exit.
struct host_fd {
    int fd = -1;
    ~host_fd() {
        if (fd >= 0)
            ::close(fd);
    }
};

// A guest file handle closed on scope exit (best effort: the agent may be gone).
struct guest_handle {
    qmp::guest_agent& agent;
    std::int64_t handle = -1;
    ~guest_handle() {
        if (handle >= 0) {
            try {
                agent.file_close(handle);
            } catch (const std::exception&) {
            }
        }
    }
};

} // namespace

std::uint64_t copy_to_guest(qmp::guest_agent& agent, const fs::path& host_file,
                            const std::string& guest_path, const copy_progress& progress) {
    host_fd in{::open(host_file.c_str(), O_RDONLY | O_CLOEXEC)};
    struct stat st {};
    if (in.fd < 0 || ::fstat(in.fd, &st) != 0)
        throw error("cannot read host file " + host_file.string() + ": " + std::strerror(errno));
    if (S_ISDIR(st.st_mode))
        throw error("host path " + host_file.string() + " is a directory (cp copies one file)");

    auto target = guest_path;
    if (target.empty() || target.back() == '/' ||
        guest_run(agent, {"test", "-d", target}).succeeded())
        target = (target.empty() ? "" : target + (target.back() == '/' ? "" : "/")) +
                 host_file.filename().string();
    const auto part = part_name(target);
    const auto total = static_cast<std::uint64_t>(st.st_size);
    std::uint64_t done = 0;
    try {
        guest_handle out{agent};
        try {
            out.handle = agent.file_open(part, "w");
        } catch (const qmp::error& e) {
            throw error("cannot write guest file " + target + ": " + e.diag().description);
        }
        std::string buffer(chunk_size, '\0');
        for (;;) {
            const auto n = ::read(in.fd, buffer.data(), buffer.size());
            if (n < 0)
                throw error("cannot read host file " + host_file.string() + ": " +
                            std::strerror(errno));
            if (n == 0)
                break;
            std::string_view data(buffer.data(), static_cast<std::size_t>(n));
            while (!data.empty()) {
                const auto written = agent.file_write(out.handle, data);
                if (written == 0)
                    throw error("guest file " + target + ": the agent wrote nothing");
                data.remove_prefix(std::min(written, data.size()));
            }
            done += static_cast<std::uint64_t>(n);
            if (progress)
                progress(done, total);
        }
        agent.file_close(std::exchange(out.handle, -1));
        if (auto s = guest_run(agent, {"chmod", octal(st.st_mode), part}); !s.succeeded())
            throw error("guest file " + target + ": chmod failed: " + s.failure());
        if (auto s = guest_run(agent, {"mv", "-f", part, target}); !s.succeeded())
            throw error("cannot write guest file " + target + ": " + s.failure());
    } catch (...) {
        try {
            guest_run(agent, {"rm", "-f", part});
        } catch (const std::exception&) {
        }
        throw;
    }
    return done;
}

std::uint64_t copy_from_guest(qmp::guest_agent& agent, const std::string& guest_file,
                              const fs::path& host_path, const copy_progress& progress) {
    // Mode, size and type in one question; stat's own message for a path that is not there.
    const auto info = guest_run(agent, {"stat", "-L", "-c", "%a %s %F", guest_file});
    if (!info.succeeded())
        throw error("guest file " + guest_file + ": " + info.failure());
    std::istringstream fields(info.out);
    std::string mode_text, type;
    std::uint64_t total = 0;
    fields >> mode_text >> total;
    std::getline(fields >> std::ws, type);
    if (type == "directory")
        throw error("guest path " + guest_file + " is a directory (cp copies one file)");
    const auto mode = static_cast<mode_t>(std::stoul(mode_text, nullptr, 8));

    std::error_code ec;
    auto target = host_path;
    if (fs::is_directory(target, ec))
        target /= base_name(guest_file);
    const auto part = fs::path(part_name(target.string()));
    std::uint64_t done = 0;
    try {
        host_fd out{::open(part.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600)};
        if (out.fd < 0)
            throw error("cannot write host file " + target.string() + ": " + std::strerror(errno));
        guest_handle in{agent};
        try {
            in.handle = agent.file_open(guest_file, "r");
        } catch (const qmp::error& e) {
            throw error("cannot read guest file " + guest_file + ": " + e.diag().description);
        }
        for (;;) {
            auto chunk = agent.file_read(in.handle, chunk_size);
            std::string_view data = chunk.data;
            while (!data.empty()) {
                const auto n = ::write(out.fd, data.data(), data.size());
                if (n < 0)
                    throw error("cannot write host file " + target.string() + ": " +
                                std::strerror(errno));
                data.remove_prefix(static_cast<std::size_t>(n));
            }
            done += chunk.data.size();
            if (progress && !chunk.data.empty())
                progress(done, total);
            if (chunk.eof || chunk.data.empty())
                break;
        }
        if (::fchmod(out.fd, mode) != 0 || ::fsync(out.fd) != 0)
            throw error("cannot write host file " + target.string() + ": " + std::strerror(errno));
        fs::rename(part, target);
    } catch (...) {
        fs::remove(part, ec);
        throw;
    }
    return done;
}

} // namespace qmpkit::launcher
