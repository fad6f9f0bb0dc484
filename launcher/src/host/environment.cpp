#include "host/environment.hpp"

#include <algorithm>
#include <string_view>

extern char** environ;

namespace qmpkit::launcher::detail {

std::vector<std::string> build_environment(const environment_additions& additions) {
    std::vector<std::string> env;
    for (char** e = environ; e && *e; ++e) {
        std::string_view entry(*e);
        auto name = entry.substr(0, entry.find('='));
        bool replaced = std::any_of(additions.begin(), additions.end(),
                                    [&](const auto& a) { return a.first == name; });
        if (!replaced)
            env.emplace_back(entry);
    }
    for (const auto& [name, value] : additions)
        env.push_back(name + "=" + value);
    return env;
}

std::vector<char*> c_strings(std::vector<std::string>& strings) {
    std::vector<char*> out;
    out.reserve(strings.size() + 1);
    for (auto& s : strings)
        out.push_back(s.data());
    out.push_back(nullptr);
    return out;
}

} // namespace qmpkit::launcher::detail
