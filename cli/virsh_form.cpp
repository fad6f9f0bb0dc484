#include "virsh_form.hpp"

#include <iostream>

namespace qmpkit::cli {

virsh_form::virsh_form(CLI::App* cmd)
    : cmd_(cmd) {}

std::size_t virsh_form::add_argument(const std::string& positional,
                                     const std::vector<std::string>& named, const std::string& help,
                                     bool required) {
    auto a = std::make_unique<argument>();
    a->positional = positional;
    a->required = required;
    std::string also;
    for (const auto& n : named)
        also += (also.empty() ? " (or " : ", ") + n;
    if (!also.empty())
        also += ")";
    a->positional_option = cmd_->add_option(positional, a->positional_value, help + also);
    a->named.reserve(named.size());
    for (const auto& n : named) {
        a->named.emplace_back(nullptr, std::string());
        a->named.back().first = cmd_->add_option(
            n, a->named.back().second, help + " (virsh's spelling of " + positional + ")");
    }
    arguments_.push_back(std::move(a));
    return arguments_.size() - 1;
}

void virsh_form::add_note_flag(const std::string& flag, const std::string& text,
                               const std::string& help) {
    auto n = std::make_unique<note>();
    n->text = flag + " " + text;
    n->option = cmd_->add_flag(flag, help)->group("virsh compatibility");
    notes_.push_back(std::move(n));
}

void virsh_form::add_note_option(const std::string& option, const std::string& text,
                                 const std::string& help) {
    auto n = std::make_unique<note>();
    n->text = option + " " + text;
    n->option = cmd_->add_option(option, n->value, help)->group("virsh compatibility");
    notes_.push_back(std::move(n));
}

void virsh_form::finish() {
    // CLI11 fills the positionals in order: the words given are those of the first `words`.
    std::vector<std::string> words;
    for (const auto& a : arguments_)
        if (a->positional_option->count() > 0)
            words.push_back(a->positional_value);
    std::vector<argument*> unnamed;
    for (const auto& a : arguments_) {
        a->given = false;
        a->value.clear();
        std::string from;
        for (const auto& [option, value] : a->named) {
            if (option->count() == 0)
                continue;
            if (a->given && value != a->value)
                throw CLI::ValidationError(a->positional + " is given twice: as " + from + " '" +
                                           a->value + "' and as " + option->get_name() + " '" +
                                           value + "'");
            a->given = true;
            a->value = value;
            from = option->get_name();
        }
        if (!a->given)
            unnamed.push_back(a.get());
    }
    if (words.size() <= unnamed.size()) {
        for (std::size_t i = 0; i < words.size(); ++i) {
            unnamed[i]->value = words[i];
            unnamed[i]->given = true;
        }
    } else {
        for (std::size_t i = 0; i < words.size(); ++i) {
            auto& a = *arguments_[i];
            if (!a.given) {
                a.value = words[i];
                a.given = true;
                continue;
            }
            if (a.value != words[i]) {
                std::string named;
                for (const auto& [option, value] : a.named)
                    if (option->count() > 0)
                        named = option->get_name();
                throw CLI::ValidationError(a.positional + " is given twice: as '" + words[i] +
                                           "' and as " + named + " '" + a.value + "'");
            }
        }
    }
    for (const auto& a : arguments_)
        if (a->required && !a->given)
            throw CLI::RequiredError(a->positional);
    for (const auto& n : notes_)
        if (n->option->count() > 0)
            print_note(n->text);
}

const std::string& virsh_form::value(std::size_t index) const {
    return arguments_.at(index)->value;
}

bool virsh_form::given(std::size_t index) const {
    return arguments_.at(index)->given;
}

void print_note(const std::string& text) {
    std::cerr << "qmpkit: note: " << text << "\n";
}

} // namespace qmpkit::cli
