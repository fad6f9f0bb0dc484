#pragma once

// Readable tables for people; --json for programs.

#include <boost/json/object.hpp>
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

// --print-plan of the operations that have a plan (snapshot create, revert, delete; reset).
inline constexpr const char* print_plan_help =
    "print the steps it would take, as JSON, and do nothing: QMP commands as they would be sent "
    "({\"execute\", \"arguments\"}), qemu-img calls, qemu stopped and started, the journal and "
    "records written; after the same checks, which refuse the same way";
void print_plan(const std::vector<boost::json::object>& steps);

} // namespace qmpkit::cli
