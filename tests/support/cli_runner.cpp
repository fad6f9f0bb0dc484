#include "cli_runner.hpp"
#include "tiny_guest.hpp"

#include <qmpkit/launcher/subprocess.hpp>

#include <gtest/gtest.h>

#include <deque>
#include <fstream>
#include <thread>

namespace qmpkit::test {

cli_runner::cli_runner(std::filesystem::path state_root)
    : state_root_(std::move(state_root)) {}

cli_result cli_runner::operator()(std::vector<std::string> args,
                                  std::chrono::milliseconds timeout) const {
    args.insert(args.begin(), {qmpkit_binary().string(), "--state-dir", state_root_.string()});
    launcher::subprocess_options o;
    o.timeout = timeout;
    auto r = launcher::run(args, o);
    return {r.signal ? 128 + r.signal : r.exit_code, r.out, r.err};
}

namespace {

// The last lines of a VM's console log: what a guest that stopped answering said last (a panic,
// a reboot), kept in the failure message because the scratch directory goes with the test.
std::string console_tail(const std::filesystem::path& state_root, const std::string& vm,
                         std::size_t lines = 30) {
    std::ifstream in(state_root / vm / "serial.log", std::ios::binary);
    std::deque<std::string> last;
    for (std::string line; std::getline(in, line);) {
        last.push_back(std::move(line));
        if (last.size() > lines)
            last.pop_front();
    }
    std::string text;
    for (const auto& l : last)
        text += "  | " + l + "\n";
    return text;
}

} // namespace

std::string cli_runner::guest(const std::string& vm, const std::string& command) const {
    auto r = (*this)({"shell", vm, "--", command});
    EXPECT_EQ(r.code, 0) << "guest command `" << command << "`: " << r.out << r.err
                         << "the console's last lines:\n"
                         << (r.code == 0 ? std::string() : console_tail(state_root_, vm));
    return r.out;
}

bool cli_runner::wait_for_mount(const std::string& vm, const std::string& where,
                                std::chrono::milliseconds timeout) const {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    do {
        if ((*this)({"shell", vm, "--", "grep -q ' " + where + " ' /proc/mounts"}).code == 0)
            return true;
        std::this_thread::sleep_for(std::chrono::milliseconds(250));
    } while (std::chrono::steady_clock::now() < deadline);
    return false;
}

long cli_runner::counter(const std::string& vm) const {
    auto text = guest(vm, "cat /run/counter");
    return text.empty() ? -1 : std::stol(text);
}

std::string cli_runner::boot_id(const std::string& vm) const {
    auto id = guest(vm, "cat /proc/sys/kernel/random/boot_id");
    while (!id.empty() && id.back() == '\n')
        id.pop_back();
    return id;
}

} // namespace qmpkit::test
