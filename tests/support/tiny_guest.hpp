#pragma once

// The project's tiny guest for integration tests: where it is (built on demand by
// scripts/build-guest), YAML definitions that boot it, a scratch directory with a short path
// (UNIX socket paths are limited to 107 bytes), and the qmpkit binary to drive.

#include <filesystem>
#include <string>
#include <vector>

namespace qmpkit::test {

// <source>/build/guest (or $QMPKIT_GUEST_DIR), built by scripts/build-guest if missing.
std::filesystem::path guest_dir();

// A fresh directory under /tmp, removed with everything in it on destruction.
class scratch_dir {
public:
    scratch_dir();
    ~scratch_dir();
    scratch_dir(const scratch_dir&) = delete;
    scratch_dir& operator=(const scratch_dir&) = delete;
    const std::filesystem::path& path() const { return path_; }
    std::filesystem::path operator/(const std::string& name) const { return path_ / name; }

private:
    std::filesystem::path path_;
};

struct guest_disk {
    std::string name;
    std::string size = "64M";
    std::string format = "qcow2";
};

// A definition of the tiny guest (machine pc, TCG, command channel) with its disks as images
// in `dir`; `extra` is appended verbatim (more YAML keys).
std::string tiny_guest_yaml(const std::string& name, const std::filesystem::path& dir,
                            const std::vector<guest_disk>& disks = {{"system"}},
                            const std::string& extra = "");

// Writes it to dir/<name>.yaml and returns the path.
std::filesystem::path write_tiny_guest(const std::string& name, const std::filesystem::path& dir,
                                       const std::vector<guest_disk>& disks = {{"system"}},
                                       const std::string& extra = "");

// The qmpkit command-line tool of this build.
std::filesystem::path qmpkit_binary();

void write_text(const std::filesystem::path& file, const std::string& text);

} // namespace qmpkit::test
