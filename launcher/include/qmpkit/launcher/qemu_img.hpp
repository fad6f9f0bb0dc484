#pragma once

#include <qmpkit/launcher/vm_definition.hpp>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

namespace qmpkit::launcher {

// One internal snapshot as `qemu-img info` lists it. A disk-only snapshot (qemu-img snapshot -c,
// blockdev-snapshot-internal-sync) has vm_state_size 0 and a zero VM clock.
struct image_snapshot {
    std::string id; // qcow2 numbers them "1", "2", ...; ids are never reused within an image
    std::string name;
    std::uint64_t vm_state_size = 0; // bytes of saved RAM and device state
    std::int64_t date_sec = 0;       // wall clock when taken
    std::int64_t date_nsec = 0;
    std::int64_t vm_clock_sec = 0; // guest run time when taken
    std::int64_t vm_clock_nsec = 0;
    std::optional<std::uint64_t> icount{}; // record/replay instruction count; qcow2 v3 has it

    friend bool operator==(const image_snapshot&, const image_snapshot&) = default;
};

// `qemu-img info --output=json`. Optional fields are those qemu-img leaves out for some formats
// (raw has no cluster size, no corrupt flag).
struct image_info {
    std::filesystem::path filename;              // as qemu-img was given it
    std::string format;                          // "qcow2", "raw", or any other format qemu knows
    std::uint64_t virtual_size = 0;              // what the guest sees, bytes
    std::optional<std::uint64_t> actual_size{};  // allocated on the host, bytes
    std::optional<std::uint64_t> cluster_size{}; // qcow2
    std::optional<std::string> backing_file{};   // as recorded in the image, may be relative
    std::optional<std::string> full_backing_file{}; // resolved against the image's directory
    std::optional<std::string> backing_format{};
    std::optional<bool> dirty{};   // "dirty-flag": not closed cleanly (lazy refcounts)
    std::optional<bool> corrupt{}; // qcow2's corrupt bit: qemu refuses to write the image
    bool encrypted = false;
    std::vector<image_snapshot> snapshots{};

    // format as a disk_format when it is one qmpkit can run with.
    std::optional<disk_format> known_format() const noexcept {
        return disk_format_from_string(format);
    }
};

// `qemu-img check --output=json`. The counters qemu-img leaves out when they are zero are 0.
struct image_check {
    std::filesystem::path filename;
    std::string format;
    std::uint64_t corruptions = 0; // metadata errors: data may already be lost
    std::uint64_t leaks = 0;       // clusters allocated but unused: wasted space only
    std::uint64_t check_errors = 0;
    std::uint64_t corruptions_fixed = 0;
    std::uint64_t leaks_fixed = 0;
    std::optional<std::uint64_t> image_end_offset{};
    std::optional<std::uint64_t> total_clusters{};
    std::optional<std::uint64_t> allocated_clusters{};
    std::optional<std::uint64_t> fragmented_clusters{};
    std::optional<std::uint64_t> compressed_clusters{};

    bool clean() const noexcept { return corruptions == 0 && leaks == 0 && check_errors == 0; }
};

// Typed calls of the qemu-img tool, for disks of a VM that is not running (the CLI's `disk`
// commands, and offline snapshots the way libvirt takes them for a shut-off domain). Every call
// runs qemu-img once or twice and throws launcher::error on failure, naming the image and,
// where there is one, the snapshot; error::kind() tells the failures callers act on apart:
//   program_not_found   qemu-img is not installed
//   image_in_use        another process (a running qemu) holds the image's lock
//   file_exists         create/convert refuse to replace a file
//   unsupported         e.g. internal snapshots or check on a raw image
//   snapshot_not_found, snapshot_exists
//   command_failed      anything else qemu-img refused; the message carries its stderr
//
// Relative paths are relative to the working directory, except a backing file, which qemu
// resolves against the directory of the image that refers to it and records as given.
// Files created (create, convert) are owner-only (0600) whatever the umask: they hold a guest's
// disk. chmod them afterwards to share them.
//
// Encrypted images: a key (disk_encryption) goes to qemu-img as a secret object that reads the
// key file (--object secret,file=...), the image as --image-opts; the passphrase itself is never
// an argument.
class qemu_img {
public:
    // program: the qemu-img binary, looked up in PATH unless it holds a slash (tests point it
    // at a fake). timeout: for each run of it; nullopt waits as long as it takes.
    explicit qemu_img(std::string program = "qemu-img",
                      std::optional<std::chrono::milliseconds> timeout = std::nullopt);

    // With -U (force-share), so that it also works on an image a running qemu holds; what it
    // reads then may be a moment out of date.
    image_info info(const std::filesystem::path& image) const;

    // info(), remembered in `cache_file` (a small JSON file; made, and replaced atomically, as
    // needed) under the image's identity and change times: device, inode, size, and mtime and
    // ctime to the nanosecond. An image that changed or was replaced is read again. The file
    // system's clock ticks coarsely (a few ms), so two writes within one tick that keep the
    // size may go unseen: for reports such as drift warnings, not for decisions.
    image_info info_cached(const std::filesystem::path& image,
                           const std::filesystem::path& cache_file) const;

    // The image first, then its backing file, and so on down to the base.
    std::vector<image_info> info_chain(const std::filesystem::path& image) const;

    // Creates a new image, never replacing an existing file (file_exists). size: bytes; may be
    // left out with a backing file, whose size is then taken. backing needs qcow2; its format
    // is probed when not given, which is only safe for a backing file no guest has written
    // to as raw (a raw disk whose first bytes look like a qcow2 header would be misread).
    // qemu-img creates into a temporary name in the same directory, renamed into place when
    // complete, so a crash or a failure leaves no half-made image under `image`.
    // encryption: a qcow2 image encrypted with qcow2's LUKS, the passphrase read from the key
    // file. key_iter_time: how long deriving the key from the passphrase takes, which every
    // open of the image pays; nullopt is qemu's default (2 s), the safe choice against
    // guessing. An encrypted backing file needs no key here.
    void create(const std::filesystem::path& image, disk_format format,
                std::optional<std::uint64_t> size,
                const std::optional<std::filesystem::path>& backing = std::nullopt,
                std::optional<disk_format> backing_format = std::nullopt,
                const std::optional<disk_encryption>& encryption = std::nullopt,
                std::optional<std::chrono::milliseconds> key_iter_time = std::nullopt) const;

    // Copies `in` (its whole backing chain, flattened) into a new image `out`. The input is
    // opened read-only and never modified; an input in use fails with image_in_use rather than
    // copying a disk that is changing underneath. Refuses an existing `out` (file_exists) and
    // `out` naming the input itself (invalid_argument). The copy is written to a temporary
    // name beside `out`, fsync'd, then renamed, so `out` appears complete or not at all.
    // in_format: probed when not given.
    void convert(const std::filesystem::path& in, const std::filesystem::path& out,
                 disk_format out_format = disk_format::qcow2,
                 std::optional<disk_format> in_format = std::nullopt) const;

    // Offline internal snapshots (qemu-img snapshot). The image must not be in use
    // (image_in_use) and must support them (qcow2; anything else: unsupported). Names are
    // matched exactly and are kept unique: create refuses a name that exists (qemu-img itself
    // would add a second snapshot with the same name), apply and delete refuse a name shared
    // by several snapshots made by other tools. The check and the change are two qemu-img runs,
    // so a concurrent writer between them is not detected. An encrypted image needs its key
    // (info, info_chain and snapshot_list read the unencrypted header and need none).
    void snapshot_create(const std::filesystem::path& image, const std::string& name,
                         const std::optional<disk_encryption>& key = std::nullopt) const;
    // Reverts the disk contents to the snapshot (a saved VM state in it is left unused).
    void snapshot_apply(const std::filesystem::path& image, const std::string& name,
                        const std::optional<disk_encryption>& key = std::nullopt) const;
    void snapshot_delete(const std::filesystem::path& image, const std::string& name,
                         const std::optional<disk_encryption>& key = std::nullopt) const;
    // From info(), so it also works while the image is in use; empty for a raw image.
    std::vector<image_snapshot> snapshot_list(const std::filesystem::path& image) const;

    // Writes the data of `overlay` into the image it is built on (`qemu-img commit -d`), for a
    // shut-off VM's external snapshot, as block-commit does for a running one. The overlay is
    // left as it was; the caller removes it once nothing refers to it. Both must be unused.
    void commit(const std::filesystem::path& overlay,
                const std::optional<disk_encryption>& key = std::nullopt) const;

    // Makes `image` independent of its backing file's own backing chain: what `image` reads
    // through its backing file is copied into it and its backing file becomes `new_backing`
    // (none when nullopt), as block-stream does for a running VM (`qemu-img rebase`, safe mode).
    // unsafe: only the recorded backing file changes, no data is copied (-u): for a new backing
    // file that reads the same as the old one (the old one was committed into it).
    void rebase(const std::filesystem::path& image,
                const std::optional<std::filesystem::path>& new_backing,
                std::optional<disk_format> new_backing_format = std::nullopt,
                const std::optional<disk_encryption>& key = std::nullopt,
                bool unsafe = false) const;

    // Consistency check of the image metadata, without repairing anything. Corruptions and
    // leaks are results, not errors (qemu-img exits 2 and 3 for them); a format without checks
    // (raw) is unsupported.
    image_check check(const std::filesystem::path& image,
                      const std::optional<disk_encryption>& key = std::nullopt) const;

    const std::string& program() const noexcept { return program_; }

private:
    std::string program_;
    std::optional<std::chrono::milliseconds> timeout_;
};

} // namespace qmpkit::launcher
