#pragma once

// The project's Debian 12 guest for integration tests: a UEFI disk image with systemd, sshd,
// cloud-init and qemu-guest-agent, built on demand by scripts/build-debian-guest.

#include <filesystem>
#include <string>

namespace qmpkit::test {

// <source>/build/guest/debian/debian-12.qcow2 (or in $QMPKIT_DEBIAN_GUEST_DIR), built if missing.
std::filesystem::path debian_guest_image();

// A definition of a Debian guest named `name` (q35, TCG, 1 GiB, UEFI, guest agent, cloud-init,
// ssh on an automatic host port) whose system disk is a new overlay in `dir` on the built image;
// `extra` is appended verbatim. Writes it to dir/<name>.yaml and returns the path.
std::filesystem::path write_debian_guest(const std::string& name, const std::filesystem::path& dir,
                                         const std::string& extra = "");

// The root file system of a Debian guest's disk image (any qcow2 chain on the built image),
// checked from outside with `e2fsck -f -n` on a raw copy of the root partition. The image may be
// in use by a running qemu (it is read with qemu-img -U): check only a layer nothing writes to.
struct filesystem_check {
    int exit_code = -1; // e2fsck's: 0 clean
    std::string output;
};
filesystem_check check_root_filesystem(const std::filesystem::path& image,
                                       const std::filesystem::path& scratch);

} // namespace qmpkit::test
