#include "command_arguments.hpp"

#include <boost/json/parse.hpp>

#include <stdexcept>

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

} // namespace qmpkit::cli
