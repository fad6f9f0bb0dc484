// The VM's logs are moved aside past their limit by whoever opens them to append, and processes
// that start at once never replace the kept generation with a fresh log.

#include "host/log_rotation.hpp"
#include "launcher/test_support.hpp"

#include <gtest/gtest.h>

#include <barrier>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <unistd.h>
#include <vector>

namespace qmpkit::launcher::detail {
namespace {

namespace fs = std::filesystem;

class log_rotation : public ::testing::Test {
protected:
    static std::string read(const fs::path& file) {
        std::ostringstream text;
        text << std::ifstream(file).rdbuf();
        return text.str();
    }
    static void append(const fs::path& log, std::uintmax_t limit, const std::string& line) {
        const int fd = open_log_to_append(log, limit);
        ASSERT_GE(fd, 0);
        ASSERT_EQ(::write(fd, line.data(), line.size()), static_cast<ssize_t>(line.size()));
        ::close(fd);
    }

    test::temp_dir dir_;
};

TEST_F(log_rotation, a_log_under_the_limit_is_appended_to_and_one_past_it_moves_aside) {
    const auto log = dir_.path() / "qemu.log";
    append(log, 16, "first\n");
    append(log, 16, "second\n");
    EXPECT_EQ(read(log), "first\nsecond\n");
    EXPECT_EQ(fs::status(log).permissions() & fs::perms::all,
              fs::perms::owner_read | fs::perms::owner_write);
    EXPECT_FALSE(fs::exists(dir_.path() / "qemu.log.1"));
    append(log, 13, "third\n"); // 13 bytes are there: the limit is reached
    EXPECT_EQ(read(dir_.path() / "qemu.log.1"), "first\nsecond\n");
    EXPECT_EQ(read(log), "third\n");
}

TEST_F(log_rotation, starts_at_once_keep_the_older_generation) {
    const auto log = dir_.path() / "supervisor.log";
    const std::string old(4096, 'o');
    for (int round = 0; round < 20; ++round) {
        fs::remove(dir_.path() / "supervisor.log.1");
        std::ofstream(log, std::ios::trunc) << old;
        constexpr int openers = 8;
        std::barrier start(openers);
        std::vector<std::thread> threads;
        for (int i = 0; i < openers; ++i)
            threads.emplace_back([&] {
                start.arrive_and_wait();
                append(log, old.size(), "x\n");
            });
        for (auto& t : threads)
            t.join();
        ASSERT_EQ(read(dir_.path() / "supervisor.log.1"), old) << "round " << round;
        std::string lines;
        for (int i = 0; i < openers; ++i)
            lines += "x\n";
        ASSERT_EQ(read(log), lines) << "round " << round;
    }
}

} // namespace
} // namespace qmpkit::launcher::detail
