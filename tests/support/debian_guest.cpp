#include "debian_guest.hpp"
#include "tiny_guest.hpp"

#include <cstdio>
#include <cstdlib>
#include <stdexcept>

namespace qmpkit::test {
namespace {

std::filesystem::path env_path(const char* name, const std::filesystem::path& fallback) {
    const char* value = std::getenv(name);
    return value && *value ? std::filesystem::path(value) : fallback;
}

// Where scripts/build-debian-guest puts the root partition (its "Layout" comment): from 129 MiB
// to 1 MiB before the end of the 4096 MiB disk.
constexpr long long mib = 1024 * 1024;
constexpr long long root_offset = 129 * mib;
constexpr long long root_size = (4096 - 1 - 129) * mib;

// A command's exit code and its output (stdout and stderr).
filesystem_check run_shell(const std::string& command) {
    filesystem_check result;
    FILE* pipe = ::popen((command + " 2>&1").c_str(), "r");
    if (!pipe)
        throw std::runtime_error("cannot run: " + command);
    char buffer[4096];
    while (auto n = std::fread(buffer, 1, sizeof buffer, pipe))
        result.output.append(buffer, n);
    const int status = ::pclose(pipe);
    result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    return result;
}

} // namespace

filesystem_check check_root_filesystem(const std::filesystem::path& image,
                                       const std::filesystem::path& scratch) {
    // qemu's raw driver cuts the partition out of the chain; no loop device, no mount.
    const auto raw = scratch / "root-partition.raw";
    const auto source =
        R"('json:{"driver": "raw", "offset": )" + std::to_string(root_offset) + R"(, "size": )" +
        std::to_string(root_size) +
        R"(, "file": {"driver": "qcow2", "file": {"driver": "file", "filename": ")" +
        image.string() + R"("}}}')";
    auto copy = run_shell("qemu-img convert -U -O raw " + source + " '" + raw.string() + "'");
    if (copy.exit_code != 0)
        return copy;
    auto check = run_shell("PATH=$PATH:/usr/sbin:/sbin e2fsck -f -n '" + raw.string() + "'");
    std::filesystem::remove(raw);
    return check;
}

std::filesystem::path debian_guest_image() {
    const auto source = env_path("QMPKIT_SOURCE_DIR", QMPKIT_TEST_SOURCE_DIR);
    const auto dir = env_path("QMPKIT_DEBIAN_GUEST_DIR", source / "build" / "guest" / "debian");
    const auto image = dir / "debian-12.qcow2";
    if (!std::filesystem::exists(image)) {
        const auto script = source / "scripts" / "build-debian-guest";
        const auto command = "'" + script.string() + "' '" + dir.string() + "' >&2";
        if (std::system(command.c_str()) != 0 || !std::filesystem::exists(image))
            throw std::runtime_error("the Debian guest is missing and " + script.string() +
                                     " failed");
    }
    return image;
}

std::filesystem::path write_debian_guest(const std::string& name, const std::filesystem::path& dir,
                                         const std::string& extra) {
    const auto yaml = "name: " + name +
                      "\n"
                      "machine: q35\n"
                      "accel: tcg\n"
                      "memory: 1G\n"
                      "firmware: uefi\n"
                      "guest_agent: true\n"
                      "disks:\n"
                      "  - name: system\n"
                      "    file: " +
                      (dir / (name + "-system.qcow2")).string() +
                      "\n"
                      "    backing: " +
                      debian_guest_image().string() +
                      "\n"
                      "network:\n"
                      "  forwards:\n"
                      "    - {host_port: auto, guest_port: 22}\n"
                      "cloud_init: {}\n" +
                      extra;
    const auto file = dir / (name + ".yaml");
    write_text(file, yaml);
    return file;
}

} // namespace qmpkit::test
