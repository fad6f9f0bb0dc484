#include "operation_journal.hpp"
#include "reset_files.hpp"
#include "same_file.hpp"
#include "vm_context.hpp"

#include <qmpkit/launcher/atomic_file.hpp>
#include <qmpkit/launcher/definition_loader.hpp>
#include <qmpkit/launcher/qemu_img.hpp>
#include <qmpkit/launcher/standby.hpp>
#include <qmpkit/snapshot/error.hpp>
#include <qmpkit/snapshot/metadata_store.hpp>

#include <boost/json.hpp>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <unistd.h>

namespace qmpkit::snapshot::detail {

namespace json = boost::json;
namespace fs = std::filesystem;

void copy_sparse(const fs::path& from, const fs::path& to) {
    const int in = ::open(from.c_str(), O_RDONLY | O_CLOEXEC);
    if (in < 0)
        throw error(error_kind::other,
                    "cannot read " + from.string() + ": " + std::strerror(errno));
    const int out = ::open(to.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (out < 0) {
        ::close(in);
        throw error(error_kind::other,
                    "cannot create " + to.string() + ": " + std::strerror(errno));
    }
    const off_t size = ::lseek(in, 0, SEEK_END);
    bool ok = ::ftruncate(out, size) == 0;
    std::vector<char> buffer(1 << 20);
    for (off_t data = ::lseek(in, 0, SEEK_DATA); ok && data >= 0 && data < size;) {
        off_t hole = ::lseek(in, data, SEEK_HOLE);
        if (hole < 0)
            hole = size;
        for (off_t at = data; ok && at < hole;) {
            const auto want = static_cast<std::size_t>(
                std::min<off_t>(hole - at, static_cast<off_t>(buffer.size())));
            const auto n = ::pread(in, buffer.data(), want, at);
            ok = n > 0 && ::pwrite(out, buffer.data(), static_cast<std::size_t>(n), at) == n;
            at += n > 0 ? n : 0;
        }
        data = ::lseek(in, hole, SEEK_DATA);
    }
    ok = ok && ::fsync(out) == 0;
    const int copy_errno = errno;
    ::close(in);
    ::close(out);
    if (!ok) {
        std::error_code ignored;
        fs::remove(to, ignored);
        throw error(error_kind::other, "copying " + from.string() + " to " + to.string() +
                                           " failed: " + std::strerror(copy_errno));
    }
}

fs::path point_file(const fs::path& point_dir) {
    return point_dir / "point.json";
}

void write_point(const fs::path& dir, const reset_point& p) {
    json::array disks;
    for (const auto& d : p.disks)
        disks.push_back({{"name", d.name}, {"base", d.base.string()}});
    json::object o{{"format", "qmpkit-reset-point"},
                   {"version", 1},
                   {"name", p.name},
                   {"created_at", p.created_at},
                   {"ram", p.ram.string()},
                   {"device_state", p.device_state.string()},
                   {"disks", std::move(disks)},
                   {"definition", p.definition}};
    launcher::write_file_atomically(point_file(dir), json::serialize(o) + "\n");
}

reset_point read_point(const fs::path& dir) {
    const auto file = point_file(dir);
    try {
        auto o = json::parse(launcher::read_file(file)).as_object();
        if (o.at("format").as_string() != "qmpkit-reset-point" || o.at("version").as_int64() != 1)
            throw error(error_kind::metadata_corrupt,
                        file.string() + ": not a qmpkit reset point of version 1");
        reset_point p;
        p.name = o.at("name").as_string();
        p.created_at = o.at("created_at").as_int64();
        p.ram = std::string(o.at("ram").as_string());
        p.device_state = std::string(o.at("device_state").as_string());
        for (const auto& d : o.at("disks").as_array())
            p.disks.push_back(
                {std::string(d.at("name").as_string()), std::string(d.at("base").as_string())});
        p.definition = o.at("definition").as_string();
        return p;
    } catch (const std::exception& e) {
        if (dynamic_cast<const error*>(&e))
            throw;
        throw error(error_kind::metadata_corrupt, file.string() + ": " + e.what());
    }
}

std::vector<reset_point> read_points(const launcher::state_directory& dir) {
    std::vector<reset_point> points;
    std::error_code ec;
    for (const auto& entry : fs::directory_iterator(dir.reset_points(), ec))
        if (fs::exists(point_file(entry.path())))
            points.push_back(read_point(entry.path()));
    std::sort(points.begin(), points.end(), [](auto& a, auto& b) {
        return a.created_at != b.created_at ? a.created_at < b.created_at : a.name < b.name;
    });
    return points;
}

// An empty overlay over a point's frozen disk, made once per point and disk by qemu-img and
// copied for every fresh instance after that: a copy is a few hundred KB of unchanged bytes
// (the header names the frozen image by its absolute path), where qemu-img is a process start
// on the reset's or the standby's path.
fs::path overlay_template(const reset_point& point, const reset_point::disk& d) {
    const auto file =
        point.device_state.parent_path() / ("overlay." + d.name + "." + d.base.filename().string());
    std::error_code ec;
    if (fs::exists(file, ec))
        return file;
    const auto made = fs::path(file.string() + "." + detail::hex_id() + ".tmp");
    try {
        launcher::qemu_img().create(made, launcher::disk_format::qcow2, std::nullopt, d.base,
                                    launcher::disk_format::qcow2);
        fs::rename(made, file); // several makers: the last rename wins, and all are the same
    } catch (...) {
        fs::remove(made, ec);
        throw;
    }
    return file;
}

// The point's definition, named `name`, with a new overlay over each frozen disk, in
// `overlay_dir`, named with `new_id` (nothing is made yet: see make_instance_overlays). Returns
// it and the overlays, in the order of point.disks.
std::pair<launcher::vm_definition, std::vector<fs::path>>
instance_definition(const reset_point& point, const std::string& name, const fs::path& overlay_dir,
                    const fs::path& origin, const std::function<std::string()>& new_id) {
    auto def = launcher::load_definition_from_string(point.definition, origin);
    def.name = name;
    std::vector<fs::path> overlays;
    for (const auto& d : point.disks) {
        const auto overlay = overlay_dir / (d.name + "." + new_id() + ".qcow2");
        overlays.push_back(overlay);
        for (auto& disk : def.disks)
            if (disk.name == d.name) {
                disk.file = overlay;
                disk.format = launcher::disk_format::qcow2;
                disk.size.reset();
                disk.backing.reset();
            }
    }
    return {std::move(def), std::move(overlays)};
}

void make_instance_overlays(const reset_point& point, const std::vector<fs::path>& overlays) {
    if (overlays.empty())
        return;
    const auto dir = overlays.front().parent_path();
    fs::create_directories(dir);
    fs::permissions(dir, fs::perms::owner_all, fs::perm_options::replace);
    std::size_t made = 0;
    try {
        for (; made < point.disks.size() && made < overlays.size(); ++made) {
            fs::copy_file(overlay_template(point, point.disks[made]), overlays[made]);
            fs::permissions(overlays[made], fs::perms::owner_read | fs::perms::owner_write,
                            fs::perm_options::replace);
        }
    } catch (...) {
        std::error_code ignored;
        for (std::size_t i = 0; i < made; ++i)
            fs::remove(overlays[i], ignored);
        throw;
    }
}

std::pair<launcher::vm_definition, std::vector<fs::path>>
fresh_instance(const reset_point& point, const std::string& name, const fs::path& overlay_dir,
               const fs::path& origin) {
    auto instance = instance_definition(point, name, overlay_dir, origin, [] { return hex_id(); });
    make_instance_overlays(point, instance.second);
    return instance;
}

// Every file the VM's snapshots live in or are built on: an internal snapshot taken while the
// VM ran on an overlay lives inside it; an external one froze its image and made an overlay.
std::vector<fs::path> snapshot_files(const launcher::state_directory& dir) {
    std::vector<fs::path> files;
    const auto tree = metadata_store(dir).load();
    for (const auto* record : tree.all())
        for (const auto& d : record->disks)
            for (const auto& f : {d.image, d.overlay})
                if (!f.empty())
                    files.push_back(f);
    return files;
}

// Overlays the VM ran on before a reset and no longer uses: the ones resets and reset points
// made, never an image a user named, one a reset point is frozen on, or one a snapshot needs.
std::vector<fs::path> superseded_overlays(const launcher::state_directory& dir,
                                          const launcher::vm_definition& before,
                                          const launcher::vm_definition& after) {
    std::vector<fs::path> frozen = snapshot_files(dir);
    for (const auto& p : read_points(dir))
        for (const auto& d : p.disks)
            frozen.push_back(d.base);
    auto inside = [](const fs::path& file, const fs::path& folder) {
        const auto f = fs::weakly_canonical(file).string();
        const auto d = fs::weakly_canonical(folder).string() + "/";
        return f.rfind(d, 0) == 0;
    };
    std::vector<fs::path> garbage;
    for (const auto& disk : before.disks) {
        const auto& f = disk.file;
        const bool ours = inside(f, dir.overlays()) || inside(f, dir.reset_points());
        const bool kept = std::any_of(after.disks.begin(), after.disks.end(),
                                      [&](auto& d) { return detail::same_file(d.file, f); }) ||
                          std::any_of(frozen.begin(), frozen.end(),
                                      [&](auto& b) { return detail::same_file(b, f); });
        if (ours && !kept)
            garbage.push_back(f);
    }
    return garbage;
}

// The backing file a qcow2 image names in its header, resolved against the image's directory as
// qemu does; nullopt for an image without one, or one that is not qcow2 (raw has no backing).
// Reading the header is what `qemu-img info --backing-chain` does, without a process per image.
std::optional<fs::path> qcow2_backing_file(const fs::path& image) {
    const int fd = ::open(image.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        throw error(error_kind::other,
                    "cannot read " + image.string() + ": " + std::strerror(errno));
    unsigned char header[20] = {};
    const bool whole = ::pread(fd, header, sizeof header, 0) == static_cast<ssize_t>(sizeof header);
    auto be = [&](int at, int bytes) {
        std::uint64_t v = 0;
        for (int i = 0; i < bytes; ++i)
            v = v << 8 | header[at + i];
        return v;
    };
    std::optional<fs::path> backing;
    if (whole && header[0] == 'Q' && header[1] == 'F' && header[2] == 'I' && header[3] == 0xfb) {
        const auto offset = be(8, 8);
        const auto size = be(16, 4);
        if (offset != 0 && size > 0 && size <= 4096) {
            std::string name(size, '\0');
            const bool read = ::pread(fd, name.data(), size, static_cast<off_t>(offset)) ==
                              static_cast<ssize_t>(size);
            if (!read) {
                ::close(fd);
                throw error(error_kind::other, "cannot read the header of " + image.string());
            }
            const fs::path named(name);
            backing = named.is_absolute() ? named : image.parent_path() / named;
        }
    }
    ::close(fd);
    return backing;
}

// Removes overlays in <state>/overlays that nothing uses: left by a reset or a standby
// preparation that died half-way. Used means named by the VM's definition, a standby's, a
// reset point (as its frozen image) or a snapshot, in `used`, or in the backing chain of any of
// these (a reset point removed leaves its frozen image under the overlays built on it). The
// caller holds the VM's lock and no standby is being prepared (but the caller's own), so no
// other overlay is on its way into a definition.
void sweep_overlays(const launcher::state_directory& dir, std::vector<fs::path> used) {
    // An interrupted operation's overlays are for its resolution to keep or remove.
    if (std::error_code ec; fs::exists(detail::journal_file(dir), ec))
        return;
    auto add_disks = [&](const fs::path& definition) {
        for (const auto& d : launcher::load_definition(definition).disks)
            used.push_back(d.file);
    };
    add_disks(dir.definition_copy());
    for (const auto& s : launcher::list_standbys(dir))
        for (const auto& d : s.definition.disks)
            used.push_back(d.file);
    for (const auto& p : read_points(dir))
        for (const auto& d : p.disks)
            used.push_back(d.base);
    for (auto& f : snapshot_files(dir))
        used.push_back(std::move(f));
    auto unused_files = [&] {
        std::error_code ec;
        std::vector<fs::path> unused;
        for (const auto& entry : fs::directory_iterator(dir.overlays(), ec))
            if (std::none_of(used.begin(), used.end(),
                             [&](const fs::path& u) { return detail::same_file(u, entry.path()); }))
                unused.push_back(entry.path());
        return unused;
    };
    auto unused = unused_files();
    if (unused.empty())
        return;
    // Only now: what the used images are built on, from their qcow2 headers.
    for (const auto& file : std::vector<fs::path>(used)) {
        std::error_code ec;
        if (!fs::exists(file, ec))
            continue;
        auto layer = file;
        for (int depth = 0; depth < 256; ++depth) {
            std::optional<fs::path> backing;
            try {
                backing = qcow2_backing_file(layer);
            } catch (const std::exception&) {
                return; // cannot tell what it is built on: remove nothing
            }
            if (!backing)
                break;
            used.push_back(*backing);
            layer = *backing;
        }
    }
    std::error_code ec;
    for (const auto& file : unused_files())
        fs::remove(file, ec);
}

} // namespace qmpkit::snapshot::detail
