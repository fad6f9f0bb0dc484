#pragma once

// Private: what a plan may ask of the host while it is made — the images' headers, whether a file
// exists, fresh names — as functions, so that plans are built without touching anything and
// tested with made-up answers.

#include <qmpkit/launcher/qemu_img.hpp>

#include <filesystem>
#include <functional>
#include <string>

namespace qmpkit::snapshot::detail {

struct plan_host {
    // qemu-img info (read-only, -U).
    std::function<launcher::image_info(const std::filesystem::path&)> image_info;
    // qemu-img info --backing-chain: the image first, then down to the base.
    std::function<std::vector<launcher::image_info>(const std::filesystem::path&)> image_chain;
    std::function<bool(const std::filesystem::path&)> exists;
    // A short random hex id, for block node and overlay file names.
    std::function<std::string()> new_id;
    // A job id "qmpkit-<what>-..." (the resolution of an interrupted operation finds its jobs by
    // that prefix).
    std::function<std::string(const std::string& what)> job_id;
};

// The real host: qemu-img, the file system, the kernel's random numbers, the clock.
plan_host real_host();

} // namespace qmpkit::snapshot::detail
