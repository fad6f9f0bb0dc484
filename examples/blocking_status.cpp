// The blocking facade: connect to a qemu's QMP socket, print its version and status, and show
// that errors carry qemu's error class.
//
//   qemu-system-x86_64 -S -display none -qmp unix:/tmp/qmp.sock,server=on,wait=off &
//   ./blocking_status /tmp/qmp.sock

#include <qmpkit/qmp/client.hpp>

#include <boost/json/serialize.hpp>

#include <iostream>

int main(int argc, char** argv) {
    if (argc != 2) {
        std::cerr << "usage: blocking_status QMP-SOCKET\n";
        return 2;
    }
    try {
        qmpkit::qmp::client qmp;
        qmp.connect(argv[1]);
        std::cout << "qemu " << qmp.server_greeting().version_string() << "\n";
        std::cout << "status: " << boost::json::serialize(qmp.execute("query-status")) << "\n";
        std::cout << "has snapshot-save: " << std::boolalpha << qmp.has_command("snapshot-save")
                  << "\n";

        try {
            qmp.execute("device_del", {{"id", "no-such-device"}});
        } catch (const qmpkit::qmp::error& e) {
            std::cout << "expected error: " << e.diag().error_class << ": " << e.diag().description
                      << "\n";
        }
    } catch (const qmpkit::qmp::error& e) {
        std::cerr << "error: " << e.what() << "\n";
        return 1;
    }
}
