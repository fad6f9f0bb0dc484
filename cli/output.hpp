#pragma once

// Readable tables for people; --json for programs.

#include <boost/json/value.hpp>

#include <string>
#include <vector>

namespace qmpkit::cli {

class table {
public:
    explicit table(std::vector<std::string> headers);
    void add(std::vector<std::string> row);
    std::string str() const;

private:
    std::vector<std::string> headers_;
    std::vector<std::vector<std::string>> rows_;
};

// "key: value" lines with the keys aligned, like virsh dominfo.
std::string key_values(const std::vector<std::pair<std::string, std::string>>& pairs);

void print_json(const boost::json::value& value);

} // namespace qmpkit::cli
