#pragma once

// Blocking client for the QEMU guest agent (qemu-ga), reached through the VM's virtio-serial
// port socket (-chardev socket,server=on,wait=off). The agent speaks QMP's framing, one JSON
// object per line, but sends no greeting, takes no qmp_capabilities and puts no ids in its
// replies: a reply belongs to the oldest command without one, so one command is in flight at a
// time, and the client is for one thread at a time. Failures throw qmp::error, as the QMP
// client does.
//
// qemu accepts the connection whether or not an agent runs in the guest, and bytes left over
// from an earlier client, a timed-out command or a snapshot revert may still be in the stream.
// So before the first command, after a timeout, and whenever the caller says so (resync_needed(),
// after reverting the guest), the client sends 0xFF (the agent drops any partial input) and
// guest-sync-delimited with a random id; the agent answers with a 0xFF byte and the id. The
// client skips everything before the 0xFF and drops replies until the one with its id. No
// answer within sync_timeout means no agent: errc::timeout.
//
//     qmpkit::qmp::guest_agent agent;
//     agent.connect("/var/lib/qmpkit/tiny/agent.sock");
//     agent.ping();
//     auto r = agent.exec({.path = "uname", .args = {"-r"}});   // r.exit_code, r.out, r.err

#include <qmpkit/qmp/decoder.hpp>
#include <qmpkit/qmp/error.hpp>

#include <boost/json/object.hpp>
#include <boost/json/value.hpp>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace spdlog {
class logger;
}

namespace qmpkit::qmp {

struct guest_agent_options {
    // Default deadline of a command once the stream is in sync.
    std::chrono::milliseconds command_timeout{std::chrono::seconds(30)};
    // Deadline of guest-sync-delimited: how long to wait for a sign that an agent runs.
    std::chrono::milliseconds sync_timeout{std::chrono::seconds(5)};
    std::size_t max_message_size = decoder::default_max_message_size;
    // Every message is logged at trace level. Null: the client logs nothing.
    std::shared_ptr<spdlog::logger> logger;
};

// guest-exec: runs `path` (searched in the guest's PATH) with `args`, no shell.
struct guest_exec_request {
    std::string path;
    std::vector<std::string> args{};
    std::vector<std::string> env{};     // "NAME=value"; empty: the agent's environment
    std::optional<std::string> input{}; // bytes for the command's stdin
    bool capture_output = true;
};

// guest-exec-status, with the output decoded from base64.
struct guest_exec_status {
    bool exited = false;
    std::optional<int> exit_code; // when it exited normally
    std::optional<int> signal;    // when a signal ended it
    std::string out, err;
    bool out_truncated = false, err_truncated = false;

    // Exited with 0.
    bool succeeded() const noexcept { return exit_code && *exit_code == 0; }
    // For a failure's message: stderr (else stdout) without its trailing line breaks, else the
    // exit code or signal.
    std::string failure() const;
};

struct guest_info {
    std::string version;                         // qemu-ga's version, "7.2.22"
    std::vector<std::string> enabled_commands{}; // what this agent accepts
};

struct guest_file_chunk {
    std::string data;
    bool eof = false;
};

class guest_agent {
public:
    explicit guest_agent(guest_agent_options options = {});
    ~guest_agent();
    guest_agent(guest_agent&&) noexcept;
    guest_agent& operator=(guest_agent&&) noexcept;

    // Connects to the agent's socket (closing any earlier connection). Does not wait for an
    // agent: the first command synchronises.
    void connect(const std::filesystem::path& socket_path);
    // Takes ownership of a connected stream socket.
    void adopt(int connected_fd);
    bool is_connected() const noexcept;
    void close();

    // The next command resynchronises first: call it after anything that may have put the
    // stream out of step, such as a snapshot revert or a reset of the guest.
    void resync_needed() noexcept;
    // Resynchronises now; zero or nullopt timeout: options.sync_timeout.
    void sync(std::optional<std::chrono::milliseconds> timeout = std::nullopt);

    // Any agent command; its "return" value. timeout: options.command_timeout if unset.
    boost::json::value execute(std::string_view name, boost::json::object arguments = {},
                               std::optional<std::chrono::milliseconds> timeout = std::nullopt);

    void ping(std::optional<std::chrono::milliseconds> timeout = std::nullopt);
    guest_info info();

    // guest-exec; returns the guest pid to pass to exec_status.
    std::int64_t exec_start(const guest_exec_request& request);
    guest_exec_status exec_status(std::int64_t pid);
    // guest-exec, then guest-exec-status until the command has exited. Throws errc::timeout
    // when it runs longer than `timeout` (the command keeps running in the guest).
    guest_exec_status exec(const guest_exec_request& request,
                           std::chrono::milliseconds timeout = std::chrono::seconds(60));

    // guest-file-open/read/write/close; mode as fopen's ("r", "w", "a", "r+", ...).
    std::int64_t file_open(const std::string& path, std::string_view mode = "r");
    guest_file_chunk file_read(std::int64_t handle, std::size_t count = 64 * 1024);
    std::size_t file_write(std::int64_t handle, std::string_view data);
    void file_close(std::int64_t handle);

    // guest-fsfreeze-*: the number of file systems frozen or thawed; status "thawed"/"frozen".
    int fsfreeze_freeze();
    int fsfreeze_thaw();
    std::string fsfreeze_status();

    // guest-shutdown (mode powerdown, halt or reboot). The agent answers only when it fails, so
    // this waits up to `error_window` for an error; silence or the connection ending (qemu quit
    // with the guest) is success. The stream needs a resync afterwards.
    void shutdown(std::string_view mode = "powerdown",
                  std::chrono::milliseconds error_window = std::chrono::seconds(1));

private:
    struct impl;
    std::unique_ptr<impl> impl_;
};

// Standard base64 (RFC 4648, with padding), as the agent uses for file and exec data. decode
// throws qmp::error (errc::protocol_error) on anything else.
std::string base64_encode(std::string_view bytes);
std::string base64_decode(std::string_view text);

} // namespace qmpkit::qmp
