#include "processes.hpp"

#include <qmpkit/launcher/qemu_process.hpp>

#include <filesystem>
#include <fstream>

namespace qmpkit::test {

namespace fs = std::filesystem;

int processes_mentioning(const std::string& needle, const std::string& program) {
    int count = 0;
    for (const auto& entry : fs::directory_iterator("/proc")) {
        const auto name = entry.path().filename().string();
        if (name.find_first_not_of("0123456789") != std::string::npos)
            continue;
        const auto args = launcher::process_command_line(std::stoi(name));
        std::string stat_text;
        std::ifstream stat(entry.path() / "stat");
        std::getline(stat, stat_text);
        const auto close = stat_text.rfind(')');
        const bool zombie = close != std::string::npos && close + 2 < stat_text.size() &&
                            stat_text[close + 2] == 'Z';
        const std::string argv0 = args.substr(0, args.find('\0'));
        if (!zombie && args.find(needle) != std::string::npos &&
            argv0.find(program) != std::string::npos)
            ++count;
    }
    return count;
}

} // namespace qmpkit::test
