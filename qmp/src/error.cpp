#include <qmpkit/qmp/error.hpp>

namespace qmpkit::qmp {
namespace {

class category_impl final : public boost::system::error_category {
public:
    const char* name() const noexcept override { return "qmp"; }

    std::string message(int ev) const override {
        switch (static_cast<errc>(ev)) {
        case errc::protocol_error:
            return "the peer sent something that is not QMP";
        case errc::message_too_large:
            return "a QMP message exceeded the size limit";
        case errc::command_failed:
            return "qemu refused the command";
        case errc::hmp_error:
            return "the human monitor command failed";
        case errc::negotiation_failed:
            return "QMP capabilities negotiation failed";
        case errc::disconnected:
            return "the QMP connection closed (qemu quit or died)";
        case errc::closed:
            return "the QMP client was closed";
        case errc::not_connected:
            return "the QMP client is not connected";
        case errc::timeout:
            return "the QMP operation timed out";
        case errc::cancelled:
            return "the QMP operation was cancelled";
        case errc::fd_passing_failed:
            return "passing a file descriptor to qemu failed";
        }
        return "unknown qmp error";
    }
};

std::string describe(const boost::system::error_code& code, const diagnostics& diag) {
    std::string text;
    if (!diag.command.empty())
        text = diag.command + ": ";
    if (!diag.error_class.empty())
        text += diag.error_class + ": ";
    text += diag.description.empty() ? code.message() : diag.description;
    return text;
}

} // namespace

const boost::system::error_category& qmp_category() noexcept {
    static const category_impl instance;
    return instance;
}

error::error(boost::system::error_code code, diagnostics diag)
    : std::runtime_error(describe(code, diag))
    , code_(code)
    , diag_(std::move(diag)) {}

} // namespace qmpkit::qmp
