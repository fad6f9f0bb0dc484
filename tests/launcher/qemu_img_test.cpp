#include <qmpkit/launcher/error.hpp>
#include <qmpkit/launcher/qemu_img.hpp>
#include <qmpkit/launcher/subprocess.hpp>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <bare_qemu.hpp>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <ctime>
#include <fcntl.h>
#include <filesystem>
#include <fstream>
#include <poll.h>
#include <set>
#include <sys/stat.h>
#include <unistd.h>

// Real qemu-img on small images in a temp directory; no guest. The in-use tests also start a
// bare qemu-system-x86_64 holding an image.

namespace qmpkit::launcher {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using ::testing::HasSubstr;

constexpr std::uint64_t mib = 1024 * 1024;

bool have(const std::string& program) {
    return run({"sh", "-c", "command -v \"$0\" >/dev/null", program}).ok();
}

std::string read_all(const fs::path& p) {
    std::ifstream in(p, std::ios::binary);
    std::string data(fs::file_size(p), '\0');
    in.read(data.data(), static_cast<std::streamsize>(data.size()));
    data.resize(static_cast<std::size_t>(in.gcount()));
    return data;
}

void write_at(const fs::path& p, std::uint64_t offset, const std::string& bytes) {
    int fd = ::open(p.c_str(), O_WRONLY | O_CLOEXEC);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(::pwrite(fd, bytes.data(), bytes.size(), static_cast<off_t>(offset)),
              static_cast<ssize_t>(bytes.size()));
    ::close(fd);
}

std::set<std::string> names_in(const fs::path& dir) {
    std::set<std::string> names;
    for (const auto& entry : fs::directory_iterator(dir))
        names.insert(entry.path().filename().string());
    return names;
}

template <class F>
error expect_error(F f) {
    try {
        f();
    } catch (const error& e) {
        return e;
    }
    ADD_FAILURE() << "no launcher::error thrown";
    return error("none");
}

// qemu-io -c 'write -P PATTERN 0 64k' (or read, which fails on a pattern mismatch).
bool qemu_io(const fs::path& image, const std::string& command) {
    return run({"qemu-io", "-f", "qcow2", "-c", command, image.string()}).ok();
}

// Sets the refcount of cluster 0 (the header) in a fresh qcow2: 2 makes a leak, 0 a corruption.
void set_header_refcount(const fs::path& image, std::uint16_t refcount) {
    std::string data = read_all(image);
    auto be64 = [&](std::size_t at) {
        std::uint64_t v = 0;
        for (int i = 0; i < 8; ++i)
            v = (v << 8) | static_cast<unsigned char>(data[at + i]);
        return v;
    };
    std::uint64_t refcount_table = be64(48);
    std::uint64_t refcount_block = be64(refcount_table);
    write_at(image, refcount_block,
             std::string{static_cast<char>(refcount >> 8), static_cast<char>(refcount & 0xff)});
}

class qemu_img_test : public ::testing::Test {
protected:
    void SetUp() override {
        if (!have("qemu-img"))
            GTEST_SKIP() << "qemu-img not found: install qemu-utils (scripts/setup)";
        std::string pattern = (fs::temp_directory_path() / "qmpkit-qemu-img-XXXXXX").string();
        ASSERT_NE(::mkdtemp(pattern.data()), nullptr);
        dir_ = pattern;
    }
    void TearDown() override {
        if (!dir_.empty()) {
            std::error_code ignored;
            fs::remove_all(dir_, ignored);
        }
    }

    fs::path operator/(const std::string& name) const { return dir_ / name; }

    // A raw image of `size` bytes with recognisable data at a few places.
    fs::path patterned_raw(const std::string& name, std::uint64_t size) {
        auto p = dir_ / name;
        img_.create(p, disk_format::raw, size);
        write_at(p, 0, "first sector of " + name);
        write_at(p, 1 * mib + 12345, std::string(70000, 'q'));
        write_at(p, size - 5, "tail!");
        return p;
    }

    fs::path dir_;
    qemu_img img_;
};

TEST_F(qemu_img_test, creates_a_qcow2_image) {
    auto p = *this / "disk.qcow2";
    img_.create(p, disk_format::qcow2, 16 * mib);
    auto info = img_.info(p);
    EXPECT_EQ(info.filename, p);
    EXPECT_EQ(info.format, "qcow2");
    EXPECT_EQ(info.known_format(), disk_format::qcow2);
    EXPECT_EQ(info.virtual_size, 16 * mib);
    EXPECT_EQ(info.cluster_size, 65536u);
    ASSERT_TRUE(info.actual_size);
    EXPECT_GT(*info.actual_size, 0u);
    EXPECT_FALSE(info.backing_file);
    EXPECT_FALSE(info.backing_format);
    EXPECT_EQ(info.dirty, false);
    EXPECT_EQ(info.corrupt, false);
    EXPECT_FALSE(info.encrypted);
    EXPECT_TRUE(info.snapshots.empty());
    EXPECT_EQ(names_in(dir_), std::set<std::string>{"disk.qcow2"}) << "no temp file left";
}

TEST_F(qemu_img_test, creates_a_raw_image) {
    auto p = *this / "disk.raw";
    img_.create(p, disk_format::raw, 3 * mib);
    auto info = img_.info(p);
    EXPECT_EQ(info.format, "raw");
    EXPECT_EQ(info.virtual_size, 3 * mib);
    EXPECT_EQ(fs::file_size(p), 3 * mib);
    EXPECT_FALSE(info.cluster_size);
    EXPECT_FALSE(info.corrupt);
    EXPECT_EQ(names_in(dir_), std::set<std::string>{"disk.raw"});
}

TEST_F(qemu_img_test, new_images_are_owner_only_whatever_the_umask) {
    mode_t old = ::umask(022);
    img_.create(*this / "disk.qcow2", disk_format::qcow2, mib);
    img_.create(*this / "overlay.qcow2", disk_format::qcow2, std::nullopt, *this / "disk.qcow2");
    img_.create(*this / "disk.raw", disk_format::raw, mib);
    img_.convert(*this / "disk.raw", *this / "copy.qcow2");
    ::umask(old);
    for (const auto* name : {"disk.qcow2", "overlay.qcow2", "disk.raw", "copy.qcow2"})
        EXPECT_EQ(fs::status(*this / name).permissions(),
                  fs::perms::owner_read | fs::perms::owner_write)
            << name;
}

TEST_F(qemu_img_test, creates_an_overlay_over_a_probed_relative_backing_file) {
    img_.create(*this / "base.raw", disk_format::raw, 2 * mib);
    auto top = *this / "top.qcow2";
    // Relative to the overlay's directory, not to the working directory.
    img_.create(top, disk_format::qcow2, std::nullopt, fs::path("base.raw"));
    auto info = img_.info(top);
    EXPECT_EQ(info.virtual_size, 2 * mib) << "size taken from the backing file";
    EXPECT_EQ(info.backing_file, "base.raw");
    EXPECT_EQ(info.backing_format, "raw");
    ASSERT_TRUE(info.full_backing_file);
    EXPECT_EQ(fs::path(*info.full_backing_file), *this / "base.raw");

    auto chain = img_.info_chain(top);
    ASSERT_EQ(chain.size(), 2u);
    EXPECT_EQ(chain[0].filename, top);
    EXPECT_EQ(chain[0].format, "qcow2");
    EXPECT_EQ(chain[1].format, "raw");
    EXPECT_EQ(fs::path(chain[1].filename), *this / "base.raw");
    EXPECT_EQ(names_in(dir_), (std::set<std::string>{"base.raw", "top.qcow2"}));
}

TEST_F(qemu_img_test, creates_an_overlay_with_a_given_backing_format_and_size) {
    auto base = *this / "base.qcow2";
    img_.create(base, disk_format::qcow2, 2 * mib);
    auto top = *this / "top.qcow2";
    img_.create(top, disk_format::qcow2, 8 * mib, base, disk_format::qcow2);
    auto info = img_.info(top);
    EXPECT_EQ(info.virtual_size, 8 * mib);
    EXPECT_EQ(info.backing_file, base.string());
    EXPECT_EQ(info.backing_format, "qcow2");
    EXPECT_EQ(img_.info_chain(top).size(), 2u);
    EXPECT_EQ(img_.info_chain(base).size(), 1u);
}

TEST_F(qemu_img_test, create_refuses_to_overwrite) {
    auto p = *this / "precious.qcow2";
    std::ofstream(p) << "keep me";
    auto e = expect_error([&] { img_.create(p, disk_format::qcow2, mib); });
    EXPECT_EQ(e.kind(), error_kind::file_exists);
    EXPECT_THAT(e.what(), HasSubstr(p.string()));
    EXPECT_EQ(read_all(p), "keep me");

    // A dangling symlink is in the way too: creating through it would write elsewhere.
    fs::create_symlink(*this / "nowhere", *this / "link.qcow2");
    EXPECT_EQ(
        expect_error([&] { img_.create(*this / "link.qcow2", disk_format::qcow2, mib); }).kind(),
        error_kind::file_exists);
    EXPECT_FALSE(fs::exists(*this / "nowhere"));
}

TEST_F(qemu_img_test, create_refuses_what_makes_no_sense) {
    img_.create(*this / "base.raw", disk_format::raw, mib);
    EXPECT_EQ(expect_error([&] {
                  img_.create(*this / "x.raw", disk_format::raw, mib, *this / "base.raw");
              }).kind(),
              error_kind::invalid_argument);
    EXPECT_EQ(expect_error([&] {
                  img_.create(*this / "x.qcow2", disk_format::qcow2, std::nullopt);
              }).kind(),
              error_kind::invalid_argument);
    EXPECT_EQ(names_in(dir_), std::set<std::string>{"base.raw"});
}

TEST_F(qemu_img_test, a_failed_create_leaves_nothing_behind) {
    auto e = expect_error([&] {
        img_.create(*this / "top.qcow2", disk_format::qcow2, mib, *this / "missing.raw",
                    disk_format::raw);
    });
    EXPECT_EQ(e.kind(), error_kind::command_failed);
    EXPECT_THAT(e.what(), HasSubstr("top.qcow2"));
    EXPECT_THAT(e.what(), HasSubstr("missing.raw"));
    EXPECT_TRUE(names_in(dir_).empty());
}

TEST_F(qemu_img_test, odd_relative_names_are_not_read_as_options_or_protocols) {
    auto cwd = fs::current_path();
    fs::current_path(dir_);
    try {
        img_.create("-o:dd.qcow2", disk_format::qcow2, mib);
        img_.create("nbd:top.qcow2", disk_format::qcow2, std::nullopt, fs::path("-o:dd.qcow2"),
                    disk_format::qcow2);
        EXPECT_EQ(img_.info("nbd:top.qcow2").backing_file, "./-o:dd.qcow2");
        EXPECT_EQ(img_.info_chain("nbd:top.qcow2").size(), 2u);
    } catch (...) {
        fs::current_path(cwd);
        throw;
    }
    fs::current_path(cwd);
    EXPECT_EQ(names_in(dir_), (std::set<std::string>{"-o:dd.qcow2", "nbd:top.qcow2"}));
}

TEST_F(qemu_img_test, info_of_a_missing_image_names_it) {
    auto e = expect_error([&] { img_.info(*this / "absent.qcow2"); });
    EXPECT_EQ(e.kind(), error_kind::command_failed);
    EXPECT_THAT(e.what(), HasSubstr("absent.qcow2"));
    EXPECT_THAT(e.what(), HasSubstr("No such file or directory"));
}

TEST_F(qemu_img_test, converts_raw_to_qcow2_leaving_the_input_untouched) {
    auto in = patterned_raw("in.raw", 4 * mib);
    std::string before = read_all(in);
    auto mtime = fs::last_write_time(in);

    auto out = *this / "out.qcow2";
    img_.convert(in, out);
    EXPECT_EQ(read_all(in), before) << "input modified";
    EXPECT_EQ(fs::last_write_time(in), mtime);
    auto info = img_.info(out);
    EXPECT_EQ(info.format, "qcow2");
    EXPECT_EQ(info.virtual_size, 4 * mib);
    EXPECT_TRUE(
        run({"qemu-img", "compare", "-q", "-f", "raw", "-F", "qcow2", in.string(), out.string()})
            .ok());

    // And back, byte for byte.
    auto again = *this / "again.raw";
    img_.convert(out, again, disk_format::raw, disk_format::qcow2);
    EXPECT_EQ(read_all(again), before);
    EXPECT_EQ(names_in(dir_), (std::set<std::string>{"in.raw", "out.qcow2", "again.raw"}));
}

TEST_F(qemu_img_test, convert_flattens_a_backing_chain) {
    auto base = patterned_raw("base.raw", 2 * mib);
    auto top = *this / "top.qcow2";
    img_.create(top, disk_format::qcow2, std::nullopt, base, disk_format::raw);
    auto flat = *this / "flat.qcow2";
    img_.convert(top, flat);
    EXPECT_FALSE(img_.info(flat).backing_file);
    EXPECT_TRUE(
        run({"qemu-img", "compare", "-q", "-f", "raw", "-F", "qcow2", base.string(), flat.string()})
            .ok());
}

TEST_F(qemu_img_test, convert_refuses_the_same_file_and_an_existing_output) {
    auto in = patterned_raw("in.raw", mib);
    std::string before = read_all(in);
    EXPECT_EQ(expect_error([&] { img_.convert(in, in, disk_format::raw); }).kind(),
              error_kind::invalid_argument);
    fs::create_hard_link(in, *this / "alias.raw");
    EXPECT_EQ(expect_error([&] { img_.convert(in, *this / "alias.raw"); }).kind(),
              error_kind::invalid_argument);
    EXPECT_EQ(expect_error([&] { img_.convert(*this / "./in.raw", in); }).kind(),
              error_kind::invalid_argument);

    auto other = *this / "other.qcow2";
    std::ofstream(other) << "keep me";
    auto e = expect_error([&] { img_.convert(in, other); });
    EXPECT_EQ(e.kind(), error_kind::file_exists);
    EXPECT_THAT(e.what(), HasSubstr("other.qcow2"));
    EXPECT_EQ(read_all(other), "keep me");
    EXPECT_EQ(read_all(in), before);
}

TEST_F(qemu_img_test, a_failed_convert_leaves_no_output_and_no_temp_file) {
    auto bogus = *this / "bogus.qcow2";
    std::ofstream(bogus) << std::string(100000, 'x');
    auto e = expect_error(
        [&] { img_.convert(bogus, *this / "out.raw", disk_format::raw, disk_format::qcow2); });
    EXPECT_EQ(e.kind(), error_kind::command_failed);
    EXPECT_THAT(e.what(), HasSubstr("bogus.qcow2"));
    EXPECT_EQ(names_in(dir_), std::set<std::string>{"bogus.qcow2"});

    EXPECT_EQ(expect_error([&] { img_.convert(*this / "absent.raw", *this / "out.qcow2"); }).kind(),
              error_kind::command_failed);
    EXPECT_EQ(names_in(dir_), std::set<std::string>{"bogus.qcow2"});
}

TEST_F(qemu_img_test, offline_snapshots_roll_the_data_back) {
    auto p = *this / "disk.qcow2";
    img_.create(p, disk_format::qcow2, 4 * mib);
    bool data = have("qemu-io");
    if (!data)
        std::cout << "[   NOTE   ] qemu-io not found: checking snapshot metadata only, not that "
                     "the data is rolled back\n";
    if (data) {
        ASSERT_TRUE(qemu_io(p, "write -P 0xaa 0 64k"));
    }

    auto now = std::time(nullptr);
    img_.snapshot_create(p, "before");
    if (data) {
        ASSERT_TRUE(qemu_io(p, "write -P 0xbb 0 64k"));
    }

    auto list = img_.snapshot_list(p);
    ASSERT_EQ(list.size(), 1u);
    EXPECT_EQ(list[0].name, "before");
    EXPECT_EQ(list[0].id, "1");
    EXPECT_EQ(list[0].vm_state_size, 0u) << "disk-only";
    EXPECT_EQ(list[0].vm_clock_sec, 0);
    EXPECT_NEAR(static_cast<double>(list[0].date_sec), static_cast<double>(now), 60.0);
    EXPECT_GE(list[0].date_nsec, 0);
    EXPECT_LT(list[0].date_nsec, 1000000000);
    EXPECT_EQ(list[0].icount, 0u) << "qcow2 v3 records an instruction count";
    EXPECT_EQ(img_.info(p).snapshots, list);

    img_.snapshot_apply(p, "before");
    if (data) {
        EXPECT_TRUE(qemu_io(p, "read -P 0xaa 0 64k")) << "data not rolled back";
        EXPECT_TRUE(qemu_io(p, "read -P 0 64k 64k"));
    }
    EXPECT_EQ(img_.snapshot_list(p).size(), 1u) << "apply keeps the snapshot";

    img_.snapshot_delete(p, "before");
    EXPECT_TRUE(img_.snapshot_list(p).empty());
    if (data) {
        EXPECT_TRUE(qemu_io(p, "read -P 0xaa 0 64k")) << "delete must not touch the data";
    }
    EXPECT_TRUE(img_.check(p).clean());
}

TEST_F(qemu_img_test, a_snapshot_named_like_another_ones_id_applies_itself) {
    if (!have("qemu-io"))
        GTEST_SKIP() << "qemu-io not found (qemu-utils): cannot tell the snapshots' data apart";
    auto p = *this / "disk.qcow2";
    img_.create(p, disk_format::qcow2, mib);
    ASSERT_TRUE(qemu_io(p, "write -P 0x11 0 64k"));
    img_.snapshot_create(p, "first"); // id 1
    ASSERT_TRUE(qemu_io(p, "write -P 0x22 0 64k"));
    img_.snapshot_create(p, "1"); // id 2, named like the id of "first"
    ASSERT_TRUE(qemu_io(p, "write -P 0x33 0 64k"));

    img_.snapshot_apply(p, "1");
    EXPECT_TRUE(qemu_io(p, "read -P 0x22 0 64k"))
        << "qemu-img snapshot -a 1 would have applied \"first\"";
    img_.snapshot_delete(p, "1");
    auto list = img_.snapshot_list(p);
    ASSERT_EQ(list.size(), 1u);
    EXPECT_EQ(list[0].name, "first");
}

TEST_F(qemu_img_test, snapshot_names_are_unique) {
    auto p = *this / "disk.qcow2";
    img_.create(p, disk_format::qcow2, mib);
    img_.snapshot_create(p, "s");
    auto e = expect_error([&] { img_.snapshot_create(p, "s"); });
    EXPECT_EQ(e.kind(), error_kind::snapshot_exists);
    EXPECT_THAT(e.what(), HasSubstr("'s'"));
    EXPECT_THAT(e.what(), HasSubstr("disk.qcow2"));
    EXPECT_EQ(img_.snapshot_list(p).size(), 1u);

    // qemu-img itself accepts a duplicate; apply and delete refuse to pick one.
    ASSERT_TRUE(run({"qemu-img", "snapshot", "-c", "s", p.string()}).ok());
    ASSERT_EQ(img_.snapshot_list(p).size(), 2u);
    e = expect_error([&] { img_.snapshot_apply(p, "s"); });
    EXPECT_EQ(e.kind(), error_kind::invalid_argument);
    EXPECT_THAT(e.what(), HasSubstr("ids 1, 2"));
    EXPECT_EQ(expect_error([&] { img_.snapshot_delete(p, "s"); }).kind(),
              error_kind::invalid_argument);
    EXPECT_EQ(expect_error([&] { img_.snapshot_create(p, ""); }).kind(),
              error_kind::invalid_argument);
}

TEST_F(qemu_img_test, a_missing_snapshot_is_recognisable) {
    auto p = *this / "disk.qcow2";
    img_.create(p, disk_format::qcow2, mib);
    img_.snapshot_create(p, "there");
    for (auto f : {&qemu_img::snapshot_apply, &qemu_img::snapshot_delete}) {
        auto e = expect_error([&] { (img_.*f)(p, "not-there", std::nullopt); });
        EXPECT_EQ(e.kind(), error_kind::snapshot_not_found);
        EXPECT_THAT(e.what(), HasSubstr("'not-there'"));
        EXPECT_THAT(e.what(), HasSubstr("disk.qcow2"));
    }
    // "1" is the id of "there", not a name.
    EXPECT_EQ(expect_error([&] { img_.snapshot_apply(p, "1"); }).kind(),
              error_kind::snapshot_not_found);
}

// A LUKS-encrypted qcow2: made with a key file, read with it through --object/--image-opts, and
// the passphrase never on qemu-img's command line (a wrapper records every argument list).
TEST_F(qemu_img_test, encrypted_images_take_their_key_from_the_key_file) {
    const std::string passphrase = "pass-4c1d9e-phrase";
    auto put = [](const fs::path& file, const std::string& text) {
        std::ofstream(file, std::ios::binary) << text;
    };
    auto key = *this / "disk.key";
    put(key, passphrase);
    fs::permissions(key, fs::perms::owner_read | fs::perms::owner_write);
    auto args_log = *this / "args.log";
    auto wrapper = *this / "qemu-img-wrapper";
    put(wrapper,
        "#!/bin/sh\nprintf '%s\\n' \"$*\" >> '" + args_log.string() + "'\nexec qemu-img \"$@\"\n");
    fs::permissions(wrapper, fs::perms::owner_all);
    const qemu_img img(wrapper.string());
    const disk_encryption luks{encryption_format::luks, key};

    auto p = *this / "secret.qcow2";
    img.create(p, disk_format::qcow2, 4 * mib, std::nullopt, std::nullopt, luks, 10ms);
    auto info = img.info(p); // the header is not encrypted: no key needed
    EXPECT_TRUE(info.encrypted);
    EXPECT_EQ(info.virtual_size, 4 * mib);

    // Without the key, qemu-img cannot open it for anything else.
    EXPECT_THAT(expect_error([&] { img.snapshot_create(p, "s1"); }).what(),
                HasSubstr("key-secret"));
    img.snapshot_create(p, "s1", luks);
    ASSERT_EQ(img.snapshot_list(p).size(), 1u);
    img.snapshot_apply(p, "s1", luks);
    EXPECT_TRUE(img.check(p, luks).clean());
    img.snapshot_delete(p, "s1", luks);
    EXPECT_TRUE(img.snapshot_list(p).empty());

    // A wrong passphrase is refused, naming the image.
    auto wrong = *this / "wrong.key";
    put(wrong, "not the passphrase");
    auto e = expect_error([&] { img.check(p, disk_encryption{encryption_format::luks, wrong}); });
    EXPECT_THAT(e.what(), HasSubstr("secret.qcow2"));
    EXPECT_THAT(e.what(), HasSubstr("Invalid password"));

    // An overlay of an encrypted image is encrypted with the same key when asked to be.
    auto overlay = *this / "overlay.qcow2";
    img.create(overlay, disk_format::qcow2, std::nullopt, p, disk_format::qcow2, luks, 10ms);
    auto chain = img.info_chain(overlay);
    ASSERT_EQ(chain.size(), 2u);
    EXPECT_TRUE(chain[0].encrypted);
    EXPECT_TRUE(chain[1].encrypted);
    EXPECT_EQ(chain[0].full_backing_file, p.string());

    const auto logged = read_all(args_log);
    EXPECT_THAT(logged, HasSubstr("secret,id=qmpkit-key,format=raw,file=" + key.string()));
    EXPECT_EQ(logged.find(passphrase), std::string::npos) << logged;
}

TEST_F(qemu_img_test, snapshots_of_a_raw_image_are_unsupported) {
    auto p = *this / "disk.raw";
    img_.create(p, disk_format::raw, mib);
    auto e = expect_error([&] { img_.snapshot_create(p, "s"); });
    EXPECT_EQ(e.kind(), error_kind::unsupported);
    EXPECT_THAT(e.what(), HasSubstr("raw"));
    EXPECT_THAT(e.what(), HasSubstr("qcow2"));
    EXPECT_EQ(expect_error([&] { img_.snapshot_apply(p, "s"); }).kind(), error_kind::unsupported);
    EXPECT_EQ(expect_error([&] { img_.snapshot_delete(p, "s"); }).kind(), error_kind::unsupported);
    EXPECT_TRUE(img_.snapshot_list(p).empty());
}

TEST_F(qemu_img_test, check_of_a_fresh_image_is_clean) {
    auto p = *this / "disk.qcow2";
    img_.create(p, disk_format::qcow2, mib);
    auto c = img_.check(p);
    EXPECT_TRUE(c.clean());
    EXPECT_EQ(c.filename, p);
    EXPECT_EQ(c.format, "qcow2");
    EXPECT_EQ(c.corruptions, 0u);
    EXPECT_EQ(c.leaks, 0u);
    EXPECT_EQ(c.check_errors, 0u);
    ASSERT_TRUE(c.image_end_offset);
    EXPECT_GT(*c.image_end_offset, 0u);
    EXPECT_EQ(c.total_clusters, 16u);
}

TEST_F(qemu_img_test, check_reports_leaks_and_corruptions_as_results) {
    auto leaky = *this / "leaky.qcow2";
    img_.create(leaky, disk_format::qcow2, mib);
    set_header_refcount(leaky, 2);
    auto c = img_.check(leaky); // qemu-img exits 3
    EXPECT_FALSE(c.clean());
    EXPECT_EQ(c.leaks, 1u);
    EXPECT_EQ(c.corruptions, 0u);

    auto broken = *this / "broken.qcow2";
    img_.create(broken, disk_format::qcow2, mib);
    set_header_refcount(broken, 0);
    c = img_.check(broken); // qemu-img exits 2
    EXPECT_FALSE(c.clean());
    EXPECT_EQ(c.corruptions, 1u);
}

TEST_F(qemu_img_test, check_of_a_raw_image_is_unsupported) {
    auto p = *this / "disk.raw";
    img_.create(p, disk_format::raw, mib);
    EXPECT_EQ(expect_error([&] { img_.check(p); }).kind(), error_kind::unsupported);
    EXPECT_EQ(expect_error([&] { img_.check(*this / "absent.qcow2"); }).kind(),
              error_kind::command_failed);
}

TEST_F(qemu_img_test, an_image_held_by_a_running_qemu_is_in_use) {
    if (!test::qemu_available())
        GTEST_SKIP() << "qemu-system-x86_64 not found: install qemu-system-x86 (scripts/setup)";
    auto p = *this / "disk.qcow2";
    img_.create(p, disk_format::qcow2, mib);
    img_.snapshot_create(p, "old");

    test::bare_qemu vm({"-blockdev",
                        "driver=qcow2,node-name=d,file.driver=file,file.filename=" + p.string(),
                        "-device", "virtio-blk-pci,drive=d"});
    // qemu opens (and locks) its disks before it serves the monitor: the greeting means ready.
    int monitor = vm.take_monitor_fd();
    pollfd pfd{monitor, POLLIN, 0};
    ASSERT_EQ(::poll(&pfd, 1, 20000), 1) << "qemu did not start";
    std::array<char, 512> greeting{};
    ASSERT_GT(::read(monitor, greeting.data(), greeting.size()), 0);

    auto e = expect_error([&] { img_.snapshot_create(p, "new"); });
    EXPECT_EQ(e.kind(), error_kind::image_in_use);
    EXPECT_THAT(e.what(), HasSubstr("disk.qcow2"));
    EXPECT_THAT(e.what(), HasSubstr("in use"));
    EXPECT_EQ(expect_error([&] { img_.snapshot_apply(p, "old"); }).kind(),
              error_kind::image_in_use);
    EXPECT_EQ(expect_error([&] { img_.snapshot_delete(p, "old"); }).kind(),
              error_kind::image_in_use);
    EXPECT_EQ(expect_error([&] { img_.check(p); }).kind(), error_kind::image_in_use);
    EXPECT_EQ(expect_error([&] { img_.convert(p, *this / "copy.qcow2"); }).kind(),
              error_kind::image_in_use);
    EXPECT_FALSE(fs::exists(*this / "copy.qcow2"));

    // Reading goes through the lock (-U).
    auto info = img_.info(p);
    EXPECT_EQ(info.format, "qcow2");
    ASSERT_EQ(img_.snapshot_list(p).size(), 1u);
    EXPECT_EQ(img_.snapshot_list(p)[0].name, "old");

    ::close(monitor);
    EXPECT_EQ(names_in(dir_), std::set<std::string>{"disk.qcow2"});
}

TEST_F(qemu_img_test, a_missing_qemu_img_says_how_to_install_it) {
    qemu_img missing("qmpkit-no-such-qemu-img");
    auto e = expect_error([&] { missing.info(*this / "disk.qcow2"); });
    EXPECT_EQ(e.kind(), error_kind::program_not_found);
    EXPECT_THAT(e.what(),
                HasSubstr("qmpkit-no-such-qemu-img not found: install qemu-utils (scripts/setup)"));
    EXPECT_EQ(
        expect_error([&] { missing.create(*this / "x.qcow2", disk_format::qcow2, mib); }).kind(),
        error_kind::program_not_found);
    EXPECT_TRUE(names_in(dir_).empty());
}

TEST_F(qemu_img_test, unexpected_output_and_hangs_are_errors) {
    auto fake = *this / "fake-qemu-img";
    std::ofstream(fake) << "#!/bin/sh\n"
                           "case \"$1\" in info) echo 'not json';; *) exec sleep 30;; esac\n";
    fs::permissions(fake, fs::perms::owner_all);
    qemu_img img(fake.string(), 300ms);
    auto e = expect_error([&] { img.info(*this / "disk.qcow2"); });
    EXPECT_EQ(e.kind(), error_kind::command_failed);
    EXPECT_THAT(e.what(), HasSubstr("unexpected output"));
    e = expect_error([&] { img.check(*this / "disk.qcow2"); });
    EXPECT_EQ(e.kind(), error_kind::timed_out);
    EXPECT_THAT(e.what(), HasSubstr("300 ms"));
}

} // namespace
} // namespace qmpkit::launcher
