#include <qmpkit/launcher/accel.hpp>

#include <fcntl.h>
#include <fstream>
#include <sstream>
#include <unistd.h>

namespace qmpkit::launcher {

accel_probe probe_host() {
    accel_probe probe;
    if (std::ifstream in("/proc/cpuinfo"); in) {
        std::ostringstream text;
        text << in.rdbuf();
        probe.cpuinfo = text.str();
    }
    // Opening is the real test: the device may exist while this user lacks the kvm group.
    int fd = ::open("/dev/kvm", O_RDWR | O_CLOEXEC);
    if (fd >= 0) {
        probe.kvm_usable = true;
        ::close(fd);
    }
    return probe;
}

bool has_hardware_virtualization(std::string_view cpuinfo) noexcept {
    while (!cpuinfo.empty()) {
        auto end = cpuinfo.find('\n');
        auto line = cpuinfo.substr(0, end);
        cpuinfo = end == std::string_view::npos ? std::string_view{} : cpuinfo.substr(end + 1);

        auto colon = line.find(':');
        if (colon == std::string_view::npos)
            continue;
        auto key = line.substr(0, colon);
        while (!key.empty() && (key.back() == ' ' || key.back() == '\t'))
            key.remove_suffix(1);
        if (key != "flags")
            continue;

        auto flags = line.substr(colon + 1);
        std::size_t pos = 0;
        while (pos < flags.size()) {
            auto start = flags.find_first_not_of(" \t", pos);
            if (start == std::string_view::npos)
                break;
            auto stop = flags.find_first_of(" \t", start);
            auto flag = flags.substr(start, stop - start);
            if (flag == "vmx" || flag == "svm")
                return true;
            pos = stop == std::string_view::npos ? flags.size() : stop;
        }
    }
    return false;
}

accel_mode resolve_accel(accel_mode requested, const accel_probe& probe) noexcept {
    if (requested != accel_mode::automatic)
        return requested;
    return has_hardware_virtualization(probe.cpuinfo) && probe.kvm_usable ? accel_mode::kvm
                                                                          : accel_mode::tcg;
}

accel_mode resolve_accel(accel_mode requested) {
    if (requested != accel_mode::automatic)
        return requested;
    return resolve_accel(requested, probe_host());
}

} // namespace qmpkit::launcher
