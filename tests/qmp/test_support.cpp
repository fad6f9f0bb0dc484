#include "qmp/test_support.hpp"

#include <gtest/gtest.h>
#include <spdlog/logger.h>
#include <spdlog/sinks/base_sink.h>

#include <cstdlib>
#include <cstring>
#include <mutex>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>
#include <utility>

namespace qmpkit::qmp::test {

// Keeps what is logged; owned by the logger, which may outlive the captured_log.
class captured_log::sink : public spdlog::sinks::base_sink<std::mutex> {
public:
    std::string text() {
        std::lock_guard lock(mutex_);
        return text_;
    }

protected:
    void sink_it_(const spdlog::details::log_msg& msg) override {
        spdlog::memory_buf_t formatted;
        formatter_->format(msg, formatted);
        text_.append(formatted.data(), formatted.size());
    }
    void flush_() override {}

private:
    std::string text_;
};

captured_log::captured_log()
    : sink_(std::make_shared<sink>())
    , logger_(std::make_shared<spdlog::logger>("qmp-test", sink_)) {
    logger_->set_level(spdlog::level::trace);
}

std::string captured_log::text() const {
    return sink_->text();
}

client_options quick_options(const captured_log& log) {
    client_options options;
    options.command_timeout = std::chrono::seconds(5);
    options.connect_timeout = std::chrono::seconds(5);
    options.logger = log.logger();
    return options;
}

void join_script(fake_qmp_server& server) {
    try {
        server.join();
    } catch (const std::exception& e) {
        ADD_FAILURE() << "fake QMP server script failed: " << e.what();
    }
}

unix_listener::unix_listener() {
    std::string dir = (std::filesystem::temp_directory_path() / "qmpkit-test-XXXXXX").string();
    if (!::mkdtemp(dir.data()))
        throw std::runtime_error("mkdtemp failed");
    dir_ = dir;
    path_ = dir_ / "qmp.sock";
    fd_ = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un address{};
    address.sun_family = AF_UNIX;
    std::strncpy(address.sun_path, path_.c_str(), sizeof(address.sun_path) - 1);
    if (fd_ < 0 || ::bind(fd_, reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0 ||
        ::listen(fd_, 4) != 0)
        throw std::runtime_error("cannot listen on " + path_.string());
}

unix_listener::~unix_listener() {
    if (fd_ >= 0)
        ::close(fd_);
    std::error_code ignored;
    std::filesystem::remove_all(dir_, ignored);
}

script_guard::script_guard(fake_qmp_server& server, std::function<void()> close_client)
    : server_(&server)
    , close_client_(std::move(close_client)) {}

script_guard::script_guard(script_guard&& other) noexcept
    : server_(std::exchange(other.server_, nullptr))
    , close_client_(std::move(other.close_client_)) {}

script_guard::~script_guard() {
    if (!server_)
        return;
    close_client_();
    join_script(*server_);
}

void checkpoint::wait(std::chrono::milliseconds deadline) const {
    if (future_.wait_for(deadline) != std::future_status::ready)
        throw fake_qmp_server::failure("the test never reached the checkpoint");
}

int make_memfd() {
    const int fd = ::memfd_create("qmpkit-test", MFD_CLOEXEC);
    if (fd < 0)
        throw std::runtime_error("memfd_create failed");
    return fd;
}

bool same_file(int a, int b) {
    struct stat sa {};
    struct stat sb {};
    if (::fstat(a, &sa) != 0 || ::fstat(b, &sb) != 0)
        return false;
    return sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
}

} // namespace qmpkit::qmp::test

namespace qmpkit::qmp {
void PrintTo(errc e, std::ostream* os) {
    *os << make_error_code(e).message();
}
} // namespace qmpkit::qmp
