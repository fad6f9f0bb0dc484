#include "images/disk_creation.hpp"

#include <qmpkit/launcher/error.hpp>
#include <qmpkit/launcher/qemu_img.hpp>

namespace qmpkit::launcher {

std::vector<std::filesystem::path> create_missing_disks(const vm_definition& def) {
    std::vector<std::filesystem::path> created;
    const qemu_img img;
    try {
        for (const auto& disk : def.disks) {
            std::error_code ec;
            if (std::filesystem::exists(disk.file, ec))
                continue;
            if (disk.bus == disk_bus::pflash) {
                // A VM's own UEFI variable store starts as OVMF's empty one, as qcow2.
                img.convert(std::filesystem::path(uefi_vars_template), disk.file,
                            disk_format::qcow2, disk_format::raw);
                created.push_back(disk.file);
                continue;
            }
            if (!disk.size && !disk.backing)
                throw error("disk '" + disk.name + "': " + disk.file.string() +
                            " does not exist and the definition gives no size to create it");
            std::optional<disk_format> backing_format;
            // The new image records its backing format explicitly, so qemu never probes it at
            // run time. Finding it out here is still a probe (qemu-img info): a raw backing
            // file whose first bytes look like a qcow2 header would be misread.
            if (disk.backing)
                backing_format = disk_format_from_string(img.info(*disk.backing).format);
            std::filesystem::create_directories(disk.file.parent_path(), ec);
            img.create(disk.file, disk.format, disk.size, disk.backing, backing_format,
                       disk.encryption);
            created.push_back(disk.file);
        }
    } catch (...) {
        remove_created_disks(created);
        throw;
    }
    return created;
}

void remove_created_disks(const std::vector<std::filesystem::path>& created) noexcept {
    for (const auto& file : created) {
        std::error_code ignored;
        std::filesystem::remove(file, ignored);
    }
}

} // namespace qmpkit::launcher
