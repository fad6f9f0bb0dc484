// disk create | info | convert | check — qemu-img's everyday steps, with qmpkit's safety:
// nothing is replaced, nothing is left half-written.

#include "command_arguments.hpp"
#include "context.hpp"
#include "exit_codes.hpp"
#include "output.hpp"

#include <qmpkit/launcher/qemu_img.hpp>
#include <qmpkit/launcher/size.hpp>

#include <boost/json.hpp>

#include <iostream>

namespace qmpkit::cli {
namespace {

namespace json = boost::json;
using launcher::disk_format;

disk_format format_named(const std::string& name) {
    auto f = launcher::disk_format_from_string(name);
    if (!f)
        throw std::invalid_argument("format must be qcow2 or raw, not '" + name + "'");
    return *f;
}

// qemu-img would fail too, but naming the temporary file it was given: name the directory.
void require_directory_for(const std::string& file) {
    const auto dir = std::filesystem::absolute(file).parent_path();
    if (!std::filesystem::is_directory(dir))
        throw std::invalid_argument("cannot create '" + file + "': directory " + dir.string() +
                                    " does not exist");
}

json::object info_json(const launcher::image_info& i) {
    json::object o{
        {"filename", i.filename.string()}, {"format", i.format}, {"virtual_size", i.virtual_size}};
    if (i.actual_size)
        o["actual_size"] = *i.actual_size;
    if (i.cluster_size)
        o["cluster_size"] = *i.cluster_size;
    if (i.backing_file)
        o["backing_file"] = *i.backing_file;
    if (i.backing_format)
        o["backing_format"] = *i.backing_format;
    if (i.corrupt)
        o["corrupt"] = *i.corrupt;
    json::array snaps;
    for (const auto& s : i.snapshots)
        snaps.push_back({{"id", s.id},
                         {"name", s.name},
                         {"vm_state_size", s.vm_state_size},
                         {"date_sec", s.date_sec},
                         {"vm_clock_sec", s.vm_clock_sec}});
    o["snapshots"] = std::move(snaps);
    return o;
}

void print_info(const launcher::image_info& i) {
    std::vector<std::pair<std::string, std::string>> rows{
        {"image", i.filename.string()},
        {"format", i.format},
        {"virtual size", launcher::format_size(i.virtual_size) + " (" +
                             std::to_string(i.virtual_size) + " bytes)"}};
    if (i.actual_size)
        rows.emplace_back("disk size", launcher::format_size(*i.actual_size));
    if (i.cluster_size)
        rows.emplace_back("cluster size", std::to_string(*i.cluster_size));
    if (i.backing_file)
        rows.emplace_back("backing file",
                          *i.backing_file +
                              (i.backing_format ? " (" + *i.backing_format + ")" : ""));
    if (i.corrupt && *i.corrupt)
        rows.emplace_back("corrupt", "yes");
    std::cout << key_values(rows);
    if (!i.snapshots.empty()) {
        std::cout << "Snapshot list:\n";
        table t({"ID", "TAG", "VM SIZE", "DATE", "VM CLOCK"});
        for (const auto& s : i.snapshots) {
            std::time_t when = static_cast<std::time_t>(s.date_sec);
            char date[32];
            std::strftime(date, sizeof date, "%Y-%m-%d %H:%M:%S", std::localtime(&when));
            t.add({s.id, s.name, launcher::format_size(s.vm_state_size), date,
                   std::to_string(s.vm_clock_sec) + "." +
                       std::to_string(s.vm_clock_nsec / 1000000) + " s"});
        }
        std::cout << t.str();
    }
}

} // namespace

void register_disk_commands(CLI::App& app, context& ctx) {
    auto* disk =
        app.add_subcommand("disk", "Create, inspect, convert and check disk images (qemu-img)");
    disk->require_subcommand(1);

    struct create_options {
        std::string file, size, format = "qcow2", backing, key_file;
        bool encrypt = false;
        int iter_time = 0;
    };
    auto c = std::make_shared<create_options>();
    auto* create =
        disk->add_subcommand("create", "Create an image (never replaces an existing file)");
    create->add_option("file", c->file, "image to create")->required();
    create->add_option("size", c->size, "size, e.g. 1G (may be left out with --backing)");
    create->add_option("-f,--format", c->format, "qcow2 or raw")->capture_default_str();
    create->add_option("-b,--backing", c->backing, "backing image (qcow2 only)");
    auto* encrypt = create->add_flag("--encrypt", c->encrypt,
                                     "encrypt the contents (qcow2 LUKS); needs --key-file");
    create
        ->add_option("--key-file", c->key_file,
                     "the passphrase: this file's whole content (keep it mode 0600)")
        ->check(CLI::ExistingFile)
        ->needs(encrypt);
    create
        ->add_option("--iter-time", c->iter_time,
                     "milliseconds spent deriving the key, paid at every open (default 2000)")
        ->check(CLI::Range(1, 600000))
        ->needs(encrypt);
    create->callback([&ctx, c] {
        ctx.action = [&ctx, c] {
            std::optional<std::uint64_t> size;
            if (!c->size.empty())
                size = parse_size_argument("size", c->size);
            std::optional<std::filesystem::path> backing;
            std::optional<disk_format> backing_format;
            const launcher::qemu_img img;
            if (!c->backing.empty()) {
                backing = c->backing;
                backing_format = img.info(*backing).known_format();
            } else if (!size) {
                throw std::invalid_argument("give a size, or a backing image to take it from");
            }
            std::optional<launcher::disk_encryption> encryption;
            if (c->encrypt) {
                if (c->key_file.empty())
                    throw std::invalid_argument("--encrypt needs --key-file");
                encryption = launcher::disk_encryption{launcher::encryption_format::luks,
                                                       std::filesystem::absolute(c->key_file)};
            }
            std::optional<std::chrono::milliseconds> iter_time;
            if (c->iter_time > 0)
                iter_time = std::chrono::milliseconds(c->iter_time);
            require_directory_for(c->file);
            img.create(c->file, format_named(c->format), size, backing, backing_format, encryption,
                       iter_time);
            if (ctx.json)
                print_json(info_json(img.info(c->file)));
            else
                std::cout << "created " << c->file << "\n";
            return exit_code::ok;
        };
    });

    auto i = std::make_shared<std::pair<std::string, bool>>("", false);
    auto* info = disk->add_subcommand(
        "info", "Show an image: format, sizes, backing file, internal snapshots");
    info->add_option("file", i->first, "image")->required()->check(existing_file());
    info->add_flag("--backing-chain", i->second, "also every image below it");
    info->callback([&ctx, i] {
        ctx.action = [&ctx, i] {
            const launcher::qemu_img img;
            auto chain = i->second ? img.info_chain(i->first) : std::vector{img.info(i->first)};
            if (ctx.json) {
                json::array all;
                for (const auto& x : chain)
                    all.push_back(info_json(x));
                print_json(i->second ? json::value(all) : all.front());
            } else {
                for (std::size_t n = 0; n < chain.size(); ++n) {
                    if (n)
                        std::cout << "\n";
                    print_info(chain[n]);
                }
            }
            return exit_code::ok;
        };
    });

    struct convert_options {
        std::string in, out, out_format = "qcow2", in_format;
    };
    auto v = std::make_shared<convert_options>();
    auto* convert =
        disk->add_subcommand("convert", "Copy an image into a new one of another format "
                                        "(e.g. raw to qcow2); the original is untouched");
    convert->add_option("input", v->in, "source image")->required()->check(existing_file());
    convert->add_option("output", v->out, "new image")->required();
    convert->add_option("-O,--output-format", v->out_format, "qcow2 or raw")->capture_default_str();
    convert->add_option("-f,--input-format", v->in_format, "source format (default: probed)");
    convert->callback([&ctx, v] {
        ctx.action = [&ctx, v] {
            std::optional<disk_format> in_format;
            if (!v->in_format.empty())
                in_format = format_named(v->in_format);
            const launcher::qemu_img img;
            require_directory_for(v->out);
            img.convert(v->in, v->out, format_named(v->out_format), in_format);
            if (ctx.json)
                print_json(info_json(img.info(v->out)));
            else
                std::cout << "converted " << v->in << " to " << v->out << " (" << v->out_format
                          << "); " << v->in << " is unchanged\n";
            return exit_code::ok;
        };
    });

    auto k = std::make_shared<std::string>();
    auto check_key = std::make_shared<std::string>();
    auto* check = disk->add_subcommand("check", "Check an image's consistency (qemu-img check)");
    check->add_option("file", *k, "image")->required()->check(existing_file());
    check->add_option("--key-file", *check_key, "the passphrase of an encrypted image")
        ->check(CLI::ExistingFile);
    check->callback([&ctx, k, check_key] {
        ctx.action = [&ctx, k, check_key] {
            std::optional<launcher::disk_encryption> key;
            if (!check_key->empty())
                key = launcher::disk_encryption{launcher::encryption_format::luks,
                                                std::filesystem::absolute(*check_key)};
            auto r = launcher::qemu_img().check(*k, key);
            if (ctx.json)
                print_json(json::object{{"clean", r.clean()},
                                        {"corruptions", r.corruptions},
                                        {"leaks", r.leaks},
                                        {"check_errors", r.check_errors}});
            else
                std::cout << *k << ": " << (r.clean() ? "no errors" : "")
                          << (r.corruptions ? std::to_string(r.corruptions) + " corruptions " : "")
                          << (r.leaks ? std::to_string(r.leaks) + " leaked clusters " : "")
                          << (r.check_errors ? std::to_string(r.check_errors) + " check errors"
                                             : "")
                          << "\n";
            return r.clean() ? exit_code::ok : exit_code::failed;
        };
    });
}

} // namespace qmpkit::cli
