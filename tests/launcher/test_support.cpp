#include "launcher/test_support.hpp"

#include <qmpkit/launcher/definition_loader.hpp>
#include <qmpkit/launcher/definition_validator.hpp>
#include <qmpkit/launcher/error.hpp>

#include <cstdlib>
#include <fstream>
#include <stdexcept>
#include <system_error>

namespace qmpkit::launcher::test {

temp_dir::temp_dir() {
    auto pattern = (std::filesystem::temp_directory_path() / "qmpkit-test-XXXXXX").string();
    if (::mkdtemp(pattern.data()) == nullptr)
        throw std::system_error(errno, std::generic_category(), "mkdtemp");
    path_ = pattern;
}

temp_dir::~temp_dir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
}

std::filesystem::path temp_dir::write(std::string_view name, std::string_view content) const {
    auto p = path_ / name;
    std::filesystem::create_directories(p.parent_path());
    std::ofstream out(p, std::ios::binary | std::ios::trunc);
    out << content;
    if (!out)
        throw std::runtime_error("cannot write " + p.string());
    return p;
}

scoped_env::scoped_env(std::string name, std::optional<std::string> value)
    : name_(std::move(name)) {
    if (const char* old = std::getenv(name_.c_str()))
        saved_ = old;
    if (value)
        ::setenv(name_.c_str(), value->c_str(), 1);
    else
        ::unsetenv(name_.c_str());
}

scoped_env::~scoped_env() {
    if (saved_)
        ::setenv(name_.c_str(), saved_->c_str(), 1);
    else
        ::unsetenv(name_.c_str());
}

std::vector<diagnostic> problems_of(std::string_view yaml, const std::filesystem::path& origin) {
    try {
        auto def = load_definition_from_string(yaml, origin);
        return check_definition(def);
    } catch (const error& e) {
        return e.diagnostics();
    }
}

std::filesystem::path source_dir() {
    if (const char* dir = std::getenv("QMPKIT_SOURCE_DIR"))
        return dir;
    return std::filesystem::path(__FILE__).parent_path().parent_path().parent_path();
}

} // namespace qmpkit::launcher::test
