#pragma once

#include <qmpkit/launcher/diagnostic.hpp>
#include <qmpkit/launcher/vm_definition.hpp>

#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace qmpkit::launcher::test {

// A fresh directory under the system temp dir, removed with everything in it at scope exit.
class temp_dir {
public:
    temp_dir();
    ~temp_dir();
    temp_dir(const temp_dir&) = delete;
    temp_dir& operator=(const temp_dir&) = delete;

    const std::filesystem::path& path() const noexcept { return path_; }
    std::filesystem::path operator/(std::string_view name) const { return path_ / name; }

    // Creates (or overwrites) a file below the directory, making parent directories.
    std::filesystem::path write(std::string_view name, std::string_view content = "x") const;

private:
    std::filesystem::path path_;
};

// Sets (or, with nullopt, unsets) an environment variable for the scope, then restores it.
class scoped_env {
public:
    scoped_env(std::string name, std::optional<std::string> value);
    ~scoped_env();
    scoped_env(const scoped_env&) = delete;
    scoped_env& operator=(const scoped_env&) = delete;

private:
    std::string name_;
    std::optional<std::string> saved_;
};

// The diagnostics of loading and then validating yaml (empty when it is a good definition).
std::vector<diagnostic> problems_of(std::string_view yaml, const std::filesystem::path& origin);

// The checkout's source tree, from the QMPKIT_SOURCE_DIR ctest sets.
std::filesystem::path source_dir();

} // namespace qmpkit::launcher::test
