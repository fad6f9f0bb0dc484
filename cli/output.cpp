#include "json_output.hpp"
#include "output.hpp"

#include <algorithm>
#include <iostream>

namespace qmpkit::cli {

table::table(std::vector<std::string> headers)
    : headers_(std::move(headers)) {}

void table::add(std::vector<std::string> row) {
    row.resize(headers_.size());
    rows_.push_back(std::move(row));
}

std::string table::str() const {
    std::vector<std::size_t> width(headers_.size());
    for (std::size_t c = 0; c < headers_.size(); ++c) {
        width[c] = headers_[c].size();
        for (const auto& row : rows_)
            width[c] = std::max(width[c], row[c].size());
    }
    std::string out;
    auto line = [&](const std::vector<std::string>& cells) {
        std::string text;
        for (std::size_t c = 0; c < cells.size(); ++c) {
            text += cells[c];
            if (c + 1 < cells.size())
                text += std::string(width[c] - cells[c].size() + 2, ' ');
        }
        while (!text.empty() && text.back() == ' ')
            text.pop_back();
        out += text + "\n";
    };
    line(headers_);
    std::size_t total = 0;
    for (auto w : width)
        total += w + 2;
    out += std::string(total > 2 ? total - 2 : total, '-') + "\n";
    for (const auto& row : rows_)
        line(row);
    return out;
}

std::string key_values(const std::vector<std::pair<std::string, std::string>>& pairs) {
    std::size_t width = 0;
    for (const auto& [k, v] : pairs)
        width = std::max(width, k.size());
    std::string out;
    for (const auto& [k, v] : pairs)
        out += k + ":" + std::string(width - k.size() + 2, ' ') + v + "\n";
    return out;
}

void print_json(const boost::json::value& value) {
    std::cout << format_json(value) << "\n";
}

void print_plan(const std::vector<boost::json::object>& steps) {
    boost::json::array plan;
    for (const auto& step : steps)
        plan.push_back(step);
    print_json(plan);
}

} // namespace qmpkit::cli
