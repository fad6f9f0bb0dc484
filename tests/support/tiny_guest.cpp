#include "tiny_guest.hpp"

#include <cstdlib>
#include <fstream>
#include <stdexcept>

namespace qmpkit::test {
namespace {

std::filesystem::path env_path(const char* name, const std::filesystem::path& fallback) {
    const char* value = std::getenv(name);
    return value && *value ? std::filesystem::path(value) : fallback;
}

std::filesystem::path source_dir() {
    return env_path("QMPKIT_SOURCE_DIR", QMPKIT_TEST_SOURCE_DIR);
}

} // namespace

std::filesystem::path guest_dir() {
    const auto dir = env_path("QMPKIT_GUEST_DIR", source_dir() / "build" / "guest");
    if (!std::filesystem::exists(dir / "vmlinuz") ||
        !std::filesystem::exists(dir / "initramfs.img")) {
        const auto script = source_dir() / "scripts" / "build-guest";
        const auto command = "'" + script.string() + "' '" + dir.string() + "' >&2";
        if (std::system(command.c_str()) != 0)
            throw std::runtime_error("the tiny guest is missing and " + script.string() +
                                     " failed");
    }
    return dir;
}

scratch_dir::scratch_dir() {
    std::string pattern = "/tmp/qk-XXXXXX";
    if (!::mkdtemp(pattern.data()))
        throw std::runtime_error("mkdtemp failed");
    path_ = pattern;
}

scratch_dir::~scratch_dir() {
    std::error_code ignored;
    std::filesystem::remove_all(path_, ignored);
}

std::string tiny_guest_yaml(const std::string& name, const std::filesystem::path& dir,
                            const std::vector<guest_disk>& disks, const std::string& extra) {
    const auto guest = guest_dir();
    std::string yaml = "name: " + name +
                       "\n"
                       "machine: pc\n"
                       "accel: tcg\n"
                       "memory: 256M\n"
                       "kernel: " +
                       (guest / "vmlinuz").string() + "\n" +
                       "initrd: " + (guest / "initramfs.img").string() + "\n" +
                       "append: \"console=ttyS0 panic=-1\"\n"
                       "command_channel: true\n";
    if (!disks.empty()) {
        yaml += "disks:\n";
        for (const auto& d : disks)
            yaml += "  - {name: " + d.name +
                    ", file: " + (dir / (name + "-" + d.name + "." + d.format)).string() +
                    ", format: " + d.format + ", size: " + d.size + "}\n";
    }
    return yaml + extra;
}

std::filesystem::path write_tiny_guest(const std::string& name, const std::filesystem::path& dir,
                                       const std::vector<guest_disk>& disks,
                                       const std::string& extra) {
    const auto file = dir / (name + ".yaml");
    write_text(file, tiny_guest_yaml(name, dir, disks, extra));
    return file;
}

std::filesystem::path qmpkit_binary() {
    return env_path("QMPKIT_CLI",
                    env_path("QMPKIT_BINARY_DIR", QMPKIT_TEST_BINARY_DIR) / "cli" / "qmpkit");
}

void write_text(const std::filesystem::path& file, const std::string& text) {
    std::ofstream out(file);
    out << text;
    if (!out)
        throw std::runtime_error("cannot write " + file.string());
}

} // namespace qmpkit::test
