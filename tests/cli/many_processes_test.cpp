// Many qmpkit processes at once, as parallel test workers drive it: 8 workers issue 50 mixed
// commands each (snapshot create, delete, revert and list, reset, status, qmp) against 2 VMs.
// Nothing deadlocks, every command succeeds or fails cleanly as busy, and the metadata ends up
// holding exactly the snapshots that were created and not deleted — none lost, none twice — and
// agrees with the images.

#include "bare_qemu.hpp"
#include "cli_runner.hpp"
#include "tiny_guest.hpp"

#include <boost/json.hpp>
#include <gtest/gtest.h>

#include <iostream>
#include <map>
#include <mutex>
#include <random>
#include <set>
#include <thread>

namespace {

using namespace qmpkit;
using namespace std::chrono_literals;
namespace json = boost::json;

const std::vector<std::string> vms{"mp1", "mp2"};

TEST(many_processes, eight_workers_fifty_commands_each_on_two_vms) {
    if (!test::qemu_available())
        GTEST_SKIP() << "qemu-system-x86_64 is not installed (scripts/setup installs it)";
    test::scratch_dir scratch;
    test::cli_runner run(scratch.path() / "state");
    for (const auto& vm : vms) {
        auto def = test::write_tiny_guest(vm, scratch.path(), {{"system"}},
                                          "reset: {strategy: template}\n");
        auto r = run({"start", def.string(), "--wait-ready"});
        ASSERT_EQ(r.code, 0) << r.out << r.err;
        r = run({"reset-point", "create", vm, "clean"});
        ASSERT_EQ(r.code, 0) << r.err;
    }
    struct cleanup {
        test::cli_runner& run;
        ~cleanup() {
            for (const auto& vm : vms)
                run({"destroy", vm});
        }
    } destroy_at_end{run};

    std::mutex m;
    std::map<std::string, std::set<std::string>> alive; // by VM: snapshots created, not deleted
    std::map<std::string, int> outcomes;                // "<command> ok" / "<command> busy"
    std::vector<std::string> failures;
    const auto started = std::chrono::steady_clock::now();

    auto worker = [&](int id) {
        std::mt19937 random(static_cast<unsigned>(id) * 7919u + 1);
        std::map<std::string, std::vector<std::string>> mine; // my live snapshots, by VM
        for (int i = 0; i < 50; ++i) {
            const auto& vm = vms[random() % vms.size()];
            const int pick = static_cast<int>(random() % 20);
            std::vector<std::string> args{"--lock-timeout", "120"};
            std::string kind, name;
            if (pick < 5) {
                kind = "create";
                name = "w" + std::to_string(id) + "-" + std::to_string(i);
                args.insert(args.end(), {"snapshot", "create", vm, name});
            } else if (pick < 8 && !mine[vm].empty()) {
                kind = "delete";
                name = mine[vm][random() % mine[vm].size()];
                args.insert(args.end(), {"snapshot", "delete", vm, name});
            } else if (pick < 9 && !mine[vm].empty()) {
                kind = "revert";
                args.insert(args.end(), {"snapshot", "revert", vm,
                                         mine[vm][random() % mine[vm].size()], "--running"});
            } else if (pick < 11) {
                kind = "reset";
                args.insert(args.end(), {"reset", vm, "clean"});
            } else if (pick < 14) {
                kind = "list";
                args.insert(args.end(), {"snapshot", "list", vm});
            } else if (pick < 17) {
                kind = "status";
                args.insert(args.end(), {"status", vm});
            } else {
                kind = "qmp";
                args.insert(args.end(), {"qmp", vm, "query-status"});
            }
            const auto r = run(args, std::chrono::minutes(4));
            const bool busy = r.code == 1 && r.err.find("busy") != std::string::npos;
            std::lock_guard lock(m);
            ++outcomes[kind + (r.code == 0 ? " ok" : busy ? " busy" : " failed")];
            if (r.code != 0 && !busy) {
                std::string line;
                for (const auto& a : args)
                    line += a + " ";
                failures.push_back(line + "-> exit " + std::to_string(r.code) + ": " + r.err);
                continue;
            }
            if (r.code != 0)
                continue;
            if (kind == "create") {
                mine[vm].push_back(name);
                EXPECT_TRUE(alive[vm].insert(name).second) << name << " created twice";
            } else if (kind == "delete") {
                std::erase(mine[vm], name);
                EXPECT_EQ(alive[vm].erase(name), 1u) << name << " deleted but never created";
            }
        }
    };
    std::vector<std::thread> workers;
    for (int id = 0; id < 8; ++id)
        workers.emplace_back(worker, id);
    for (auto& t : workers)
        t.join();
    const auto took = std::chrono::duration_cast<std::chrono::seconds>(
        std::chrono::steady_clock::now() - started);

    std::cerr << "  400 commands by 8 workers in " << took.count() << " s:";
    for (const auto& [what, n] : outcomes)
        std::cerr << " " << what << " " << n << ";";
    std::cerr << "\n";
    EXPECT_TRUE(failures.empty()) << failures.size()
                                  << " commands failed, the first: " << failures.front();

    for (const auto& vm : vms) {
        auto r = run({"--json", "snapshot", "list", vm});
        ASSERT_EQ(r.code, 0) << r.err;
        std::multiset<std::string> listed;
        const auto doc = json::parse(r.out);
        for (const auto& s : doc.as_array())
            listed.insert(std::string(s.at("name").as_string()));
        EXPECT_EQ(listed, std::multiset<std::string>(alive[vm].begin(), alive[vm].end()))
            << "the metadata of " << vm << " lost or duplicated a snapshot";
        auto check = run({"snapshot", "check", vm});
        EXPECT_EQ(check.code, 0) << check.out << check.err;
        auto status = run({"--json", "status", vm});
        ASSERT_EQ(status.code, 0) << status.err;
        EXPECT_EQ(json::parse(status.out).at("state").as_string(), "running");
        EXPECT_EQ(run.guest(vm, "echo alive"), "alive\n");
    }
}

} // namespace
