// lego: the user's entry point to a Lego cluster. See `lego --help`.
#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <CLI/CLI.hpp>

#include "cli/commands.h"
#include "cli/local_cluster.h"
#include "cli/run.h"
#include "cli/vnode.h"
#include "common/log.h"

int main(int argc, char** argv) {
  using namespace lego;
  CLI::App app(
      "lego: run programs on disaggregated memory, storage and processors (a LegoOS for stock Linux).\n"
      "State of the local cluster lives in $LEGO_STATE_DIR (default: $XDG_RUNTIME_DIR/lego or "
      "/tmp/lego-UID).",
      "lego");
  app.set_version_flag("--version", "lego 0.1.0");
  app.require_subcommand(1);
  std::string state_dir = cli::DefaultStateDir();
  std::string log_level = "warn";
  app.add_option("--state-dir", state_dir, "state directory of the local cluster")->capture_default_str();
  app.add_option("--cli-log-level", log_level,
                 "log level of the CLI's own messaging (debug shows UCX connections)")
      ->capture_default_str();

  cli::UpOptions up;
  std::string mmon_cap = "1G", excache = "256M", smon_cap = "10G";
  auto* up_cmd =
      app.add_subcommand("up", "start the embedded local cluster (1 gm, 1 pmon, 2 mmon, 1 smon on loopback)");
  up_cmd->add_option("--gm-port", up.gm_port, "gm port on 127.0.0.1 (0: a free port)")->capture_default_str();
  up_cmd->add_option("--mmon-capacity", mmon_cap, "memory pool of each mmon")->capture_default_str();
  up_cmd->add_option("--mmons", up.mmons, "number of memory monitors")
      ->capture_default_str()
      ->check(CLI::Range(1, 16));
  up_cmd->add_option("--excache", excache, "ExCache budget of the pmon")->capture_default_str();
  up_cmd->add_option("--smon-capacity", smon_cap, "disk quota of the smon")->capture_default_str();
  std::string buffer_cache = "64M";
  up_cmd->add_option("--buffer-cache", buffer_cache, "storage buffer cache of each mmon (0: off)")
      ->capture_default_str();
  up_cmd
      ->add_option("--eviction", up.eviction,
                   "the pmon's ExCache eviction policy: fifo, or clock (LRU approximation)")
      ->capture_default_str()
      ->check(CLI::IsMember({"fifo", "clock"}));
  up_cmd
      ->add_option("--prefetch", up.prefetch,
                   "the pmon prefetches sequential and strided misses (true|false)")
      ->capture_default_str();
  up_cmd->add_option("--heartbeat-interval-ms", up.heartbeat_interval_ms, "member heartbeat interval")
      ->capture_default_str()
      ->check(CLI::Range(10u, 60000u));
  up_cmd->add_option("--heartbeat-misses", up.heartbeat_misses, "missed heartbeats before a member is dead")
      ->capture_default_str()
      ->check(CLI::Range(1u, 1000u));
  up_cmd->add_option("--timeout", up.timeout_s, "seconds to wait for every daemon to register")
      ->capture_default_str()
      ->check(CLI::Range(1, 600));
  up_cmd->add_option("--log-level", up.log_level, "daemons' log level")
      ->capture_default_str()
      ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error"}));
  up_cmd->add_option("--transports", up.transports,
                     "UCX transports for the daemons (UCX_TLS); default: UCX chooses");

  cli::QueryOptions q;
  int member_id = -1;
  int down_timeout = 10;
  auto* status_cmd =
      app.add_subcommand("status", "show every component of the cluster and whether it is alive");
  status_cmd->add_flag("--json", q.json, "print JSON: a list of components");
  status_cmd->add_option("--gm", q.gm, "ask this gm (HOST:PORT) instead of the local cluster's");
  auto* stats_cmd = app.add_subcommand("stats", "show every component's counters");
  stats_cmd->add_flag("--json", q.json, "print JSON");
  stats_cmd->add_option("--gm", q.gm, "ask this gm (HOST:PORT) instead of the local cluster's");
  stats_cmd->add_option("--id", member_id, "only this member id (see `lego status`)");
  auto* down_cmd = app.add_subcommand("down", "stop the local cluster and remove its state directory");
  down_cmd->add_option("--timeout", down_timeout, "seconds to wait for daemons to stop before SIGKILL")
      ->capture_default_str()
      ->check(CLI::Range(1, 600));

  std::string restart_name;
  bool restart_kill = false;
  int restart_timeout = 30;
  auto* restart_cmd = app.add_subcommand(
      "restart",
      "stop one component of the local cluster (if it runs) and start it again with the same flags, data "
      "dir and log; waits until it has registered with the gm again. For failure experiments: "
      "`kill -9` a component, watch what survives, then bring it back");
  restart_cmd
      ->add_option("name", restart_name, "the component, as `lego status` names it: gm, pmon-0, mmon-1 ...")
      ->required();
  restart_cmd->add_flag("--kill", restart_kill, "stop it with SIGKILL (a crash) instead of SIGTERM");
  restart_cmd->add_option("--timeout", restart_timeout, "seconds to wait for it to stop, and to register")
      ->capture_default_str()
      ->check(CLI::Range(1, 600));

  std::string reclaim_name;
  auto* reclaim_cmd = app.add_subcommand(
      "reclaim",
      "free the remote memory left by a process monitor that is gone for good (a lost host): every address "
      "space it created, on every memory monitor. A pmon restarted with its data dir does this by itself");
  reclaim_cmd->add_option("name", reclaim_name, "the process monitor, as `lego status` names it: pmon-0 ...")
      ->required();
  reclaim_cmd->add_option("--gm", q.gm, "ask this gm (HOST:PORT) instead of the local cluster's");
  bool reclaim_force = false;
  reclaim_cmd->add_flag("--force", reclaim_force,
                        "also for a name the gm does not list (a gm that lost its data dir): make sure every "
                        "live process monitor shows in `lego status` first");

  cli::RunOptions run;
  std::string run_excache;
  auto* run_cmd = app.add_subcommand(
      "run",
      "run an unmodified, dynamically linked program with its memory on the cluster's memory monitors "
      "(usage: lego run [OPTIONS] -- PROGRAM [ARGS...]). stdin/stdout/stderr, signals and the exit status "
      "are the program's");
  run_cmd->add_option("--excache", run_excache,
                      "cap on this program's ExCache (local memory caching its remote memory), e.g. 64M; "
                      "default: only the pmon's budget");
  run_cmd->add_option("--pmon-socket", run.pmon_socket,
                      "the process monitor's local socket (default: the local cluster's pmon-0)");
  run_cmd->add_option("--pmon", run.pmon,
                      "member name of that process monitor (see `lego status`), which mounts the vNode; "
                      "default: the first alive pmon");
  run_cmd->add_flag("--stats", run.stats, "print the program's memory statistics to stderr when it ends");
  run_cmd->add_flag("--stats-json", run.stats_json, "like --stats, as JSON");
  run_cmd->add_option("--vnode", run.vnode,
                      "the vNode to run in: the program starts in its storage mount (also in "
                      "$LEGO_VNODE_ROOT); default: the vNode 'default', created on first use");
  run_cmd->add_flag("--keep-cwd", run.keep_cwd,
                    "start the program in the current directory rather than the vNode's mount");
  run_cmd->add_option("--gm", run.gm, "the cluster's gm (HOST:PORT); default: the local cluster's");
  run_cmd->add_option("program", run.argv, "the program and its arguments")->required();
  run_cmd->prefix_command(false);

  bool ps_all = false;
  auto* ps_cmd = app.add_subcommand("ps", "list the processes running under Lego with their memory");
  ps_cmd->add_flag("--json", q.json, "print JSON");
  ps_cmd->add_flag("--all", ps_all, "include processes that ended recently");
  ps_cmd->add_option("--gm", q.gm, "ask this gm (HOST:PORT) instead of the local cluster's");
  int top_interval_ms = 1000, top_iterations = 0;
  auto* top_cmd = app.add_subcommand("top", "a live view of the processes running under Lego");
  top_cmd->add_option("--interval-ms", top_interval_ms, "refresh period")
      ->capture_default_str()
      ->check(CLI::Range(100, 60000));
  top_cmd->add_option("-n,--iterations", top_iterations, "stop after N refreshes (0: until Ctrl-C)")
      ->capture_default_str();
  top_cmd->add_option("--gm", q.gm, "ask this gm (HOST:PORT) instead of the local cluster's");

  auto* vnode_cmd = app.add_subcommand(
      "vnode",
      "manage vNodes: a user's virtual node, with its own storage (files kept by a storage monitor)");
  vnode_cmd->require_subcommand(1);
  std::string vnode_name;
  std::string vnode_smon;
  bool vnode_force = false;
  auto* vcreate =
      vnode_cmd->add_subcommand("create", "create a vNode and place its storage on a storage monitor");
  vcreate->add_option("name", vnode_name, "letters, digits, '.', '_', '-'; at most 64")->required();
  vcreate->add_option("--smon", vnode_smon,
                      "the storage monitor: its name or member id (see `lego status`); default: "
                      "the alive smon with the fewest vNodes");
  vcreate->add_option("--gm", q.gm, "ask this gm (HOST:PORT) instead of the local cluster's");
  auto* vls = vnode_cmd->add_subcommand("ls", "list vNodes with their storage placement and processes");
  vls->add_flag("--json", q.json, "print JSON");
  vls->add_option("--gm", q.gm, "ask this gm (HOST:PORT) instead of the local cluster's");
  auto* vrm = vnode_cmd->add_subcommand("rm", "remove a vNode and delete its files");
  vrm->add_option("name", vnode_name, "the vNode")->required();
  vrm->add_flag("--force", vnode_force, "remove it even while processes run in it");
  vrm->add_option("--gm", q.gm, "ask this gm (HOST:PORT) instead of the local cluster's");

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;  // usage errors exit 2, like the daemons
  }
  InitLogging("lego", log_level);
  q.state_dir = state_dir;
  up.state_dir = state_dir;

  if (*up_cmd) {
    for (auto [text, out, flag] : {std::tuple{&mmon_cap, &up.mmon_capacity, "--mmon-capacity"},
                                   std::tuple{&excache, &up.excache, "--excache"},
                                   std::tuple{&smon_cap, &up.smon_capacity, "--smon-capacity"}}) {
      auto v = ParseSize(*text);
      if (!v.ok() || v.value() == 0) {
        fmt::print(stderr, "lego up: {}: {}\n", flag, v.ok() ? "must be positive" : v.status().message());
        return 2;
      }
      *out = v.value();
    }
    auto bc = ParseSize(buffer_cache);
    if (!bc.ok()) {
      fmt::print(stderr, "lego up: --buffer-cache: {}\n", bc.status().message());
      return 2;
    }
    up.buffer_cache = bc.value();
    return cli::Up(up);
  }
  if (*run_cmd) {
    if (!run_excache.empty()) {
      auto v = ParseSize(run_excache);
      if (!v.ok() || v.value() < (256u << 10)) {
        fmt::print(stderr, "lego run: --excache: {}\n",
                   v.ok() ? "must be at least 256K" : v.status().message());
        return 2;
      }
      run.excache = v.value();
    }
    run.state_dir = state_dir;
    run.stats = run.stats || run.stats_json;
    return cli::RunCommand(run);
  }
  if (*vcreate) return cli::VnodeCreateCommand(q, vnode_name, vnode_smon);
  if (*vls) return cli::VnodeListCommand(q);
  if (*vrm) return cli::VnodeRemoveCommand(q, vnode_name, vnode_force);
  if (*ps_cmd) return cli::PsCommand(q, ps_all);
  if (*top_cmd) return cli::TopCommand(q, top_interval_ms, top_iterations);
  if (*status_cmd) return cli::StatusCommand(q);
  if (*stats_cmd) return cli::StatsCommand(q, member_id);
  if (*down_cmd) return cli::Down(state_dir, down_timeout);
  if (*restart_cmd) return cli::Restart(state_dir, restart_name, restart_kill, restart_timeout);
  if (*reclaim_cmd) return cli::ReclaimCommand(q, reclaim_name, reclaim_force);
  return 2;
}
