#pragma once

// Helpers shared by the client tests.

#include "qmp/fake_qmp_server.hpp"

#include <qmpkit/qmp/client_options.hpp>
#include <qmpkit/qmp/error.hpp>

#include <chrono>
#include <filesystem>
#include <functional>
#include <future>
#include <memory>
#include <ostream>
#include <string>

namespace spdlog {
class logger;
}

namespace qmpkit::qmp::test {

// A trace-level logger writing into a string, so every log statement is formatted (and so
// checked by the sanitizers) and tests can look for a warning.
class captured_log {
public:
    captured_log();
    const std::shared_ptr<spdlog::logger>& logger() const { return logger_; }
    std::string text() const;

private:
    class sink;
    std::shared_ptr<sink> sink_;
    std::shared_ptr<spdlog::logger> logger_;
};

// Short deadlines, so a test that goes wrong fails in seconds instead of hanging.
client_options quick_options(const captured_log& log);

// Joins the server's script and reports its failure as a test failure.
void join_script(fake_qmp_server& server);

// Ends a conversation when the test body leaves it, early (a failed ASSERT) or not: closes the
// client, so a script reading sees EOF, then joins the script. Made after the locals a script
// captures, it runs before they are destroyed.
class [[nodiscard]] script_guard {
public:
    script_guard(fake_qmp_server& server, std::function<void()> close_client);
    ~script_guard();
    script_guard(script_guard&& other) noexcept;
    script_guard& operator=(script_guard&&) = delete;

private:
    fake_qmp_server* server_;
    std::function<void()> close_client_;
};

// A point in the test the script waits for (or the other way round), with a deadline.
class checkpoint {
public:
    void reach() { promise_.set_value(); }
    bool reached() const {
        return future_.wait_for(std::chrono::seconds(0)) == std::future_status::ready;
    }
    // Script side: throws fake_qmp_server::failure when the deadline passes first.
    void wait(std::chrono::milliseconds deadline = std::chrono::seconds(5)) const;

private:
    std::promise<void> promise_;
    std::shared_future<void> future_ = promise_.get_future().share();
};

// A listening UNIX socket in a fresh temporary directory, removed at scope exit.
class unix_listener {
public:
    unix_listener();
    ~unix_listener();
    unix_listener(const unix_listener&) = delete;
    unix_listener& operator=(const unix_listener&) = delete;

    const std::filesystem::path& path() const { return path_; }
    int fd() const { return fd_; }

private:
    std::filesystem::path dir_;
    std::filesystem::path path_;
    int fd_ = -1;
};

// A fresh anonymous file; the caller owns the descriptor.
int make_memfd();
// Whether two descriptors refer to the same file (device and inode).
bool same_file(int a, int b);

} // namespace qmpkit::qmp::test

namespace qmpkit::qmp {
// So that GoogleTest prints "timeout" rather than the bytes of the enum.
void PrintTo(errc e, std::ostream* os);
} // namespace qmpkit::qmp
