#include "device_state.hpp"
#include "memory_state.hpp"

#include <qmpkit/snapshot/error.hpp>

#include <boost/json.hpp>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <fcntl.h>
#include <unistd.h>

namespace qmpkit::snapshot::detail {

namespace json = boost::json;
namespace fs = std::filesystem;
using namespace std::chrono_literals;

// Loads a reset point's device state into a qemu waiting with -incoming defer. The MIGRATION
// event says when it is done, sooner than polling would.
void arm_for_device_state(qmp::client& qmp) {
    qmp.execute("migrate-set-capabilities",
                {{"capabilities", json::array{{{"capability", "x-ignore-shared"}, {"state", true}},
                                              {{"capability", "events"}, {"state", true}}}}});
}

void load_device_state(qmp::client& qmp, const fs::path& file, bool armed) {
    if (!armed)
        arm_for_device_state(qmp);
    auto migration = qmp.listen({"MIGRATION"});
    const int fd = ::open(file.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        throw error(error_kind::other,
                    "cannot open the device state " + file.string() + ": " + std::strerror(errno));
    try {
        qmp.send_fd("qmpkit-device-state", fd);
    } catch (...) {
        ::close(fd);
        throw;
    }
    ::close(fd);
    qmp.execute("migrate-incoming", {{"uri", "fd:qmpkit-device-state"}});
    const auto deadline = std::chrono::steady_clock::now() + 60s;
    for (;;) {
        const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
            deadline - std::chrono::steady_clock::now());
        if (left.count() <= 0)
            throw error(error_kind::timeout,
                        "loading the device state " + file.string() + " took over a minute");
        auto e = qmp.wait_event(migration, left);
        if (!e)
            continue;
        const auto status = std::string(e->data.at("status").as_string());
        if (status == "completed") {
            // The capability is recorded in every later migration stream, internal snapshots
            // included: one taken with it on loads only into a qemu that has it on too.
            detail::ignore_shared_ram(qmp, false);
            return;
        }
        if (status == "failed" || status == "cancelled") {
            std::string why;
            try {
                const auto info = qmp.execute("query-migrate").as_object();
                if (const auto* d = info.if_contains("error-desc"))
                    why = ": " + std::string(d->as_string());
            } catch (const std::exception&) {
            }
            throw error(error_kind::other,
                        "loading the device state " + file.string() + " " + status + why);
        }
    }
}

} // namespace qmpkit::snapshot::detail
