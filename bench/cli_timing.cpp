#include "cli_timing.hpp"

#include <algorithm>
#include <fcntl.h>
#include <spawn.h>
#include <string_view>
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
    // The environment with QMPKIT_STATE_DIR replaced, built before the clock starts.
    std::vector<std::string> env_text;
    for (char** e = environ; *e != nullptr; ++e)
        if (state.empty() || std::string_view(*e).rfind("QMPKIT_STATE_DIR=", 0) != 0)
            env_text.emplace_back(*e);
    if (!state.empty())
        env_text.push_back("QMPKIT_STATE_DIR=" + state.string());
    std::vector<char*> envp;
    for (auto& e : env_text)
        envp.push_back(e.data());
    envp.push_back(nullptr);

    int out[2] = {-1, -1};
    if (capture && ::pipe2(out, O_CLOEXEC) != 0)
        return {0, -1, {}};
    posix_spawn_file_actions_t actions;
    ::posix_spawn_file_actions_init(&actions);
    if (capture)
        ::posix_spawn_file_actions_adddup2(&actions, out[1], STDOUT_FILENO);
    else
        ::posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, "/dev/null", O_WRONLY, 0);

    timed_call result;
    const auto t0 = clock_type::now();
    pid_t pid = -1;
    const int spawned = ::posix_spawn(&pid, argv[0], &actions, nullptr, argv.data(), envp.data());
    ::posix_spawn_file_actions_destroy(&actions);
    if (capture) {
        ::close(out[1]);
        if (spawned == 0) {
            char buffer[4096];
            for (ssize_t n; (n = ::read(out[0], buffer, sizeof buffer)) > 0;)
                result.out.append(buffer, static_cast<std::size_t>(n));
        }
        ::close(out[0]);
    }
    if (spawned != 0) {
        result.status = 127 << 8; // as a shell reports a command it could not run
        return result;
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
