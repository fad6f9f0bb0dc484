#include "../qmp_jobs.hpp"
#include "../vm_context.hpp"
#include "plan_host.hpp"

namespace qmpkit::snapshot::detail {

plan_host real_host() {
    plan_host h;
    h.image_info = [img = launcher::qemu_img()](const std::filesystem::path& p) {
        return img.info(p);
    };
    h.image_chain = [img = launcher::qemu_img()](const std::filesystem::path& p) {
        return img.info_chain(p);
    };
    h.exists = [](const std::filesystem::path& p) { return std::filesystem::exists(p); };
    h.new_id = [] { return hex_id(); };
    h.job_id = [](const std::string& what) { return make_job_id(what); };
    return h;
}

} // namespace qmpkit::snapshot::detail
