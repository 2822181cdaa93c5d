#include "daemon/config.h"

#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <random>

#include <fmt/format.h>
#include <CLI/CLI.hpp>
#include <toml.hpp>

namespace lego::daemon {
namespace fs = std::filesystem;

namespace {

// Values read from the cluster file, applied as defaults before flags are parsed.
Status ApplyFile(const std::string& path, const std::string& section, DaemonConfig* c,
                 std::string* capacity) {
  toml::value file;
  try {
    file = toml::parse(path);
  } catch (const std::exception& e) {
    return InvalidArgument(fmt::format("config file {}: {}", path, e.what()));
  }
  try {
    auto apply = [&](const toml::value& t) -> Status {
      if (!t.is_table()) return Status::Ok();
      for (const auto& [key, v] : t.as_table()) {
        if (key == "gm") {
          auto hp = ParseHostPort(v.as_string().str);
          if (!hp.ok()) return InvalidArgument(fmt::format("{}: gm: {}", path, hp.status().message()));
          c->gm = hp.value();
        } else if (key == "listen") {
          auto hp = ParseHostPort(v.as_string().str, true);
          if (!hp.ok()) return InvalidArgument(fmt::format("{}: listen: {}", path, hp.status().message()));
          c->listen = hp.value();
        } else if (key == "data_dir") {
          c->data_dir = v.as_string().str;
        } else if (key == "capacity") {
          *capacity = v.is_integer() ? std::to_string(v.as_integer()) : v.as_string().str;
        } else if (key == "metrics") {
          c->metrics_listen = v.as_string().str;
        } else if (key == "heartbeat_interval_ms") {
          c->heartbeat_interval_ms = static_cast<uint32_t>(v.as_integer());
        } else if (key == "heartbeat_misses") {
          c->heartbeat_misses = static_cast<uint32_t>(v.as_integer());
        } else if (key == "log_level") {
          c->log_level = v.as_string().str;
        } else if (key == "transports") {
          c->ucx_transports = v.as_string().str;
        } else if (key == "placement") {
          c->placement = v.as_string().str;
        } else if (key == "eviction") {
          c->eviction = v.as_string().str;
        } else if (key == "prefetch") {
          c->prefetch = v.as_boolean();
        } else if (key == "buffer_cache") {
          c->buffer_cache = v.is_integer() ? std::to_string(v.as_integer()) : v.as_string().str;
        } else if (key == "flush_interval_ms") {
          c->flush_interval_ms = static_cast<uint32_t>(v.as_integer());
        } else if (key == "storage_timeout_ms") {
          c->storage_timeout_ms = static_cast<uint32_t>(v.as_integer());
        } else if (key == "name") {
          c->name = v.as_string().str;
        } else if (!v.is_table()) {
          return InvalidArgument(fmt::format("{}: unknown key '{}'", path, key));
        }
      }
      return Status::Ok();
    };
    if (file.contains("cluster")) LEGO_RETURN_IF_ERROR(apply(toml::find(file, "cluster")));
    if (file.contains(section)) LEGO_RETURN_IF_ERROR(apply(toml::find(file, section)));
  } catch (const std::exception& e) {
    return InvalidArgument(fmt::format("config file {}: {}", path, e.what()));
  }
  return Status::Ok();
}

}  // namespace

Status ParseDaemonConfig(const KindDefaults& d, int argc, char** argv, DaemonConfig* c, bool* exit_now) {
  *exit_now = false;
  c->kind = d.kind;
  const std::string kind_name(proto::ComponentKindName(d.kind));
  std::string capacity = d.default_capacity ? d.default_capacity : "0";

  // Pre-scan for --config/--section so that the file supplies defaults that flags then override.
  std::string config_path, section = kind_name;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto value = [&](const std::string& flag, std::string* out) {
      if (a == flag && i + 1 < argc)
        *out = argv[i + 1];
      else if (a.rfind(flag + "=", 0) == 0)
        *out = a.substr(flag.size() + 1);
    };
    value("--config", &config_path);
    value("--section", &section);
  }
  if (!config_path.empty()) LEGO_RETURN_IF_ERROR(ApplyFile(config_path, section, c, &capacity));

  CLI::App app(d.description, "lego-" + kind_name);
  app.set_version_flag("--version", "lego 0.1.0");
  std::string listen = c->listen.ToString(), gm = c->gm.port ? c->gm.ToString() : "";
  app.add_option("--config", config_path, "TOML cluster file ([cluster] and [" + kind_name + "] tables)");
  app.add_option("--section", section, "table of the cluster file to read for this daemon")
      ->capture_default_str();
  app.add_option("--listen", listen, "address to serve on, HOST:PORT (port 0 picks a free one)")
      ->capture_default_str();
  if (d.kind != proto::ComponentKind::kGm)
    app.add_option("--gm", gm, "global manager address, HOST:PORT (required)");
  app.add_option("--name", c->name, "stable member name (default: kept in DATA_DIR/identity)");
  app.add_option("--data-dir", c->data_dir, "directory for this daemon's state (created if missing)")
      ->required(c->data_dir.empty());
  if (d.capacity_flag) app.add_option(d.capacity_flag, capacity, d.capacity_help)->capture_default_str();
  app.add_option("--metrics", c->metrics_listen, "Prometheus HTTP address HOST:PORT, or 'off'")
      ->capture_default_str();
  if (d.kind == proto::ComponentKind::kGm) {
    app.add_option("--heartbeat-interval-ms", c->heartbeat_interval_ms, "how often members must heartbeat")
        ->capture_default_str()
        ->check(CLI::Range(10u, 60000u));
    app.add_option("--heartbeat-misses", c->heartbeat_misses, "missed heartbeats before a member is dead")
        ->capture_default_str()
        ->check(CLI::Range(1u, 1000u));
    app.add_option("--placement", c->placement, "vRegion placement policy: most-free or round-robin")
        ->capture_default_str()
        ->check(CLI::IsMember({"most-free", "round-robin"}));
  }
  if (d.kind == proto::ComponentKind::kPmon) {
    app.add_option("--eviction", c->eviction,
                   "ExCache eviction policy: fifo, or clock (an LRU approximation)")
        ->capture_default_str()
        ->check(CLI::IsMember({"fifo", "clock"}));
    app.add_option("--prefetch", c->prefetch, "prefetch sequential and strided misses (true|false)")
        ->capture_default_str();
  }
  if (d.kind == proto::ComponentKind::kMmon) {
    app.add_option("--buffer-cache", c->buffer_cache,
                   "storage buffer cache for the vNodes this mmon serves (e.g. 64M); 0 turns it off")
        ->capture_default_str();
    app.add_option("--flush-interval-ms", c->flush_interval_ms,
                   "how often dirty buffer-cache data is written to the smons")
        ->capture_default_str()
        ->check(CLI::Range(10u, 3600000u));
  }
  if (d.kind == proto::ComponentKind::kMmon || d.kind == proto::ComponentKind::kPmon) {
    app.add_option("--storage-timeout-ms", c->storage_timeout_ms,
                   "a file request whose storage monitor stays silent this long fails with EIO")
        ->capture_default_str()
        ->check(CLI::Range(100u, 600000u));
  }
  app.add_option("--log-level", c->log_level, "trace|debug|info|warn|error")
      ->capture_default_str()
      ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error"}));
  app.add_option("--ready-file", c->ready_file,
                 "write the bound address here once serving (used by `lego up`)");
  app.add_option("--transports", c->ucx_transports, "UCX transports (UCX_TLS), default: UCX chooses");
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    std::cout << app.help();
    *exit_now = true;
    return Status::Ok();
  } catch (const CLI::CallForVersion& e) {
    std::cout << "lego 0.1.0\n";
    *exit_now = true;
    return Status::Ok();
  } catch (const CLI::ParseError& e) {
    return InvalidArgument(fmt::format("{} (see lego-{} --help)", e.what(), kind_name));
  }

  auto hp = ParseHostPort(listen, /*allow_zero=*/true);
  if (!hp.ok()) return InvalidArgument("--listen: " + hp.status().message());
  c->listen = hp.value();
  if (d.kind != proto::ComponentKind::kGm) {
    if (gm.empty())
      return InvalidArgument(fmt::format("--gm HOST:PORT is required (see lego-{} --help)", kind_name));
    auto g = ParseHostPort(gm);
    if (!g.ok()) return InvalidArgument("--gm: " + g.status().message());
    c->gm = g.value();
  }
  if (d.capacity_flag) {
    auto cap = ParseSize(capacity);
    if (!cap.ok()) return InvalidArgument(fmt::format("{}: {}", d.capacity_flag, cap.status().message()));
    c->capacity = cap.value();
  }
  if (auto bc = ParseSize(c->buffer_cache); !bc.ok())
    return InvalidArgument("--buffer-cache: " + bc.status().message());
  if (c->metrics_listen != "off") {
    auto m = ParseHostPort(c->metrics_listen, true);
    if (!m.ok()) return InvalidArgument("--metrics: " + m.status().message());
  }
  return Status::Ok();
}

Result<std::string> LoadOrCreateIdentity(const DaemonConfig& c) {
  // The identity lives in the data dir, so that a daemon restarted on the same data rejoins as itself.
  // A --name flag sets (and replaces) it.
  fs::path p = fs::path(c.data_dir) / "identity";
  std::string name;
  if (c.name.empty()) {
    std::ifstream in(p);
    if (in && std::getline(in, name) && !name.empty()) return name;
    std::random_device rd;
    name = fmt::format("{}-{:08x}", proto::ComponentKindName(c.kind), rd());
  } else {
    name = c.name;
    std::ifstream in(p);
    std::string old;
    if (in && std::getline(in, old) && old == name) return name;
  }
  LEGO_RETURN_IF_ERROR(WriteFileAtomic(p.string(), name + "\n"));
  return name;
}

}  // namespace lego::daemon
