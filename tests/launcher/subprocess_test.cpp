#include <qmpkit/launcher/error.hpp>
#include <qmpkit/launcher/qemu_process.hpp>
#include <qmpkit/launcher/subprocess.hpp>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdlib>
#include <fcntl.h>
#include <string>
#include <sys/wait.h>
#include <unistd.h>

namespace qmpkit::launcher {
namespace {

using namespace std::chrono_literals;
using ::testing::HasSubstr;

// The test binary starts no other children, so after every run there must be none left to reap.
void expect_no_children() {
    errno = 0;
    EXPECT_EQ(::waitpid(-1, nullptr, WNOHANG), -1);
    EXPECT_EQ(errno, ECHILD) << "a child was left unreaped";
}

subprocess_result sh(const std::string& script, subprocess_options options = {}) {
    return run({"sh", "-c", script}, options);
}

template <class F>
error_kind kind_of(F f) {
    try {
        f();
    } catch (const error& e) {
        return e.kind();
    }
    ADD_FAILURE() << "no launcher::error thrown";
    return error_kind::other;
}

TEST(subprocess, captures_stdout_and_stderr_separately) {
    auto r = sh("echo to-out; echo to-err >&2; echo more-out");
    EXPECT_EQ(r.out, "to-out\nmore-out\n");
    EXPECT_EQ(r.err, "to-err\n");
    EXPECT_EQ(r.exit_code, 0);
    EXPECT_EQ(r.signal, 0);
    EXPECT_FALSE(r.timed_out);
    EXPECT_TRUE(r.ok());
    expect_no_children();
}

TEST(subprocess, reports_the_exit_code) {
    auto r = sh("exit 3");
    EXPECT_EQ(r.exit_code, 3);
    EXPECT_EQ(r.signal, 0);
    EXPECT_FALSE(r.ok());
    expect_no_children();
}

TEST(subprocess, reports_the_signal_that_ended_it) {
    auto r = sh("kill -TERM $$");
    EXPECT_EQ(r.signal, SIGTERM);
    EXPECT_FALSE(r.timed_out);
    EXPECT_FALSE(r.ok());
    expect_no_children();
}

TEST(subprocess, kills_at_the_timeout) {
    subprocess_options options;
    options.timeout = 200ms;
    auto start = std::chrono::steady_clock::now();
    auto r = sh("echo started; exec sleep 30", options);
    auto took = std::chrono::steady_clock::now() - start;
    EXPECT_TRUE(r.timed_out);
    EXPECT_EQ(r.signal, SIGKILL);
    EXPECT_EQ(r.out, "started\n") << "output before the kill is kept";
    EXPECT_GE(took, 200ms);
    EXPECT_LT(took, 5s);
    expect_no_children();
}

TEST(subprocess, a_fast_program_is_not_timed_out) {
    subprocess_options options;
    options.timeout = 10s;
    auto r = sh("echo hi", options);
    EXPECT_TRUE(r.ok());
    EXPECT_FALSE(r.timed_out);
}

TEST(subprocess, returns_when_a_grandchild_keeps_the_pipes_open) {
    // The background sleep inherits stdout and stderr; waiting for their end of file would
    // wait for it.
    auto start = std::chrono::steady_clock::now();
    auto r = sh("sleep 3 & echo done");
    EXPECT_LT(std::chrono::steady_clock::now() - start, 2s);
    EXPECT_EQ(r.out, "done\n");
    EXPECT_TRUE(r.ok());
    expect_no_children();
}

TEST(subprocess, a_timeout_applies_after_the_pipes_are_closed) {
    subprocess_options options;
    options.timeout = 200ms;
    auto start = std::chrono::steady_clock::now();
    auto r = sh("exec >&- 2>&-; exec sleep 30", options);
    EXPECT_LT(std::chrono::steady_clock::now() - start, 5s);
    EXPECT_TRUE(r.timed_out);
    expect_no_children();
}

TEST(subprocess, reads_a_megabyte_from_both_streams_without_deadlock) {
    // stderr first: a reader that drained stdout before stderr would hang here, with the child
    // blocked on a full stderr pipe and never getting to stdout.
    subprocess_options options;
    options.timeout = 30s;
    auto r = sh("head -c 1048576 /dev/zero | tr '\\0' e >&2; head -c 1048576 /dev/zero | tr "
                "'\\0' o",
                options);
    ASSERT_TRUE(r.ok()) << r.err.substr(0, 200);
    EXPECT_EQ(r.out, std::string(1 << 20, 'o'));
    EXPECT_EQ(r.err, std::string(1 << 20, 'e'));
}

TEST(subprocess, feeds_stdin_while_reading_stdout) {
    // cat echoes as it reads: writing all of the megabyte before reading would deadlock.
    subprocess_options options;
    options.timeout = 30s;
    std::string input;
    for (int i = 0; input.size() < (1 << 20); ++i)
        input += std::to_string(i) + '\n';
    options.input = input;
    auto r = run({"cat"}, options);
    ASSERT_TRUE(r.ok());
    EXPECT_EQ(r.out, input);
}

TEST(subprocess, a_child_that_ignores_stdin_does_not_raise_sigpipe_here) {
    subprocess_options options;
    options.input = std::string(1 << 20, 'x');
    auto r = run({"true"}, options);
    EXPECT_TRUE(r.ok());
    sigset_t pending;
    ::sigpending(&pending);
    EXPECT_FALSE(::sigismember(&pending, SIGPIPE));
}

TEST(subprocess, stdin_is_empty_without_input) {
    auto r = run({"cat"});
    EXPECT_TRUE(r.ok());
    EXPECT_EQ(r.out, "");
}

TEST(subprocess, an_empty_input_is_end_of_file_at_once) {
    subprocess_options options;
    options.input = "";
    auto r = run({"wc", "-c"}, options);
    EXPECT_TRUE(r.ok());
    EXPECT_EQ(r.out, "0\n");
}

TEST(subprocess, adds_and_replaces_environment_variables) {
    ASSERT_EQ(::setenv("QMPKIT_SUBPROCESS_TEST_OLD", "old", 1), 0);
    subprocess_options options;
    options.env = {{"QMPKIT_SUBPROCESS_TEST_NEW", "new value"},
                   {"QMPKIT_SUBPROCESS_TEST_OLD", "replaced"}};
    auto r = sh("echo \"$QMPKIT_SUBPROCESS_TEST_NEW|$QMPKIT_SUBPROCESS_TEST_OLD|${HOME:+home}\"",
                options);
    ::unsetenv("QMPKIT_SUBPROCESS_TEST_OLD");
    EXPECT_EQ(r.out,
              std::string("new value|replaced|") + (std::getenv("HOME") ? "home" : "") + "\n");
    EXPECT_EQ(std::getenv("QMPKIT_SUBPROCESS_TEST_NEW"), nullptr) << "our environment untouched";
}

TEST(subprocess, the_child_gets_only_stdin_stdout_and_stderr) {
    // An fd this process opened without O_CLOEXEC, as careless code elsewhere might.
    int leaky = ::fcntl(STDERR_FILENO, F_DUPFD, 100);
    ASSERT_GE(leaky, 100);
    // ls opens the directory as fd 3; anything else listed leaked in.
    auto r = run({"ls", "-1", "/proc/self/fd"});
    ::close(leaky);
    EXPECT_EQ(r.out, "0\n1\n2\n3\n");
}

TEST(subprocess, a_missing_program_is_a_result_not_an_exception) {
    auto r = run({"qmpkit-no-such-program", "--help"});
    EXPECT_EQ(r.spawn_error, ENOENT);
    EXPECT_EQ(r.exit_code, 127);
    EXPECT_FALSE(r.ok());
    EXPECT_THAT(r.err, HasSubstr("qmpkit-no-such-program"));
    expect_no_children();
}

TEST(subprocess, a_program_that_is_not_executable_gives_126) {
    auto r = run({"/dev/null"});
    EXPECT_EQ(r.spawn_error, EACCES);
    EXPECT_EQ(r.exit_code, 126);
}

TEST(subprocess, an_empty_argv_is_refused) {
    EXPECT_EQ(kind_of([] { run({}); }), error_kind::invalid_argument);
}

TEST(run_checked, returns_the_result_on_success) {
    auto r = run_checked({"sh", "-c", "echo fine"});
    EXPECT_EQ(r.out, "fine\n");
}

TEST(run_checked, names_a_missing_program_with_the_hint) {
    subprocess_options options;
    options.not_found_hint = "install qemu-utils (scripts/setup)";
    try {
        run_checked({"qmpkit-no-such-program"}, options);
        FAIL() << "no exception";
    } catch (const error& e) {
        EXPECT_EQ(e.kind(), error_kind::program_not_found);
        EXPECT_STREQ(e.what(),
                     "qmpkit-no-such-program not found: install qemu-utils (scripts/setup)");
    }
}

TEST(run_checked, exit_127_from_a_wrapper_reads_as_not_found) {
    EXPECT_EQ(kind_of([] {
                  run_checked({"sh", "-c", "qmpkit-no-such-program"});
              }),
              error_kind::program_not_found);
}

TEST(run_checked, a_failure_carries_command_line_exit_code_and_stderr) {
    try {
        run_checked({"sh", "-c", "echo partial; echo 'it broke' >&2; exit 4"});
        FAIL() << "no exception";
    } catch (const error& e) {
        EXPECT_EQ(e.kind(), error_kind::command_failed);
        EXPECT_THAT(e.what(), HasSubstr("sh -c 'echo partial; echo '\\''it broke'\\''"));
        EXPECT_THAT(e.what(), HasSubstr("exit code 4"));
        EXPECT_THAT(e.what(), HasSubstr(": it broke"));
    }
}

TEST(run_checked, a_signal_is_a_failure) {
    try {
        run_checked({"sh", "-c", "kill -KILL $$"});
        FAIL() << "no exception";
    } catch (const error& e) {
        EXPECT_EQ(e.kind(), error_kind::command_failed);
        EXPECT_THAT(e.what(), HasSubstr("signal 9"));
    }
}

TEST(run_checked, a_timeout_is_its_own_kind) {
    subprocess_options options;
    options.timeout = 100ms;
    try {
        run_checked({"sleep", "30"}, options);
        FAIL() << "no exception";
    } catch (const error& e) {
        EXPECT_EQ(e.kind(), error_kind::timed_out);
        EXPECT_THAT(e.what(), HasSubstr("sleep 30 timed out after 100 ms"));
    }
    expect_no_children();
}

TEST(describe, quotes_only_what_a_shell_would_misread) {
    EXPECT_EQ(describe({"qemu-img", "info", "--output=json", "/var/lib/vm/disk-1.qcow2"}),
              "qemu-img info --output=json /var/lib/vm/disk-1.qcow2");
    EXPECT_EQ(describe({"a b", "", "it's", "$HOME", "x;y", "*"}),
              "'a b' '' 'it'\\''s' '$HOME' 'x;y' '*'");
    EXPECT_EQ(describe({}), "");
}

// Processes come and go while /proc is scanned (the leftovers sweep, the running check): the
// command line of one that has gone is empty, never an exception.
TEST(process_command_line, is_the_argv_while_it_runs_and_empty_once_it_has_gone) {
    const pid_t child = ::fork();
    ASSERT_GE(child, 0);
    if (child == 0) {
        ::execlp("sleep", "sleep", "30", static_cast<char*>(nullptr));
        ::_exit(127);
    }
    std::string args;
    for (int i = 0; i < 200 && args.rfind("sleep", 0) != 0; ++i) {
        args = process_command_line(child);
        ::usleep(10000);
    }
    EXPECT_EQ(args, std::string("sleep\0"
                                "30\0",
                                9));
    ::kill(child, SIGKILL);
    ASSERT_EQ(::waitpid(child, nullptr, 0), child);
    EXPECT_EQ(process_command_line(child), "");
    EXPECT_EQ(process_command_line(0), "");
    EXPECT_EQ(process_command_line(-1), "");
    expect_no_children();
}

} // namespace
} // namespace qmpkit::launcher
