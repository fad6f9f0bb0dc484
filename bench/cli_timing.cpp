#include "cli_timing.hpp"

#include <algorithm>
#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

namespace qmpkit::bench {

bool timed_call::ok() const {
    return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

timed_call run_timed(const std::filesystem::path& program, const std::vector<std::string>& args,
                     const std::filesystem::path& state, bool capture) {
    std::vector<char*> argv;
    argv.push_back(const_cast<char*>(program.c_str()));
    for (const auto& a : args)
        argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    int out[2] = {-1, -1};
    if (capture && ::pipe2(out, O_CLOEXEC) != 0)
        return {0, -1, {}};
    timed_call result;
    const auto t0 = clock_type::now();
    const pid_t pid = ::fork();
    if (pid == 0) {
        const int to = capture ? out[1] : ::open("/dev/null", O_WRONLY);
        ::dup2(to, STDOUT_FILENO);
        if (!state.empty())
            ::setenv("QMPKIT_STATE_DIR", state.c_str(), 1);
        ::execv(argv[0], argv.data());
        ::_exit(127);
    }
    if (capture) {
        ::close(out[1]);
        char buffer[4096];
        for (ssize_t n; (n = ::read(out[0], buffer, sizeof buffer)) > 0;)
            result.out.append(buffer, static_cast<std::size_t>(n));
        ::close(out[0]);
    }
    ::waitpid(pid, &result.status, 0);
    result.ms = ms_since(t0);
    return result;
}

double percentile(std::vector<double> v, int p) {
    std::sort(v.begin(), v.end());
    return v.empty() ? 0 : v[std::min(v.size() - 1, v.size() * static_cast<std::size_t>(p) / 100)];
}

double ms_since(clock_type::time_point t) {
    return std::chrono::duration<double, std::milli>(clock_type::now() - t).count();
}

} // namespace qmpkit::bench
