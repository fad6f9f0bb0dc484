#pragma once

// Private: `qmpkit reset-point create` as a plan (plan_step.hpp). The VM is paused at one
// moment: its device state is saved (the RAM, which lives in a shared file, is skipped by the
// migration: x-ignore-shared), the RAM file is copied beside it, and every writable disk moves to
// a new overlay in one transaction, so the images below freeze as the point's disks. Then the
// guest runs on. A killed qmpkit leaves the journal, which the next operation resolves.

#include "operation_facts.hpp"
#include "plan_step.hpp"

#include <qmpkit/launcher/vm_control.hpp>
#include <qmpkit/snapshot/vm_reset.hpp>

#include <filesystem>
#include <map>
#include <string>

namespace qmpkit::snapshot::detail {

struct point_facts : operation_facts {
    std::string vm;
    std::string name; // the new point's
    // The VM's RAM file, and whether its qemu maps it (not a reset point's RAM, after a template
    // or standby reset).
    std::filesystem::path ram_file;
    bool runs_on_own_ram = true;
    std::filesystem::path points_dir;                   // the state directory's reset-points/
    std::filesystem::path overlays_dir;                 // ... and overlays/
    std::map<std::string, launcher::block_device> live; // qemu's disks, by disk name
};

struct point_plan {
    reset_point point;
    std::filesystem::path dir; // the point's directory
    operation_plan steps;
};

// Throws snapshot::error: not_running (no qemu), invalid_state (a guest not whole: paused on an
// error, a load half done), unsupported (RAM not in a file, an encrypted disk, RAM that is a
// point's), name_taken.
point_plan plan_point_create(const point_facts& facts);

} // namespace qmpkit::snapshot::detail
