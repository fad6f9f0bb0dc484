#include <qmpkit/qmp/encoder.hpp>

#include <boost/json/serialize.hpp>
#include <boost/json/value.hpp>

namespace qmpkit::qmp {

std::string encode_command(std::string_view name, const boost::json::object& arguments,
                           std::uint64_t id, bool out_of_band) {
    boost::json::object command;
    command[out_of_band ? "exec-oob" : "execute"] = name;
    if (!arguments.empty())
        command["arguments"] = arguments;
    command["id"] = id;
    auto text = boost::json::serialize(command);
    text.push_back('\n');
    return text;
}

} // namespace qmpkit::qmp
