// QMP round trip against a real qemu: qmpkit's clients vs a minimal raw-socket loop that does
// the least any client must do (write the command, read one line, parse the JSON).
// Prints a table of medians and p99s and the ratio of each client to the raw baseline, all
// measured in one run, because these machines are noisy.
//
//   qmp_roundtrip [--iterations N] [--rounds R]

#include "bench_args.hpp"

#include <qmpkit/qmp/async_client.hpp>
#include <qmpkit/qmp/client.hpp>

#include <boost/asio/io_context.hpp>
#include <boost/json/parse.hpp>

#include <algorithm>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <functional>
#include <spawn.h>
#include <string>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>
#include <vector>

extern char** environ;

namespace {

using namespace qmpkit;
using clock_type = std::chrono::steady_clock;
namespace json = boost::json;

struct qemu_process {
    pid_t pid = -1;
    std::filesystem::path socket;

    explicit qemu_process(std::filesystem::path path)
        : socket(std::move(path)) {
        std::filesystem::remove(socket);
        std::string qmp = "unix:" + socket.string() + ",server=on,wait=off";
        const char* argv[] = {"qemu-system-x86_64",
                              "-S",
                              "-nodefaults",
                              "-no-user-config",
                              "-display",
                              "none",
                              "-machine",
                              "pc",
                              "-accel",
                              "tcg",
                              "-qmp",
                              qmp.c_str(),
                              nullptr};
        if (posix_spawnp(&pid, argv[0], nullptr, nullptr, const_cast<char**>(argv), environ) != 0)
            throw std::runtime_error("cannot start qemu-system-x86_64");
        for (int i = 0; i < 1000 && !std::filesystem::exists(socket); ++i)
            std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    ~qemu_process() {
        ::kill(pid, SIGKILL);
        ::waitpid(pid, nullptr, 0);
        std::filesystem::remove(socket);
    }
};

// The baseline: blocking socket, no ids, no routing, no event handling.
class raw_qmp {
public:
    explicit raw_qmp(const std::filesystem::path& path) {
        fd_ = ::socket(AF_UNIX, SOCK_STREAM, 0);
        sockaddr_un addr{};
        addr.sun_family = AF_UNIX;
        std::strncpy(addr.sun_path, path.c_str(), sizeof(addr.sun_path) - 1);
        if (::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0)
            throw std::runtime_error("raw connect failed");
        read_line(); // greeting
        send(R"({"execute":"qmp_capabilities"})"
             "\n");
        read_line();
    }
    ~raw_qmp() { ::close(fd_); }

    void send(std::string_view text) {
        while (!text.empty()) {
            auto n = ::write(fd_, text.data(), text.size());
            if (n <= 0)
                throw std::runtime_error("raw write failed");
            text.remove_prefix(static_cast<std::size_t>(n));
        }
    }

    json::value read_line() {
        for (;;) {
            if (auto nl = buffer_.find('\n'); nl != std::string::npos) {
                auto value = json::parse(std::string_view(buffer_).substr(0, nl));
                buffer_.erase(0, nl + 1);
                return value;
            }
            char chunk[65536];
            auto n = ::read(fd_, chunk, sizeof chunk);
            if (n <= 0)
                throw std::runtime_error("raw read failed");
            buffer_.append(chunk, static_cast<std::size_t>(n));
        }
    }

private:
    int fd_ = -1;
    std::string buffer_;
};

struct sample_set {
    std::vector<double> samples_us;
    double ops_per_s = 0;
};

double percentile(std::vector<double> v, int p) {
    std::sort(v.begin(), v.end());
    return v[std::min(v.size() - 1, v.size() * static_cast<std::size_t>(p) / 100)];
}

double median(const std::vector<double>& v) {
    return percentile(v, 50);
}

sample_set summarize(std::vector<double> samples_us, double total_s) {
    const auto n = static_cast<double>(samples_us.size());
    return {std::move(samples_us), n / total_s};
}

template <typename F>
sample_set measure_sequential(int iterations, F&& round_trip) {
    for (int i = 0; i < iterations / 10; ++i) // warm up
        round_trip();
    std::vector<double> samples;
    samples.reserve(static_cast<std::size_t>(iterations));
    const auto start = clock_type::now();
    for (int i = 0; i < iterations; ++i) {
        const auto t0 = clock_type::now();
        round_trip();
        samples.push_back(
            std::chrono::duration<double, std::micro>(clock_type::now() - t0).count());
    }
    return summarize(std::move(samples),
                     std::chrono::duration<double>(clock_type::now() - start).count());
}

constexpr const char* query_status = R"({"execute":"query-status"})"
                                     "\n";

sample_set raw_pipelined(raw_qmp& raw, int iterations, int window) {
    std::vector<double> samples;
    std::vector<clock_type::time_point> sent;
    const auto start = clock_type::now();
    int issued = 0;
    for (; issued < window; ++issued) {
        sent.push_back(clock_type::now());
        raw.send(query_status);
    }
    for (int done = 0; done < iterations; ++done) {
        raw.read_line();
        samples.push_back(
            std::chrono::duration<double, std::micro>(clock_type::now() - sent[done]).count());
        if (issued < iterations) {
            sent.push_back(clock_type::now());
            raw.send(query_status);
            ++issued;
        }
    }
    return summarize(std::move(samples),
                     std::chrono::duration<double>(clock_type::now() - start).count());
}

sample_set async_pipelined(const std::filesystem::path& socket, int iterations, int window) {
    boost::asio::io_context io;
    qmp::async_client client(io.get_executor());
    bool ready = false;
    client.async_connect(socket, [&](boost::system::error_code ec) {
        if (ec)
            throw boost::system::system_error(ec);
        client.async_handshake([&](boost::system::error_code e, qmp::greeting) { ready = !e; });
    });
    while (!ready)
        io.run_one();

    std::vector<double> samples;
    int issued = 0;
    int done = 0;
    std::function<void()> issue = [&] {
        const auto t0 = clock_type::now();
        ++issued;
        client.async_execute(
            "query-status", {}, [&, t0](boost::system::error_code ec, json::value) {
                if (ec)
                    throw boost::system::system_error(ec);
                samples.push_back(
                    std::chrono::duration<double, std::micro>(clock_type::now() - t0).count());
                ++done;
                if (issued < iterations)
                    issue();
            });
    };
    const auto start = clock_type::now();
    for (int i = 0; i < window; ++i)
        issue();
    while (done < iterations)
        io.run_one();
    return summarize(std::move(samples),
                     std::chrono::duration<double>(clock_type::now() - start).count());
}

} // namespace

int main(int argc, char** argv) {
    int iterations = 5000;
    int rounds = 10;
    if (auto code =
            parse_bench_args(argc, argv, "qmp_roundtrip [--iterations N] [--rounds N]",
                             {{"--iterations", [&](const char* v) { iterations = std::stoi(v); }},
                              {"--rounds", [&](const char* v) { rounds = std::stoi(v); }}}))
        return *code;
    const int per_round = std::max(100, iterations / rounds);

    const auto socket = std::filesystem::temp_directory_path() /
                        ("qmpkit-bench-" + std::to_string(::getpid()) + ".sock");
    qemu_process qemu(socket);

    // qemu serves one client per monitor at a time, so the modes take turns in short rounds;
    // interleaving keeps a burst of load on this noisy machine from favouring one mode.
    std::vector<double> raw_seq, sync_seq, raw_pipe, async_pipe;
    std::vector<double> seq_ratio, pipe_ratio, throughput_ratio;
    auto append = [](std::vector<double>& all, const std::vector<double>& some) {
        all.insert(all.end(), some.begin(), some.end());
    };
    for (int round = 0; round < rounds; ++round) {
        sample_set rs, ss, rp, ap;
        {
            raw_qmp raw(socket);
            rs = measure_sequential(per_round, [&] {
                raw.send(query_status);
                raw.read_line();
            });
            rp = raw_pipelined(raw, per_round, 8);
        }
        {
            qmp::client client;
            client.connect(socket);
            ss = measure_sequential(per_round, [&] { client.execute("query-status"); });
        }
        ap = async_pipelined(socket, per_round, 8);
        append(raw_seq, rs.samples_us);
        append(sync_seq, ss.samples_us);
        append(raw_pipe, rp.samples_us);
        append(async_pipe, ap.samples_us);
        seq_ratio.push_back(median(ss.samples_us) / median(rs.samples_us));
        pipe_ratio.push_back(median(ap.samples_us) / median(rp.samples_us));
        throughput_ratio.push_back(ap.ops_per_s / rp.ops_per_s);
    }

    std::printf(
        "QMP round trip, query-status, %d rounds x %d iterations per mode, qemu under TCG\n\n",
        rounds, per_round);
    std::printf("%-36s %10s %10s\n", "mode", "median us", "p99 us");
    auto row = [](const char* name, std::vector<double> v) {
        std::printf("%-36s %10.1f %10.1f\n", name, median(v), percentile(v, 99));
    };
    row("raw socket, sequential", raw_seq);
    row("qmp::client (blocking), sequential", sync_seq);
    row("raw socket, 8 in flight", raw_pipe);
    row("qmp::async_client, 8 in flight", async_pipe);
    std::printf("\nmedian of per-round ratios (client / raw; 1.00 = no overhead):\n");
    std::printf("  sequential latency       %.2f\n", median(seq_ratio));
    std::printf("  8-in-flight latency      %.2f\n", median(pipe_ratio));
    std::printf("  8-in-flight throughput   %.2f (client ops/s over raw ops/s)\n",
                median(throughput_ratio));
    return 0;
}
