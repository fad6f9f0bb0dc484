#include "command_arguments.hpp"

#include <qmpkit/launcher/error.hpp>
#include <qmpkit/launcher/size.hpp>

#include <boost/json/parse.hpp>

#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <sys/stat.h>

namespace qmpkit::cli {

boost::json::object parse_command_arguments(const std::vector<std::string>& words) {
    boost::json::object arguments;
    if (words.size() == 1 && !words[0].empty() && words[0].front() == '{') {
        boost::system::error_code ec;
        auto value = boost::json::parse(words[0], ec);
        if (ec || !value.is_object())
            throw std::invalid_argument("arguments '" + words[0] + "' are not a JSON object" +
                                        (ec ? " (" + ec.message() + ")" : ""));
        return value.get_object();
    }
    for (const auto& word : words) {
        const auto eq = word.find('=');
        if (eq == std::string::npos || eq == 0)
            throw std::invalid_argument("argument '" + word +
                                        "' is not key=value or a JSON object");
        const auto key = word.substr(0, eq);
        const auto text = word.substr(eq + 1);
        if (arguments.contains(key))
            throw std::invalid_argument("argument '" + key + "' given twice");
        boost::system::error_code ec;
        auto value = boost::json::parse(text, ec);
        // Bare words such as a device name stay strings; "null" would be surprising as a value.
        if (ec || text.empty() || value.is_null())
            arguments[key] = text;
        else
            arguments[key] = std::move(value);
    }
    return arguments;
}

const CLI::Validator& non_negative_number() {
    static const CLI::Validator check(
        [](std::string& text) -> std::string {
            char* end = nullptr;
            const double value = std::strtod(text.c_str(), &end);
            if (end == text.c_str() || *end != '\0')
                return {};
            if (value < 0)
                return "must not be negative, got " + text;
            if (!std::isfinite(value) || value > 1e9)
                return "must be at most 1000000000, got " + text;
            return {};
        },
        "NUMBER >= 0");
    return check;
}

const CLI::Validator& existing_file() {
    static const CLI::Validator check(
        [](std::string& path) -> std::string {
            struct stat st {};
            if (::stat(path.c_str(), &st) != 0)
                return "cannot use " + path + ": " + std::strerror(errno);
            if (S_ISDIR(st.st_mode))
                return path + " is a directory, not a file";
            return {};
        },
        "FILE");
    return check;
}

std::uint64_t parse_size_argument(std::string_view option, const std::string& text) {
    try {
        return launcher::parse_size(text);
    } catch (const launcher::error& e) {
        throw std::invalid_argument(std::string(option) + ": " + e.what());
    }
}

} // namespace qmpkit::cli
