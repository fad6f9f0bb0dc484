#pragma once

// Private: the files of reset points and of the instances started from them — a point's
// record (point.json), the overlay each instance gets over a point's frozen disks, and the
// tidying up of overlays nothing uses any more.

#include <qmpkit/launcher/state_directory.hpp>
#include <qmpkit/launcher/vm_definition.hpp>
#include <qmpkit/snapshot/vm_reset.hpp>

#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace qmpkit::snapshot::detail {

// Copies `from` to a new file `to` (refusing an existing one), keeping its holes, and syncs it;
// a failed copy leaves no `to`. Throws snapshot::error.
void copy_sparse(const std::filesystem::path& from, const std::filesystem::path& to);

std::filesystem::path point_file(const std::filesystem::path& point_dir);
void write_point(const std::filesystem::path& dir, const reset_point& p);
reset_point read_point(const std::filesystem::path& dir);
// The VM's reset points, oldest first.
std::vector<reset_point> read_points(const launcher::state_directory& dir);

// An empty overlay over a point's frozen disk, made once per point and disk by qemu-img and
// copied for every fresh instance after that: a copy is a few hundred KB of unchanged bytes
// (the header names the frozen image by its absolute path), where qemu-img is a process start
// on the reset's or the standby's path.
std::filesystem::path overlay_template(const reset_point& point, const reset_point::disk& d);

// The point's definition, named `name`, with a new overlay over each frozen disk, in
// `overlay_dir`, named with `new_id` (nothing is made yet: see make_instance_overlays). Returns
// it and the overlays, in the order of point.disks.
std::pair<launcher::vm_definition, std::vector<std::filesystem::path>>
instance_definition(const reset_point& point, const std::string& name,
                    const std::filesystem::path& overlay_dir, const std::filesystem::path& origin,
                    const std::function<std::string()>& new_id);
// Copies the point's overlay templates to `overlays` (as instance_definition named them); all or
// none.
void make_instance_overlays(const reset_point& point,
                            const std::vector<std::filesystem::path>& overlays);
// Both at once, with random names.
std::pair<launcher::vm_definition, std::vector<std::filesystem::path>>
fresh_instance(const reset_point& point, const std::string& name,
               const std::filesystem::path& overlay_dir, const std::filesystem::path& origin);

// Every file the VM's snapshots live in or are built on.
std::vector<std::filesystem::path> snapshot_files(const launcher::state_directory& dir);

// Overlays the VM ran on before a reset and no longer uses: the ones resets and reset points
// made, never an image a user named, one a reset point is frozen on, or one a snapshot needs.
std::vector<std::filesystem::path> superseded_overlays(const launcher::state_directory& dir,
                                                       const launcher::vm_definition& before,
                                                       const launcher::vm_definition& after);

// The backing file a qcow2 image names in its header, resolved against the image's directory as
// qemu does; nullopt for an image without one, or one that is not qcow2.
std::optional<std::filesystem::path> qcow2_backing_file(const std::filesystem::path& image);

// Removes overlays in <state>/overlays that nothing uses (see reset_files.cpp). The caller holds
// the VM's lock and no standby is being prepared (but the caller's own).
void sweep_overlays(const launcher::state_directory& dir,
                    std::vector<std::filesystem::path> used = {});

} // namespace qmpkit::snapshot::detail
