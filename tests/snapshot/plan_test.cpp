// The plans of snapshot create and revert, built from made-up facts: no qemu, no qemu-img, no
// file. What the executor does with each step is tested against a real qemu (tests/cli).

#include "plan/create_plan.hpp"
#include "plan/delete_plan.hpp"
#include "plan/point_plan.hpp"
#include "plan/reset_plan.hpp"
#include "plan/revert_plan.hpp"

#include <qmpkit/launcher/definition_loader.hpp>
#include <qmpkit/snapshot/error.hpp>

#include <boost/json.hpp>
#include <gtest/gtest.h>

#include <map>
#include <set>

namespace qmpkit::snapshot::detail {
namespace {

namespace fs = std::filesystem;
namespace json = boost::json;

launcher::vm_definition definition(std::string_view extra = {}) {
    std::string yaml = R"(name: vm
kernel: /boot/vmlinuz
memory: 256M
disks:
  - name: system
    file: /img/system.qcow2
  - name: data
    file: /img/data.qcow2
  - name: iso
    file: /img/tools.raw
    format: raw
    read_only: true
)";
    yaml += extra;
    return launcher::load_definition_from_string(yaml, "/state/vm/definition.yaml");
}

// Images as qemu-img would describe them, and the files that exist.
struct fake_host {
    std::map<fs::path, launcher::image_info> images;
    std::set<fs::path> files;
    int ids = 0;

    void snapshot(const fs::path& image, std::string name, std::string id) {
        launcher::image_snapshot s;
        s.id = std::move(id);
        s.name = std::move(name);
        images[image].snapshots.push_back(s);
    }

    plan_host host() {
        plan_host h;
        h.image_info = [this](const fs::path& p) {
            auto info = images[p];
            info.filename = p;
            info.format = "qcow2";
            return info;
        };
        h.exists = [this](const fs::path& p) { return files.contains(p); };
        h.new_id = [this] { return "id" + std::to_string(++ids); };
        h.job_id = [](const std::string& what) { return "qmpkit-" + what + "-1"; };
        return h;
    }
};

launcher::block_device live(std::string disk, std::string node, std::string file) {
    launcher::block_device d;
    d.disk = std::move(disk);
    d.node_name = std::move(node);
    d.file = std::move(file);
    d.format = "qcow2";
    return d;
}

create_facts running_vm(fake_host& host) {
    create_facts f;
    f.def = definition();
    f.qemu_runs = true;
    f.state = vm_state::running;
    f.run_state = "running";
    f.live = {{"system", live("system", "system", "/img/system.qcow2")},
              {"data", live("data", "data", "/img/data.qcow2")},
              {"iso", live("iso", "iso", "/img/tools.raw")}};
    f.now = 1700000000;
    f.pid = 42;
    f.metadata_digest = "absent";
    f.host = host.host();
    return f;
}

create_facts shut_off_vm(fake_host& host) {
    auto f = running_vm(host);
    f.qemu_runs = false;
    f.state = vm_state::shutoff;
    f.run_state.clear();
    f.live.clear();
    return f;
}

// The printed steps' keys, in order ("execute:NAME" for QMP commands).
std::vector<std::string> shape(const operation_plan& plan) {
    std::vector<std::string> out;
    for (const auto& step : describe(plan)) {
        if (const auto* e = step.if_contains("execute"))
            out.push_back("execute:" + std::string(e->as_string()));
        else if (const auto* w = step.if_contains("write"))
            out.push_back("write:" + std::string(w->as_string()));
        else
            out.push_back(std::string(step.begin()->key()));
    }
    return out;
}

template <class T>
const T* find_step(const operation_plan& plan) {
    for (const auto& s : plan)
        if (const auto* a = std::get_if<T>(&s.action))
            return a;
    return nullptr;
}

error_kind refusal(const std::function<void()>& f) {
    try {
        f();
    } catch (const error& e) {
        return e.kind();
    }
    ADD_FAILURE() << "not refused";
    return error_kind::other;
}

TEST(create_plan, internal_of_a_running_vm_is_one_save_job_over_the_writable_disks) {
    fake_host host;
    create_request r;
    r.name = "s1";
    auto plan = plan_create(running_vm(host), r);
    EXPECT_EQ(shape(plan.steps), (std::vector<std::string>{"write:journal", "execute:snapshot-save",
                                                           "write:metadata", "remove"}));
    const auto* job = find_step<qmp_job>(plan.steps);
    ASSERT_NE(job, nullptr);
    EXPECT_EQ(job->arguments.at("tag"), "s1");
    EXPECT_EQ(job->arguments.at("job-id"), "qmpkit-save-1");
    EXPECT_EQ(job->arguments.at("vmstate"), "system");
    EXPECT_EQ(job->arguments.at("devices"), (json::array{"system", "data"}))
        << "the read-only disk is left out";
    EXPECT_EQ(plan.record.name, "s1");
    EXPECT_TRUE(plan.record.memory);
    EXPECT_EQ(plan.record.location, snapshot_location::internal);
    EXPECT_EQ(plan.journal.operation, "create-internal");
    ASSERT_EQ(plan.journal.tags.size(), 2u);
    EXPECT_EQ(plan.journal.tags[1].image, "/img/data.qcow2");
    const auto* meta = find_step<metadata_write>(plan.steps);
    ASSERT_NE(meta, nullptr);
    EXPECT_EQ(meta->tree.current(), "s1");
}

TEST(create_plan, an_old_qemu_gets_savevm) {
    fake_host host;
    auto f = running_vm(host);
    f.snapshot_jobs = false;
    create_request r;
    r.name = "s1";
    auto plan = plan_create(f, r);
    const auto* hmp = find_step<hmp_command>(plan.steps);
    ASSERT_NE(hmp, nullptr);
    EXPECT_EQ(hmp->line, "savevm s1");
}

TEST(create_plan, a_shut_off_vm_gets_qemu_img_on_each_disk_all_or_none) {
    fake_host host;
    create_request r;
    r.name = "cold";
    auto plan = plan_create(shut_off_vm(host), r);
    EXPECT_EQ(shape(plan.steps), (std::vector<std::string>{"write:journal", "qemu-img", "qemu-img",
                                                           "write:metadata", "remove"}));
    EXPECT_FALSE(plan.record.memory);
    const auto described = describe(plan.steps);
    EXPECT_EQ(described[1].at("qemu-img"),
              (json::array{"snapshot", "-c", "cold", "/img/system.qcow2"}));
    // Each snapshot is taken back if a later disk fails; the last one settles it.
    EXPECT_TRUE(plan.steps[1].undo.has_value());
    EXPECT_FALSE(plan.steps[1].settles);
    EXPECT_TRUE(plan.steps[2].settles);
    const auto& undo = std::get<image_snapshot_change>(*plan.steps[1].undo);
    EXPECT_EQ(undo.what, image_snapshot_change::kind::remove);
}

TEST(create_plan, external_with_memory_saves_then_snapshots_the_disks_at_that_point) {
    fake_host host;
    create_request r;
    r.name = "ext";
    r.memory_file = "/mem/ext.state";
    auto plan = plan_create(running_vm(host), r);
    EXPECT_EQ(
        shape(plan.steps),
        (std::vector<std::string>{"write:journal", "save-memory", "execute:transaction",
                                  "execute:cont", "write:definition", "write:metadata", "remove"}));
    const auto* t = find_step<qmp_command>(plan.steps);
    ASSERT_NE(t, nullptr);
    ASSERT_EQ(t->name, "transaction");
    const auto& actions = t->arguments.at("actions").as_array();
    ASSERT_EQ(actions.size(), 2u);
    EXPECT_EQ(actions[0].at("data").at("snapshot-file"), "/img/vm-system.ext.qcow2");
    EXPECT_EQ(actions[1].at("data").at("node-name"), "data");
    const auto* def = find_step<definition_write>(plan.steps);
    ASSERT_NE(def, nullptr);
    EXPECT_EQ(def->definition.disks[0].file, "/img/vm-system.ext.qcow2")
        << "restarts use the overlays";
    EXPECT_EQ(def->definition.disks[2].file, "/img/tools.raw");
    EXPECT_EQ(plan.journal.creates, std::vector<fs::path>{"/mem/ext.state"});
    // The fault points sit where the tests kill qmpkit, and are not printed.
    std::vector<std::string> faults;
    for (const auto& s : plan.steps)
        if (const auto* p = std::get_if<fault_point_step>(&s.action))
            faults.push_back(p->name);
    EXPECT_EQ(faults, (std::vector<std::string>{"snapshot.memory.after-migration",
                                                "snapshot.external.before-transaction",
                                                "snapshot.external.after-transaction",
                                                "snapshot.external.before-metadata",
                                                "snapshot.external.after-metadata"}));
}

TEST(create_plan, quiesce_freezes_for_the_transaction_only) {
    fake_host host;
    create_request r;
    r.name = "q";
    r.disk_only = true;
    r.quiesce = true;
    auto plan = plan_create(running_vm(host), r);
    EXPECT_EQ(
        shape(plan.steps),
        (std::vector<std::string>{"write:journal", "guest-agent", "execute:transaction",
                                  "guest-agent", "write:definition", "write:metadata", "remove"}));
}

TEST(create_plan, an_encrypted_disk_gets_its_overlay_made_and_added_before_the_transaction) {
    fake_host host;
    auto f = running_vm(host);
    f.def.disks[1].encryption =
        launcher::disk_encryption{launcher::encryption_format::luks, "/keys/data.key"};
    create_request r;
    r.name = "enc";
    r.disk_only = true;
    auto plan = plan_create(f, r);
    EXPECT_EQ(shape(plan.steps),
              (std::vector<std::string>{"write:journal", "qemu-img", "execute:blockdev-add",
                                        "execute:blockdev-add", "execute:transaction",
                                        "write:definition", "write:metadata", "remove"}));
    // Until the transaction settles it, each is taken back: the file, then the nodes.
    EXPECT_TRUE(std::holds_alternative<remove_file>(*plan.steps[1].undo));
    EXPECT_EQ(std::get<qmp_command>(*plan.steps[2].undo).name, "blockdev-del");
    const auto* c = find_step<create_overlay>(plan.steps);
    ASSERT_NE(c, nullptr);
    ASSERT_TRUE(c->key.has_value()) << "an encrypted disk's overlay is encrypted with its key";
    const plan_step* transaction = nullptr;
    for (const auto& step : plan.steps)
        if (const auto* q = std::get_if<qmp_command>(&step.action); q && q->name == "transaction")
            transaction = &step;
    ASSERT_NE(transaction, nullptr);
    const auto& actions =
        std::get<qmp_command>(transaction->action).arguments.at("actions").as_array();
    EXPECT_EQ(actions[0].at("type"), "blockdev-snapshot-sync");
    EXPECT_EQ(actions[1].at("type"), "blockdev-snapshot") << "the encrypted one is added already";
    EXPECT_TRUE(transaction->settles);
}

TEST(create_plan, the_default_name_moves_aside_for_a_taken_one_and_an_image_id) {
    fake_host host;
    auto f = running_vm(host);
    host.snapshot("/img/data.qcow2", "other", "1700000000");
    auto plan = plan_create(f, {});
    EXPECT_EQ(plan.record.name, "snapshot-1700000000")
        << "the seconds are the id of a snapshot in an image";
}

TEST(create_plan, refuses_before_anything_changes) {
    fake_host host;
    create_request named;
    named.name = "s1";
    {
        auto f = running_vm(host);
        host.snapshot("/img/system.qcow2", "s1", "1");
        EXPECT_EQ(refusal([&] { plan_create(f, named); }), error_kind::name_taken);
        host.images.clear();
    }
    {
        auto f = running_vm(host);
        f.run_state = "restore-vm";
        EXPECT_EQ(refusal([&] { plan_create(f, named); }), error_kind::unsupported);
    }
    {
        create_request r = named;
        r.quiesce = true; // without --disk-only
        EXPECT_EQ(refusal([&] { plan_create(running_vm(host), r); }), error_kind::unsupported);
    }
    {
        create_request r = named;
        r.memory_file = "/mem/x";
        EXPECT_EQ(refusal([&] { plan_create(shut_off_vm(host), r); }), error_kind::not_running);
    }
    {
        create_request r = named;
        r.disk_only = true;
        host.files.insert("/img/vm-data.s1.qcow2");
        EXPECT_EQ(refusal([&] { plan_create(running_vm(host), r); }), error_kind::name_taken);
        host.files.clear();
    }
    {
        auto f = running_vm(host);
        f.def.disks[1].format = launcher::disk_format::raw;
        EXPECT_EQ(refusal([&] { plan_create(f, named); }), error_kind::unsupported);
    }
}

// --- revert ------------------------------------------------------------------------------------

snapshot_record internal_snapshot(const launcher::vm_definition& def, std::string name,
                                  bool memory) {
    snapshot_record r;
    r.name = std::move(name);
    r.created_at = 1;
    r.state = memory ? vm_state::running : vm_state::shutoff;
    r.memory = memory;
    r.definition = launcher::dump_definition(def);
    for (const auto& d : def.disks)
        r.disks.push_back(
            {d.name, d.read_only ? disk_snapshot::mode::excluded : disk_snapshot::mode::internal,
             d.file, "", d.name});
    return r;
}

revert_facts revert_on_running(fake_host& host, const snapshot_record& rec) {
    revert_facts f;
    f.def = definition();
    f.definition_file = "/state/vm/definition.yaml";
    f.tree.add(rec);
    f.qemu_runs = true;
    f.state = vm_state::running;
    for (const auto& d : f.def.disks) {
        f.active_files[d.name] = d.file;
        f.live[d.name] = live(d.name, d.name, d.file.string());
        f.node_snapshots[d.name] = {rec.name};
    }
    f.overlays_dir = "/state/vm/overlays";
    f.now = 1700000000;
    f.pid = 42;
    f.host = host.host();
    return f;
}

TEST(revert_plan, into_the_running_qemu_is_one_load_job) {
    fake_host host;
    const auto rec = internal_snapshot(definition(), "s1", true);
    auto plan = plan_revert(revert_on_running(host, rec), "s1", {});
    EXPECT_EQ(shape(plan.steps),
              (std::vector<std::string>{"write:journal", "execute:snapshot-load", "run-state",
                                        "write:metadata", "remove"}));
    const auto* job = find_step<qmp_job>(plan.steps);
    EXPECT_EQ(job->arguments.at("devices"), (json::array{"system", "data"}));
}

TEST(revert_plan, paused_stops_the_guest_before_the_load) {
    fake_host host;
    revert_request paused;
    paused.paused = true;
    const auto rec = internal_snapshot(definition(), "s1", true);
    auto plan = plan_revert(revert_on_running(host, rec), "s1", paused);
    ASSERT_GE(plan.steps.size(), 3u);
    EXPECT_EQ(std::get<set_run_state>(plan.steps[1].action).wanted, vm_state::paused)
        << "the load job would resume a running guest past the snapshot";
    EXPECT_TRUE(std::holds_alternative<qmp_job>(plan.steps[2].action));
}

TEST(revert_plan, a_snapshot_qemu_does_not_see_is_refused) {
    fake_host host;
    const auto rec = internal_snapshot(definition(), "s1", true);
    auto f = revert_on_running(host, rec);
    f.node_snapshots["data"].clear();
    EXPECT_EQ(refusal([&] { plan_revert(f, "s1", {}); }), error_kind::drift);
}

TEST(revert_plan, under_an_overlay_qemu_restarts_on_the_image_unless_something_froze_it) {
    fake_host host;
    const auto rec = internal_snapshot(definition(), "s1", true);
    auto f = revert_on_running(host, rec);
    // A reset left the system disk on an overlay of qmpkit's.
    f.active_files["system"] = "/state/vm/overlays/system.r1.qcow2";
    f.live["system"].file = "/state/vm/overlays/system.r1.qcow2";
    f.def.disks[0].file = "/state/vm/overlays/system.r1.qcow2";
    auto plan = plan_revert(f, "s1", {});
    EXPECT_EQ(shape(plan.steps),
              (std::vector<std::string>{"write:journal", "qemu", "qemu", "run-state",
                                        "write:metadata", "remove", "remove"}));
    const auto* start = find_step<start_qemu>(plan.steps);
    ASSERT_NE(start, nullptr);
    EXPECT_EQ(start->extra_args, (std::vector<std::string>{"-loadvm", "s1"}));
    EXPECT_EQ(start->definition.disks[0].file, "/img/system.qcow2");
    EXPECT_EQ(describe(plan.steps).back().at("remove"), "/state/vm/overlays/system.r1.qcow2")
        << "the overlay nothing names any more is removed";

    // A reset point froze the image: refused, nothing planned.
    reset_point p;
    p.name = "rp1";
    p.disks.push_back({});
    p.disks.back().base = "/img/system.qcow2";
    f.points.push_back(p);
    try {
        plan_revert(f, "s1", {});
        FAIL() << "not refused";
    } catch (const error& e) {
        EXPECT_EQ(e.kind(), error_kind::unsupported);
        EXPECT_NE(std::string(e.what()).find("reset point 'rp1'"), std::string::npos) << e.what();
    }
}

TEST(revert_plan, a_shut_off_vm_is_started_on_the_snapshot_without_a_quit) {
    fake_host host;
    const auto rec = internal_snapshot(definition(), "s1", true);
    auto f = revert_on_running(host, rec);
    f.qemu_runs = false;
    f.state = vm_state::shutoff;
    f.live.clear();
    auto plan = plan_revert(f, "s1", {});
    EXPECT_EQ(shape(plan.steps), (std::vector<std::string>{"write:journal", "qemu", "run-state",
                                                           "write:metadata", "remove"}));
    EXPECT_EQ(describe(plan.steps)[1].at("qemu"), "start");
}

TEST(revert_plan, a_disk_only_internal_snapshot_is_applied_with_qemu_img) {
    fake_host host;
    const auto rec = internal_snapshot(definition(), "cold", false);
    auto f = revert_on_running(host, rec);
    auto plan = plan_revert(f, "cold", {});
    EXPECT_EQ(shape(plan.steps),
              (std::vector<std::string>{"write:journal", "qemu", "qemu-img", "qemu-img",
                                        "write:definition", "write:metadata", "remove"}))
        << "taken shut off, left shut off";
    EXPECT_EQ(describe(plan.steps)[2].at("qemu-img"),
              (json::array{"snapshot", "-a", "cold", "/img/system.qcow2"}));
    revert_request running;
    running.running = true;
    EXPECT_EQ(shape(plan_revert(f, "cold", running).steps),
              (std::vector<std::string>{"write:journal", "qemu", "qemu-img", "qemu-img", "qemu",
                                        "write:metadata", "remove"}));
}

TEST(revert_plan, a_changed_configuration_needs_force_and_restarts_qemu) {
    fake_host host;
    auto then = definition();
    then.memory = 512ull << 20;
    const auto rec = internal_snapshot(then, "s1", true);
    auto f = revert_on_running(host, rec);
    EXPECT_EQ(refusal([&] { plan_revert(f, "s1", {}); }), error_kind::config_mismatch);
    revert_request force;
    force.force = true;
    auto plan = plan_revert(f, "s1", force);
    const auto* start = find_step<start_qemu>(plan.steps);
    ASSERT_NE(start, nullptr);
    EXPECT_EQ(start->definition.memory, 512ull << 20);
}

TEST(revert_plan, external_gets_fresh_overlays_over_the_frozen_images) {
    fake_host host;
    auto def = definition();
    snapshot_record rec;
    rec.name = "ext";
    rec.location = snapshot_location::external;
    rec.state = vm_state::shutoff;
    rec.definition = launcher::dump_definition(def);
    rec.disks.push_back({"system", disk_snapshot::mode::external, "/img/system.qcow2",
                         "/img/vm-system.ext.qcow2", "ov1"});
    rec.disks.push_back({"data", disk_snapshot::mode::external, "/img/data.qcow2",
                         "/img/vm-data.ext.qcow2", "ov2"});
    auto f = revert_on_running(host, rec);
    // A later external snapshot froze the system overlay: a new one goes to overlays/.
    snapshot_record later = rec;
    later.name = "later";
    later.parent = "ext";
    later.disks = {{"system", disk_snapshot::mode::external, "/img/vm-system.ext.qcow2",
                    "/img/vm-system.later.qcow2", "ov3"}};
    f.tree.add(later);
    revert_request running;
    running.running = true;
    auto plan = plan_revert(f, "ext", running);
    EXPECT_EQ(shape(plan.steps),
              (std::vector<std::string>{"write:journal", "qemu", "qemu-img", "remove", "qemu-img",
                                        "qemu", "write:metadata", "remove"}));
    const auto* start = find_step<start_qemu>(plan.steps);
    ASSERT_NE(start, nullptr);
    EXPECT_EQ(start->definition.disks[0].file, "/state/vm/overlays/system.rid1.qcow2");
    EXPECT_EQ(start->definition.disks[1].file, "/img/vm-data.ext.qcow2");
    EXPECT_FALSE(start->paused);
}

// --- delete ------------------------------------------------------------------------------------

launcher::block_node node(std::string name, std::string file) {
    launcher::block_node n;
    n.node_name = std::move(name);
    n.driver = "qcow2";
    n.file = std::move(file);
    return n;
}

snapshot_record external_snapshot(std::string name, const std::string& disk, fs::path image,
                                  fs::path overlay) {
    snapshot_record r;
    r.name = std::move(name);
    r.location = snapshot_location::external;
    r.state = vm_state::running;
    r.definition = launcher::dump_definition(definition());
    r.disks.push_back(
        {disk, disk_snapshot::mode::external, std::move(image), std::move(overlay), "ov1"});
    return r;
}

TEST(delete_plan, internal_images_qemu_has_not_open_go_first_with_qemu_img) {
    fake_host host;
    delete_facts f;
    f.def = definition();
    f.tree.add(internal_snapshot(f.def, "s1", true));
    f.qemu_runs = true;
    f.state = vm_state::running;
    // A reset moved the system disk to an overlay: its old image is no longer in the graph.
    f.nodes = {node("data", "/img/data.qcow2"), node("ov9", "/state/vm/overlays/system.r1.qcow2")};
    f.host = host.host();
    auto plan = plan_delete(f, "s1", false);
    EXPECT_EQ(shape(plan.steps),
              (std::vector<std::string>{"qemu-img", "execute:snapshot-delete", "write:metadata"}));
    EXPECT_EQ(describe(plan.steps)[0].at("qemu-img"),
              (json::array{"snapshot", "-d", "s1", "/img/system.qcow2"}));
    EXPECT_EQ(std::get<qmp_job>(plan.steps[1].action).arguments.at("devices"),
              (json::array{"data"}));
    EXPECT_FALSE(plan.tree_after.contains("s1"));
    EXPECT_FALSE(plan.merges);

    auto forget = plan_delete(f, "s1", true);
    EXPECT_EQ(shape(forget.steps), (std::vector<std::string>{"write:metadata"}));
}

TEST(delete_plan, an_active_overlay_is_committed_into_its_image_under_a_journal) {
    fake_host host;
    delete_facts f;
    f.def = definition();
    f.def.disks[1].file = "/img/vm-data.e1.qcow2";
    f.tree.add(external_snapshot("e1", "data", "/img/data.qcow2", "/img/vm-data.e1.qcow2"));
    // A child internal snapshot lives in the overlay: after the merge it lives in the image.
    auto child = internal_snapshot(f.def, "s2", true);
    child.parent = "e1";
    f.tree.add(child);
    f.qemu_runs = true;
    f.state = vm_state::running;
    f.live = {{"data", live("data", "ov1", "/img/vm-data.e1.qcow2")}};
    f.nodes = {node("data", "/img/data.qcow2"), node("ov1", "/img/vm-data.e1.qcow2")};
    f.host = host.host();
    auto plan = plan_delete(f, "e1", false);
    EXPECT_EQ(shape(plan.steps),
              (std::vector<std::string>{"write:journal", "execute:block-commit",
                                        "execute:blockdev-del", "execute:blockdev-del",
                                        "write:definition", "remove", "write:metadata", "remove"}));
    const auto& commit = std::get<qmp_job>(plan.steps[1].action);
    EXPECT_TRUE(commit.complete_when_ready);
    EXPECT_EQ(commit.arguments.at("device"), "ov1");
    EXPECT_EQ(commit.arguments.at("base-node"), "data");
    EXPECT_FALSE(commit.arguments.contains("top-node")) << "an active commit";
    EXPECT_TRUE(std::get<qmp_command>(plan.steps[2].action).ignore_failure);
    EXPECT_EQ(plan.definition_after.disks[1].file, "/img/data.qcow2");
    EXPECT_EQ(plan.tree_after.at("s2").disks[1].image, "/img/data.qcow2");
    EXPECT_TRUE(plan.merges);
    const auto& journal = std::get<journal_write>(plan.steps[0].action).journal;
    EXPECT_EQ(journal.operation, "delete-external");
    ASSERT_TRUE(journal.after_definition.has_value());
}

TEST(delete_plan, an_overlay_below_the_top_is_committed_by_node) {
    fake_host host;
    delete_facts f;
    f.def = definition();
    f.tree.add(external_snapshot("e1", "data", "/img/data.qcow2", "/img/vm-data.e1.qcow2"));
    f.qemu_runs = true;
    f.state = vm_state::running;
    // A later overlay sits on e1's: the VM writes to it.
    f.live = {{"data", live("data", "ov2", "/img/vm-data.e2.qcow2")}};
    f.nodes = {node("data", "/img/data.qcow2"), node("ov1", "/img/vm-data.e1.qcow2"),
               node("ov2", "/img/vm-data.e2.qcow2")};
    f.host = host.host();
    auto plan = plan_delete(f, "e1", false);
    const auto& commit = std::get<qmp_job>(plan.steps[1].action);
    EXPECT_EQ(commit.arguments.at("top-node"), "ov1");
    EXPECT_EQ(commit.arguments.at("device"), "ov2");
    EXPECT_FALSE(commit.complete_when_ready);
    EXPECT_EQ(std::get<qmp_command>(plan.steps[2].action).arguments.at("node-name"), "ov1");
    EXPECT_EQ(
        shape(plan.steps),
        (std::vector<std::string>{"write:journal", "execute:block-commit", "execute:blockdev-del",
                                  "execute:blockdev-del", "remove", "write:metadata", "remove"}))
        << "the definition still names the top: not rewritten";
}

TEST(delete_plan, offline_the_layer_above_is_rebased_onto_the_image_unsafely) {
    fake_host host;
    host.images["/img/vm-data.e1.qcow2"].full_backing_file = "/img/data.qcow2";
    launcher::image_info top;
    top.filename = "/img/vm-data.e2.qcow2";
    top.full_backing_file = "/img/vm-data.e1.qcow2";
    launcher::image_info mid;
    mid.filename = "/img/vm-data.e1.qcow2";
    mid.full_backing_file = "/img/data.qcow2";
    delete_facts f;
    f.def = definition();
    f.def.disks[1].file = "/img/vm-data.e2.qcow2";
    f.tree.add(external_snapshot("e1", "data", "/img/data.qcow2", "/img/vm-data.e1.qcow2"));
    f.host = host.host();
    f.host.image_chain = [&](const fs::path&) {
        return std::vector<launcher::image_info>{top, mid};
    };
    auto plan = plan_delete(f, "e1", false);
    EXPECT_EQ(shape(plan.steps), (std::vector<std::string>{"qemu-img", "qemu-img", "write:metadata",
                                                           "write:definition", "remove"}));
    EXPECT_EQ(describe(plan.steps)[1].at("qemu-img"),
              (json::array{"rebase", "-u", "-b", "/img/data.qcow2", "-F", "qcow2",
                           "/img/vm-data.e2.qcow2"}));
    EXPECT_EQ(plan.definition_after.disks[1].file, "/img/vm-data.e2.qcow2");
}

TEST(delete_plan, an_image_another_snapshot_needs_is_streamed_or_refused) {
    fake_host host;
    delete_facts f;
    f.def = definition();
    f.tree.add(external_snapshot("e1", "data", "/img/data.qcow2", "/img/vm-data.e1.qcow2"));
    auto sibling = external_snapshot("e2", "data", "/img/data.qcow2", "/img/vm-data.e2.qcow2");
    f.tree.add(sibling);
    f.qemu_runs = true;
    f.state = vm_state::running;
    f.live = {{"data", live("data", "ov1", "/img/vm-data.e1.qcow2")}};
    f.nodes = {node("data", "/img/data.qcow2"), node("ov1", "/img/vm-data.e1.qcow2"),
               node("ov2", "/img/vm-data.e2.qcow2")};
    f.host = host.host();
    auto plan = plan_delete(f, "e1", false);
    EXPECT_EQ(shape(plan.steps), (std::vector<std::string>{"write:journal", "execute:block-stream",
                                                           "write:metadata", "remove"}));
    // Not the overlay the VM runs on: nothing can take the image's data in.
    EXPECT_EQ(refusal([&] { plan_delete(f, "e2", false); }), error_kind::unsupported);
}

TEST(delete_plan, a_shut_off_vm_commits_with_qemu_img_and_removes_the_overlay_last) {
    fake_host host;
    host.images["/img/vm-data.e1.qcow2"].full_backing_file = "/img/data.qcow2";
    delete_facts f;
    f.def = definition();
    f.def.disks[1].file = "/img/vm-data.e1.qcow2";
    f.tree.add(external_snapshot("e1", "data", "/img/data.qcow2", "/img/vm-data.e1.qcow2"));
    f.host = host.host();
    auto plan = plan_delete(f, "e1", false);
    EXPECT_EQ(shape(plan.steps), (std::vector<std::string>{"qemu-img", "write:metadata",
                                                           "write:definition", "remove"}));
    EXPECT_EQ(describe(plan.steps)[0].at("qemu-img"),
              (json::array{"commit", "-d", "/img/vm-data.e1.qcow2"}));
    EXPECT_EQ(plan.definition_after.disks[1].file, "/img/data.qcow2");

    // An overlay not built on the recorded image is drift: refused.
    host.images["/img/vm-data.e1.qcow2"].full_backing_file = "/elsewhere.qcow2";
    f.host = host.host();
    EXPECT_EQ(refusal([&] { plan_delete(f, "e1", false); }), error_kind::drift);
}

// --- reset -------------------------------------------------------------------------------------

reset_facts reset_of(fake_host& host, bool guest_agent) {
    reset_facts f;
    f.def = definition(guest_agent ? "guest_agent: true\n" : "");
    f.definition_file = "/state/vm/definition.yaml";
    f.overlays_dir = "/state/vm/overlays";
    reset_point p;
    p.name = "rp1";
    p.created_at = 5;
    p.ram = "/state/vm/reset-points/rp1/ram";
    p.device_state = "/state/vm/reset-points/rp1/device-state";
    p.disks = {{"system", "/state/vm/reset-points/rp1/system.qcow2"},
               {"data", "/state/vm/reset-points/rp1/data.qcow2"}};
    p.definition = launcher::dump_definition(f.def);
    f.points.push_back(p);
    for (const auto& file : {p.ram, p.device_state, p.disks[0].base, p.disks[1].base})
        host.files.insert(file);
    f.host = host.host();
    return f;
}

TEST(reset_plan, template_starts_a_qemu_on_fresh_overlays_and_the_points_ram) {
    fake_host host;
    auto plan = plan_reset(reset_of(host, true), false);
    EXPECT_EQ(shape(plan.steps),
              (std::vector<std::string>{"new-overlays", "qemu", "qemu", "load-device-state",
                                        "execute:cont", "remove", "guest-agent"}));
    EXPECT_TRUE(plan.steps[0].overlaps_next) << "the overlays are made while the old qemu quits";
    EXPECT_FALSE(plan.steps[0].undo) << "the recorded definition names them once qemu starts";
    const auto* start = find_step<start_qemu>(plan.steps);
    ASSERT_NE(start, nullptr);
    EXPECT_EQ(start->memory_template, "/state/vm/reset-points/rp1/ram");
    EXPECT_EQ(start->extra_args, (std::vector<std::string>{"-incoming", "defer"}));
    EXPECT_EQ(start->definition.disks[0].file, "/state/vm/overlays/system.id1.qcow2");
    EXPECT_EQ(start->definition.disks[2].file, "/img/tools.raw") << "not in the point";
    // A qemu that did not take the state is stopped; once the guest runs, nothing is undone.
    for (const auto& step : plan.steps) {
        if (std::holds_alternative<start_qemu>(step.action)) {
            EXPECT_TRUE(step.undo && std::holds_alternative<stop_qemu>(*step.undo));
        }
        if (const auto* c = std::get_if<qmp_command>(&step.action); c && c->name == "cont") {
            EXPECT_TRUE(step.settles);
        }
    }
    EXPECT_FALSE(plan.afterwards.prepare_standbys);

    auto paused = reset_of(host, true);
    paused.paused = true;
    const auto paused_plan = plan_reset(paused, false);
    EXPECT_EQ(shape(paused_plan.steps), (std::vector<std::string>{"new-overlays", "qemu", "qemu",
                                                                  "load-device-state", "remove"}))
        << "no cont, no clock for a paused guest";
    for (const auto& step : paused_plan.steps)
        if (std::holds_alternative<device_state_load>(step.action)) {
            EXPECT_TRUE(step.settles) << "a paused reset is done once the state is in";
        }
}

TEST(reset_plan, standby_falls_back_to_the_template_steps_and_leaves_the_rest_to_the_background) {
    fake_host host;
    auto plan = plan_reset(reset_of(host, true), true);
    EXPECT_TRUE(plan.afterwards.prepare_standbys);
    EXPECT_TRUE(plan.afterwards.set_clock_in_background);
    EXPECT_EQ(shape(plan.steps), (std::vector<std::string>{"new-overlays", "qemu", "qemu",
                                                           "load-device-state", "execute:cont"}));
    const auto printed = describe(plan);
    ASSERT_EQ(printed.size(), 3u);
    EXPECT_TRUE(printed[0].contains("standby"));
    EXPECT_EQ(printed[1].at("if no standby is ready").as_array().size(), 5u);
    EXPECT_EQ(printed[2].at("afterwards, in the background").as_array().size(), 2u);
}

TEST(reset_plan, a_missing_or_damaged_point_is_refused) {
    fake_host host;
    auto f = reset_of(host, false);
    f.target = "nosuch";
    EXPECT_EQ(refusal([&] { plan_reset(f, true); }), error_kind::not_found);
    f.target.reset();
    host.files.erase("/state/vm/reset-points/rp1/ram");
    EXPECT_EQ(refusal([&] { plan_reset(f, true); }), error_kind::drift);
    f.points.clear();
    EXPECT_EQ(refusal([&] { plan_reset(f, true); }), error_kind::not_found);
}

// --- reset point ---------------------------------------------------------------------------------

point_facts point_of(fake_host& host) {
    point_facts f;
    f.vm = "vm";
    f.name = "rp1";
    f.def = definition("reset: {strategy: template}\n");
    f.qemu_runs = true;
    f.state = vm_state::running;
    f.now = 1700000000;
    f.pid = 42;
    f.ram_file = "/dev/shm/qmpkit-vm.ram";
    f.points_dir = "/state/vm/reset-points";
    f.overlays_dir = "/state/vm/overlays";
    f.live = {{"system", live("system", "system", "/img/system.qcow2")},
              {"data", live("data", "data", "/img/data.qcow2")},
              {"iso", live("iso", "iso", "/img/tools.raw")}};
    f.host = host.host();
    return f;
}

TEST(point_plan, saves_the_device_state_copies_the_ram_and_moves_the_writable_disks_to_overlays) {
    fake_host host;
    auto plan = plan_point_create(point_of(host));
    EXPECT_EQ(
        shape(plan.steps),
        (std::vector<std::string>{
            "make-directories", "guest-agent", "write:journal", "execute:migrate-set-capabilities",
            "save-memory", "execute:migrate-set-capabilities", "copy", "execute:transaction",
            "write:definition", "write:reset point", "run-state", "remove", "guest-agent"}));
    EXPECT_EQ(plan.dir, "/state/vm/reset-points/rp1");
    EXPECT_EQ(plan.point.device_state, plan.dir / "device.state");
    EXPECT_EQ(plan.point.ram, plan.dir / "ram");
    // The frozen images are what qemu ran on; the read-only disk is not the point's.
    ASSERT_EQ(plan.point.disks.size(), 2u);
    EXPECT_EQ(plan.point.disks[0].base, "/img/system.qcow2");
    EXPECT_EQ(plan.point.disks[1].base, "/img/data.qcow2");
    const auto* transaction = std::get_if<qmp_command>(&plan.steps[8].action);
    ASSERT_TRUE(transaction);
    EXPECT_EQ(transaction->name, "transaction");
    EXPECT_EQ(transaction->arguments.at("actions").as_array().size(), 2u);
    const auto* journal = find_step<journal_write>(plan.steps);
    ASSERT_TRUE(journal);
    EXPECT_EQ(journal->journal.operation, "create-reset-point");
    EXPECT_EQ(journal->journal.creates, std::vector<fs::path>{plan.dir});
    EXPECT_EQ(journal->journal.overlays.size(), 2u);
    const auto* written = find_step<definition_write>(plan.steps);
    ASSERT_TRUE(written);
    EXPECT_EQ(written->definition.disks[0].file, journal->journal.overlays[0].overlay);
    EXPECT_EQ(written->definition.disks[2].file, "/img/tools.raw");
    // A failure before the journal takes the point's directory back.
    ASSERT_TRUE(plan.steps[0].undo);
    EXPECT_EQ(std::get<remove_file>(*plan.steps[0].undo).file, plan.dir);

    // A paused guest stays paused.
    auto paused = point_of(host);
    paused.state = vm_state::paused;
    EXPECT_FALSE(find_step<set_run_state>(plan_point_create(paused).steps));
}

TEST(point_plan, refuses_before_anything_changes) {
    fake_host host;
    auto f = point_of(host);
    f.qemu_runs = false;
    EXPECT_EQ(refusal([&] { plan_point_create(f); }), error_kind::not_running);
    f = point_of(host);
    f.def = definition("reset: {strategy: loadvm}\n");
    EXPECT_EQ(refusal([&] { plan_point_create(f); }), error_kind::unsupported);
    f = point_of(host);
    f.runs_on_own_ram = false;
    EXPECT_EQ(refusal([&] { plan_point_create(f); }), error_kind::unsupported);
    f = point_of(host);
    f.def.disks[1].encryption = launcher::disk_encryption{{}, "/keys/data.key"};
    EXPECT_EQ(refusal([&] { plan_point_create(f); }), error_kind::unsupported);
    host.files.insert("/state/vm/reset-points/rp1");
    f = point_of(host);
    EXPECT_EQ(refusal([&] { plan_point_create(f); }), error_kind::name_taken);
}

} // namespace
} // namespace qmpkit::snapshot::detail
