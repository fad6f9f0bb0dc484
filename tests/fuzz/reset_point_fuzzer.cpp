// Fuzzes the reader of reset points (reset/<name>/point.json in a VM's state directory), which
// `qmpkit reset` and `qmpkit reset-point list` read without a running VM.
//
// Input: the text of point.json. It is written to a scratch state directory made once per
// process, and vm_reset::points() reads it.
//
// Invariant: points() returns the point or throws snapshot::error of kind metadata_corrupt that
// names the file; nothing else is thrown, nothing crashes.

#include "fuzz_check.hpp"

#include <qmpkit/snapshot/error.hpp>
#include <qmpkit/snapshot/vm_reset.hpp>

#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <unistd.h>

namespace {

namespace fs = std::filesystem;
namespace snapshot = qmpkit::snapshot;
using qmpkit::fuzz::check;

struct scratch {
    fs::path root;
    fs::path file;

    scratch() {
        std::string pattern = (fs::temp_directory_path() / "qmpkit-fuzz-XXXXXX").string();
        check(::mkdtemp(pattern.data()) != nullptr, "mkdtemp");
        root = pattern;
        fs::create_directories(root / "vm" / "reset" / "p1");
        file = root / "vm" / "reset" / "p1" / "point.json";
    }
    ~scratch() {
        std::error_code ignored;
        fs::remove_all(root, ignored);
    }
};

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    static scratch dir;
    {
        std::ofstream out(dir.file, std::ios::binary | std::ios::trunc);
        out.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
        check(out.good(), "writing point.json");
    }
    snapshot::manager_options options;
    options.state_root = dir.root;
    try {
        const auto points = snapshot::vm_reset("vm", options).points();
        check(points.size() == 1, "one point.json, not one reset point");
    } catch (const snapshot::error& e) {
        check(e.kind() == snapshot::error_kind::metadata_corrupt, "an error of another kind");
        check(std::string(e.what()).find(dir.file.string()) != std::string::npos,
              "an error that does not name the file");
    }
    return 0;
}
