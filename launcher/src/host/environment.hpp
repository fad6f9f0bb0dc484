#pragma once

// Private. The environment a child program starts with: this process's, with some variables
// added or replaced. Built before fork or posix_spawn, since the child may not allocate.

#include <string>
#include <utility>
#include <vector>

namespace qmpkit::launcher::detail {

using environment_additions = std::vector<std::pair<std::string, std::string>>;

// "NAME=value" for each variable of this process's environment, the additions replacing
// variables of the same name.
std::vector<std::string> build_environment(const environment_additions& additions);

// argv/envp form: pointers into `strings`, then a null pointer.
std::vector<char*> c_strings(std::vector<std::string>& strings);

} // namespace qmpkit::launcher::detail
