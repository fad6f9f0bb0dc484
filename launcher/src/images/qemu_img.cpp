#include <qmpkit/launcher/atomic_file.hpp>
#include <qmpkit/launcher/error.hpp>
#include <qmpkit/launcher/qemu_img.hpp>
#include <qmpkit/launcher/subprocess.hpp>

#include <boost/json.hpp>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fcntl.h>
#include <random>
#include <string_view>
#include <sys/stat.h>
#include <unistd.h>

namespace qmpkit::launcher {

namespace fs = std::filesystem;

namespace {

constexpr std::string_view install_hint = "install qemu-utils (scripts/setup)";

// qemu-img reads "proto:rest" as a protocol prefix when the colon comes before any slash, and a
// leading dash as an option; "./" in front of a relative path defuses both. Absolute paths start
// with a slash and are safe as they are.
std::string path_arg(const fs::path& p) {
    if (p.is_absolute())
        return p.string();
    return "./" + p.string();
}

// A backing file name is stored in the image verbatim, so it is only touched when qemu would
// misread it.
std::string backing_arg(const fs::path& p) {
    const std::string& s = p.native();
    if (p.is_absolute())
        return s;
    auto special = s.find_first_of(":/");
    if (s.starts_with('-') || (special != std::string::npos && s[special] == ':'))
        return "./" + s;
    return s;
}

std::string quoted(const fs::path& p) {
    return "'" + p.string() + "'";
}

// In qemu's "key=value,..." option strings a comma inside a value is written twice.
std::string escape_option(const std::string& value) {
    std::string out;
    for (char c : value) {
        out += c;
        if (c == ',')
            out += ',';
    }
    return out;
}

constexpr std::string_view secret_id = "qmpkit-key";

// --object for an encrypted image's passphrase: qemu-img reads it from the key file, so the
// passphrase is never in an argument list.
std::vector<std::string> secret_args(const disk_encryption& key) {
    return {"--object", "secret,id=" + std::string(secret_id) +
                            ",format=raw,file=" + escape_option(key.key_file.string())};
}

// How a command names the image: the plain path, or, for an encrypted image, --image-opts with
// the secret that opens it (a plain path gives qemu-img no way to pass the key). The options
// go before the command's own, the image argument last.
struct image_spec {
    std::vector<std::string> options;
    std::string image;
};

image_spec image_spec_for(const fs::path& image, const std::optional<disk_encryption>& key) {
    if (!key)
        return {{}, path_arg(image)};
    auto options = secret_args(*key);
    options.push_back("--image-opts");
    return {std::move(options), "driver=qcow2,file.driver=file,file.filename=" +
                                    escape_option(fs::absolute(image).string()) +
                                    ",encrypt.key-secret=" + std::string(secret_id)};
}

// stderr without the "qemu-img: " each line starts with, and without the trailing newline.
std::string clean_stderr(std::string_view err, std::string_view program) {
    std::string out;
    std::string prefix = fs::path(program).filename().string() + ": ";
    while (!err.empty()) {
        auto end = err.find('\n');
        auto line = err.substr(0, end);
        err = end == std::string_view::npos ? std::string_view{} : err.substr(end + 1);
        if (line.starts_with(prefix))
            line.remove_prefix(prefix.size());
        if (line.empty())
            continue;
        if (!out.empty())
            out += '\n';
        out += line;
    }
    return out;
}

bool says_locked(std::string_view err) {
    // 7.2: 'Failed to get "write" lock' / 'Failed to get shared "write" lock', followed by
    // 'Is another process using the image [...]?'.
    return (err.find("Failed to get") != std::string_view::npos &&
            err.find("lock") != std::string_view::npos) ||
           err.find("Is another process using the image") != std::string_view::npos;
}

bool says_snapshot_missing(std::string_view err) {
    // -d: "snapshot not found"; -a: "Failed to load snapshot: No such file or directory".
    return err.find("snapshot not found") != std::string_view::npos ||
           err.find("Failed to load snapshot") != std::string_view::npos;
}

struct invocation {
    const std::string& program;
    const std::optional<std::chrono::milliseconds>& timeout;
};

// Runs qemu-img and turns every failure into a launcher::error that starts with `what`
// ("cannot create snapshot 's' of 'disk.qcow2'"). Exit codes in `accepted` are successes.
subprocess_result run_img(const invocation& img, std::vector<std::string> args,
                          const std::string& what, std::initializer_list<int> accepted = {0}) {
    args.insert(args.begin(), img.program);
    subprocess_options options;
    options.timeout = img.timeout;
    // Messages (strerror texts included) stay in English, whatever the caller's locale.
    options.env = {{"LC_ALL", "C"}};
    auto result = run(args, options);

    if (result.spawn_error != 0 || (result.signal == 0 && result.exit_code == 127)) {
        std::string reason =
            result.spawn_error == ENOENT || result.spawn_error == 0
                ? " not found: "
                : std::string(" cannot be executed (") + std::strerror(result.spawn_error) + "): ";
        throw error(error_kind::program_not_found,
                    what + ": " + img.program + reason + std::string(install_hint));
    }
    if (result.timed_out)
        throw error(error_kind::timed_out, what + ": " + describe(args) + " timed out after " +
                                               std::to_string(img.timeout->count()) + " ms");
    if (result.signal == 0 &&
        std::find(accepted.begin(), accepted.end(), result.exit_code) != accepted.end())
        return result;

    std::string err = clean_stderr(result.err, img.program);
    std::string status = result.signal != 0 ? "killed by signal " + std::to_string(result.signal)
                                            : "exit code " + std::to_string(result.exit_code);
    std::string message = what + ": " + (err.empty() ? "qemu-img gave no reason" : err) + " (" +
                          describe(args) + ": " + status + ")";
    if (says_locked(result.err))
        throw error(error_kind::image_in_use,
                    what +
                        ": the image is in use by another process, probably a running VM: " + err);
    throw error(error_kind::command_failed, message);
}

// JSON readers: qemu-img leaves optional members out rather than writing null.

const boost::json::value* member(const boost::json::object& o, std::string_view key) {
    auto it = o.find(key);
    return it == o.end() || it->value().is_null() ? nullptr : &it->value();
}

template <class T>
std::optional<T> number(const boost::json::object& o, std::string_view key) {
    if (auto* v = member(o, key))
        return v->to_number<T>();
    return std::nullopt;
}

std::optional<std::string> text(const boost::json::object& o, std::string_view key) {
    if (auto* v = member(o, key))
        return std::string(v->as_string());
    return std::nullopt;
}

std::optional<bool> flag(const boost::json::object& o, std::string_view key) {
    if (auto* v = member(o, key))
        return v->as_bool();
    return std::nullopt;
}

image_snapshot parse_snapshot(const boost::json::object& o) {
    image_snapshot s;
    s.id = text(o, "id").value_or("");
    s.name = text(o, "name").value_or("");
    s.vm_state_size = number<std::uint64_t>(o, "vm-state-size").value_or(0);
    s.date_sec = number<std::int64_t>(o, "date-sec").value_or(0);
    s.date_nsec = number<std::int64_t>(o, "date-nsec").value_or(0);
    s.vm_clock_sec = number<std::int64_t>(o, "vm-clock-sec").value_or(0);
    s.vm_clock_nsec = number<std::int64_t>(o, "vm-clock-nsec").value_or(0);
    s.icount = number<std::uint64_t>(o, "icount");
    return s;
}

image_info parse_info(const boost::json::object& o) {
    image_info info;
    info.filename = text(o, "filename").value_or("");
    info.format = text(o, "format").value_or("");
    info.virtual_size = number<std::uint64_t>(o, "virtual-size").value_or(0);
    info.actual_size = number<std::uint64_t>(o, "actual-size");
    info.cluster_size = number<std::uint64_t>(o, "cluster-size");
    info.backing_file = text(o, "backing-filename");
    info.full_backing_file = text(o, "full-backing-filename");
    info.backing_format = text(o, "backing-filename-format");
    info.dirty = flag(o, "dirty-flag");
    info.encrypted = flag(o, "encrypted").value_or(false);
    // The corrupt bit is qcow2-specific: format-specific {type: qcow2, data: {corrupt}}.
    if (auto* specific = member(o, "format-specific"); specific && specific->is_object()) {
        if (auto* data = member(specific->as_object(), "data"); data && data->is_object())
            info.corrupt = flag(data->as_object(), "corrupt");
    }
    if (auto* snapshots = member(o, "snapshots")) {
        for (const auto& s : snapshots->as_array())
            info.snapshots.push_back(parse_snapshot(s.as_object()));
    }
    return info;
}

image_check parse_check(const boost::json::object& o) {
    image_check c;
    c.filename = text(o, "filename").value_or("");
    c.format = text(o, "format").value_or("");
    c.corruptions = number<std::uint64_t>(o, "corruptions").value_or(0);
    c.leaks = number<std::uint64_t>(o, "leaks").value_or(0);
    c.check_errors = number<std::uint64_t>(o, "check-errors").value_or(0);
    c.corruptions_fixed = number<std::uint64_t>(o, "corruptions-fixed").value_or(0);
    c.leaks_fixed = number<std::uint64_t>(o, "leaks-fixed").value_or(0);
    c.image_end_offset = number<std::uint64_t>(o, "image-end-offset");
    c.total_clusters = number<std::uint64_t>(o, "total-clusters");
    c.allocated_clusters = number<std::uint64_t>(o, "allocated-clusters");
    c.fragmented_clusters = number<std::uint64_t>(o, "fragmented-clusters");
    c.compressed_clusters = number<std::uint64_t>(o, "compressed-clusters");
    return c;
}

// Parses qemu-img's JSON with `parse`, reporting anything unexpected as a qemu-img failure.
template <class Parse>
auto parse_output(const std::string& out, const std::string& what, Parse parse) {
    try {
        return parse(boost::json::parse(out));
    } catch (const std::exception& e) {
        throw error(error_kind::command_failed,
                    what + ": unexpected output from qemu-img (" + e.what() + ")");
    }
}

// A name beside `target` for building it: hidden, recognisable if a crash leaves it behind, and
// random so that concurrent calls for the same target do not collide.
fs::path temp_path_for(const fs::path& target) {
    std::random_device random;
    std::uint64_t bits = (std::uint64_t{random()} << 32) | random();
    char suffix[17];
    std::snprintf(suffix, sizeof suffix, "%016llx", static_cast<unsigned long long>(bits));
    std::string name = target.filename().string().substr(0, 100);
    return target.parent_path() / ("." + name + ".qmpkit-tmp-" + suffix);
}

// Removes the temp file unless it was renamed into place, also when a failure throws.
// The file is made here, empty and owner-only, before qemu-img writes into it: qemu-img keeps the
// mode of a file that exists, so a guest's disk is never readable by other users, not even for
// the moment between creating and renaming it (qemu-img's own would be 0644 minus the umask).
class temp_file {
public:
    temp_file(fs::path path, const std::string& what)
        : path_(std::move(path)) {
        const int fd =
            ::open(path_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
        if (fd < 0)
            throw error(what + ": cannot create " + quoted(path_) + ": " + std::strerror(errno));
        ::close(fd);
    }
    ~temp_file() {
        if (!installed_) {
            std::error_code ignored;
            fs::remove(path_, ignored);
        }
    }
    temp_file(const temp_file&) = delete;
    temp_file& operator=(const temp_file&) = delete;

    const fs::path& path() const noexcept { return path_; }
    void installed() noexcept { installed_ = true; }

private:
    fs::path path_;
    bool installed_ = false;
};

void fsync_path(const fs::path& p, int flags, const std::string& what) {
    int fd = ::open(p.c_str(), flags | O_CLOEXEC);
    if (fd < 0)
        throw error(what + ": cannot open " + quoted(p) + ": " + std::strerror(errno));
    int rc = ::fsync(fd);
    int err = errno;
    ::close(fd);
    if (rc != 0)
        throw error(what + ": fsync of " + quoted(p) + " failed: " + std::strerror(err));
}

[[noreturn]] void throw_exists(const fs::path& p, const std::string& what) {
    throw error(error_kind::file_exists,
                what + ": " + quoted(p) + " already exists; refusing to overwrite it");
}

// Moves the finished temp file to `target`, failing rather than replacing a file that appeared
// there meanwhile, then makes the new name durable.
void install(temp_file& temp, const fs::path& target, const std::string& what) {
    fsync_path(temp.path(), O_RDONLY, what);
    if (::renameat2(AT_FDCWD, temp.path().c_str(), AT_FDCWD, target.c_str(), RENAME_NOREPLACE) !=
        0) {
        int err = errno;
        if (err == EEXIST)
            throw_exists(target, what);
        if (err != EINVAL && err != ENOSYS)
            throw error(what + ": cannot rename " + quoted(temp.path()) + " to " + quoted(target) +
                        ": " + std::strerror(err));
        // A file system without RENAME_NOREPLACE: link() refuses an existing target as well.
        if (::link(temp.path().c_str(), target.c_str()) != 0) {
            err = errno;
            if (err == EEXIST)
                throw_exists(target, what);
            throw error(what + ": cannot link " + quoted(temp.path()) + " to " + quoted(target) +
                        ": " + std::strerror(err));
        }
        ::unlink(temp.path().c_str());
    }
    temp.installed();
    auto dir = target.parent_path();
    fsync_path(dir.empty() ? fs::path(".") : dir, O_RDONLY | O_DIRECTORY, what);
}

// symlink_status: a dangling symlink is a file in the way too.
bool occupied(const fs::path& p) {
    std::error_code ec;
    return fs::exists(fs::symlink_status(p, ec));
}

} // namespace

qemu_img::qemu_img(std::string program, std::optional<std::chrono::milliseconds> timeout)
    : program_(std::move(program))
    , timeout_(timeout) {}

image_info qemu_img::info(const fs::path& image) const {
    std::string what = "cannot read image information of " + quoted(image);
    auto result =
        run_img({program_, timeout_}, {"info", "--output=json", "-U", path_arg(image)}, what);
    auto info = parse_output(result.out, what,
                             [](const boost::json::value& v) { return parse_info(v.as_object()); });
    info.filename = image;
    return info;
}

image_info qemu_img::info_cached(const fs::path& image, const fs::path& cache_file) const {
    struct stat st {};
    if (::stat(image.c_str(), &st) != 0)
        return info(image); // reports what is wrong with it
    const auto key = std::to_string(st.st_dev) + ":" + std::to_string(st.st_ino) + ":" +
                     std::to_string(st.st_size) + ":" + std::to_string(st.st_mtim.tv_sec) + "." +
                     std::to_string(st.st_mtim.tv_nsec) + ":" + std::to_string(st.st_ctim.tv_sec) +
                     "." + std::to_string(st.st_ctim.tv_nsec);
    const std::string what = "cannot read image information of " + quoted(image);
    boost::json::object cache;
    try {
        auto doc = boost::json::parse(read_file(cache_file));
        if (doc.is_object())
            cache = std::move(doc.as_object());
    } catch (const std::exception&) {
        // None yet, or unreadable: it is only a cache.
    }
    if (const auto* entry = cache.if_contains(image.string()))
        if (entry->is_object() && entry->as_object().contains("key") &&
            entry->as_object().at("key") == key.c_str() && entry->as_object().contains("info"))
            try {
                auto found = parse_info(entry->as_object().at("info").as_object());
                found.filename = image;
                return found;
            } catch (const std::exception&) {
                // Damaged: ask qemu-img again.
            }
    auto result =
        run_img({program_, timeout_}, {"info", "--output=json", "-U", path_arg(image)}, what);
    auto found = parse_output(
        result.out, what, [](const boost::json::value& v) { return parse_info(v.as_object()); });
    found.filename = image;
    try {
        cache[image.string()] = {{"key", key}, {"info", boost::json::parse(result.out)}};
        write_file_atomically(cache_file, boost::json::serialize(cache) + "\n",
                              fs::perms::owner_read | fs::perms::owner_write,
                              durability::atomic_only);
    } catch (const std::exception&) {
        // Not remembered; the answer stands.
    }
    return found;
}

std::vector<image_info> qemu_img::info_chain(const fs::path& image) const {
    std::string what = "cannot read the backing chain of " + quoted(image);
    auto result =
        run_img({program_, timeout_},
                {"info", "--output=json", "-U", "--backing-chain", path_arg(image)}, what);
    auto chain = parse_output(result.out, what, [](const boost::json::value& v) {
        std::vector<image_info> infos;
        for (const auto& entry : v.as_array())
            infos.push_back(parse_info(entry.as_object()));
        return infos;
    });
    if (!chain.empty())
        chain.front().filename = image;
    return chain;
}

void qemu_img::create(const fs::path& image, disk_format format, std::optional<std::uint64_t> size,
                      const std::optional<fs::path>& backing,
                      std::optional<disk_format> backing_format,
                      const std::optional<disk_encryption>& encryption,
                      std::optional<std::chrono::milliseconds> key_iter_time) const {
    std::string what = "cannot create " + quoted(image);
    if (image.empty() || !image.has_filename())
        throw error(error_kind::invalid_argument, what + ": not a file name");
    if (backing && format != disk_format::qcow2)
        throw error(error_kind::invalid_argument, what +
                                                      ": a backing file needs a qcow2 image, not " +
                                                      std::string(to_string(format)));
    if (!size && !backing)
        throw error(error_kind::invalid_argument, what + ": no size given");
    if (encryption && format != disk_format::qcow2)
        throw error(error_kind::invalid_argument, what +
                                                      ": only qcow2 images can be encrypted, not " +
                                                      std::string(to_string(format)));
    if (occupied(image))
        throw_exists(image, what);

    std::vector<std::string> args{"create", "-q", "-f", std::string(to_string(format))};
    if (encryption) {
        auto secret = secret_args(*encryption);
        args.insert(args.end(), secret.begin(), secret.end());
        std::string options = "encrypt.format=" + std::string(to_string(encryption->format)) +
                              ",encrypt.key-secret=" + std::string(secret_id);
        if (key_iter_time)
            options += ",encrypt.iter-time=" + std::to_string(key_iter_time->count());
        args.insert(args.end(), {"-o", options});
    }
    if (backing) {
        std::string fmt;
        if (backing_format) {
            fmt = to_string(*backing_format);
        } else {
            // Resolved the way qemu will: against the new image's directory.
            fs::path resolved = backing->is_absolute() ? *backing : image.parent_path() / *backing;
            fmt = info(resolved).format;
        }
        args.insert(args.end(), {"-b", backing_arg(*backing), "-F", fmt});
    }

    temp_file temp(temp_path_for(image), what);
    args.push_back(path_arg(temp.path()));
    if (size)
        args.push_back(std::to_string(*size));
    // Choosing a LUKS key's iteration count, qemu times a first round of PBKDF2 by the thread's
    // CPU time and gives up ("Unable to get accurate CPU usage") when that reads 0 ms, which a
    // busy host's coarse CPU clock sometimes does: with tick-based accounting a round shorter
    // than a tick reads 0 whenever no tick lands in it (three in a row were seen in CI). Each
    // try measures anew and takes milliseconds.
    for (int attempt = 1;; ++attempt) {
        try {
            run_img({program_, timeout_}, args, what);
            break;
        } catch (const error& e) {
            if (!encryption || attempt == 10 ||
                std::string_view(e.what()).find("Unable to get accurate CPU usage") ==
                    std::string_view::npos)
                throw;
        }
    }
    install(temp, image, what);
}

void qemu_img::convert(const fs::path& in, const fs::path& out, disk_format out_format,
                       std::optional<disk_format> in_format) const {
    std::string what = "cannot convert " + quoted(in) + " to " + quoted(out);
    std::error_code ec;
    if (fs::equivalent(in, out, ec))
        throw error(error_kind::invalid_argument, what + ": they are the same file");
    if (out.empty() || !out.has_filename())
        throw error(error_kind::invalid_argument, what + ": not a file name");
    if (occupied(out))
        throw_exists(out, what);

    std::string in_fmt = in_format ? std::string(to_string(*in_format)) : info(in).format;
    temp_file temp(temp_path_for(out), what);
    run_img({program_, timeout_},
            {"convert", "-q", "-f", in_fmt, "-O", std::string(to_string(out_format)), path_arg(in),
             path_arg(temp.path())},
            what);
    install(temp, out, what);
}

namespace {

// The snapshots named `name`, after making sure the image can have snapshots at all.
std::vector<image_snapshot> snapshots_named(const qemu_img& img, const fs::path& image,
                                            const std::string& name, const std::string& what) {
    if (name.empty())
        throw error(error_kind::invalid_argument, what + ": empty snapshot name");
    auto info = img.info(image);
    if (info.format != "qcow2")
        throw error(error_kind::unsupported,
                    what + ": the image is " + info.format + "; internal snapshots need qcow2");
    std::vector<image_snapshot> found;
    for (auto& s : info.snapshots) {
        if (s.name == name)
            found.push_back(std::move(s));
    }
    return found;
}

const image_snapshot& the_one(const std::vector<image_snapshot>& found, const std::string& name,
                              const std::string& what) {
    if (found.empty())
        throw error(error_kind::snapshot_not_found,
                    what + ": the image has no snapshot by that name");
    if (found.size() > 1) {
        std::string ids;
        for (const auto& s : found)
            ids += (ids.empty() ? "" : ", ") + s.id;
        throw error(error_kind::invalid_argument, what + ": " + std::to_string(found.size()) +
                                                      " snapshots are named '" + name + "' (ids " +
                                                      ids + ")");
    }
    return found.front();
}

// A snapshot that vanished between our listing and qemu-img's run still reads as not found.
template <class F>
void snapshot_call(F call) {
    try {
        call();
    } catch (const error& e) {
        if (e.kind() == error_kind::command_failed && says_snapshot_missing(e.what()))
            throw error(error_kind::snapshot_not_found, e.what());
        throw;
    }
}

} // namespace

namespace {

std::vector<std::string> snapshot_args(const fs::path& image,
                                       const std::optional<disk_encryption>& key,
                                       std::string_view action, const std::string& target) {
    auto spec = image_spec_for(image, key);
    std::vector<std::string> args{"snapshot"};
    args.insert(args.end(), spec.options.begin(), spec.options.end());
    args.insert(args.end(), {"-q", std::string(action), target, spec.image});
    return args;
}

} // namespace

void qemu_img::snapshot_create(const fs::path& image, const std::string& name,
                               const std::optional<disk_encryption>& key) const {
    std::string what = "cannot create snapshot '" + name + "' of " + quoted(image);
    if (!snapshots_named(*this, image, name, what).empty())
        throw error(error_kind::snapshot_exists,
                    what + ": a snapshot with that name already exists");
    run_img({program_, timeout_}, snapshot_args(image, key, "-c", name), what);
}

void qemu_img::snapshot_apply(const fs::path& image, const std::string& name,
                              const std::optional<disk_encryption>& key) const {
    std::string what = "cannot apply snapshot '" + name + "' to " + quoted(image);
    auto found = snapshots_named(*this, image, name, what);
    const auto& snapshot = the_one(found, name, what);
    // -a looks its argument up as an id first and as a name only then, so a snapshot named "2"
    // would lose to the one whose id is 2; the id is unambiguous.
    snapshot_call([&] {
        run_img({program_, timeout_}, snapshot_args(image, key, "-a", snapshot.id), what);
    });
}

void qemu_img::snapshot_delete(const fs::path& image, const std::string& name,
                               const std::optional<disk_encryption>& key) const {
    std::string what = "cannot delete snapshot '" + name + "' of " + quoted(image);
    auto found = snapshots_named(*this, image, name, what);
    the_one(found, name, what);
    // -d, unlike -a, matches names only.
    snapshot_call([&] {
        run_img({program_, timeout_}, snapshot_args(image, key, "-d", name), what);
    });
}

void qemu_img::commit(const fs::path& overlay, const std::optional<disk_encryption>& key) const {
    const std::string what = "cannot commit " + quoted(overlay) + " into its backing file";
    auto spec = image_spec_for(overlay, key);
    std::vector<std::string> args{"commit"};
    args.insert(args.end(), spec.options.begin(), spec.options.end());
    args.insert(args.end(), {"-q", "-d", spec.image});
    run_img({program_, timeout_}, std::move(args), what);
}

void qemu_img::rebase(const fs::path& image, const std::optional<fs::path>& new_backing,
                      std::optional<disk_format> new_backing_format,
                      const std::optional<disk_encryption>& key, bool unsafe) const {
    const std::string what = "cannot rebase " + quoted(image);
    auto spec = image_spec_for(image, key);
    std::vector<std::string> args{"rebase"};
    args.insert(args.end(), spec.options.begin(), spec.options.end());
    args.push_back("-q");
    if (unsafe)
        args.push_back("-u");
    args.insert(args.end(), {"-b", new_backing ? path_arg(*new_backing) : std::string()});
    if (new_backing && new_backing_format)
        args.insert(args.end(), {"-F", std::string(to_string(*new_backing_format))});
    args.push_back(spec.image);
    run_img({program_, timeout_}, std::move(args), what);
}

std::vector<image_snapshot> qemu_img::snapshot_list(const fs::path& image) const {
    return info(image).snapshots;
}

image_check qemu_img::check(const fs::path& image,
                            const std::optional<disk_encryption>& key) const {
    std::string what = "cannot check " + quoted(image);
    auto spec = image_spec_for(image, key);
    std::vector<std::string> args{"check", "--output=json"};
    args.insert(args.end(), spec.options.begin(), spec.options.end());
    args.push_back(spec.image);
    // 2: corruptions found, 3: leaks only; both print the JSON report. 63: no checks for the
    // format. 1: the check itself failed (no report).
    subprocess_result result;
    try {
        result = run_img({program_, timeout_}, std::move(args), what, {0, 2, 3});
    } catch (const error& e) {
        if (e.kind() == error_kind::command_failed &&
            std::string_view(e.what()).find("does not support checks") != std::string_view::npos)
            throw error(error_kind::unsupported, what + ": its format has no consistency checks");
        throw;
    }
    auto check = parse_output(
        result.out, what, [](const boost::json::value& v) { return parse_check(v.as_object()); });
    check.filename = image;
    return check;
}

} // namespace qmpkit::launcher
