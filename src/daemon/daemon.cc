#include "daemon/daemon.h"

#include <poll.h>
#include <signal.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <thread>

#include <fmt/format.h>

#include "common/log.h"
#include "daemon/member_agent.h"

namespace lego::daemon {
namespace fs = std::filesystem;

namespace {
// LEGO_EXIT_WITH_PID=PID: stop, as on SIGTERM, once process PID has ended. The test harness sets it to its
// own pid, so that a test killed by its timeout (which never gets to run `lego down`) leaves no daemons
// running. Needs SIGTERM blocked (the main thread sigwaits for it).
void StopWithOwner() {
  const char* s = getenv("LEGO_EXIT_WITH_PID");
  if (!s || !*s) return;
  char* end = nullptr;
  const long owner = strtol(s, &end, 10);
  if (*end != 0 || owner <= 0) {
    LEGO_LOG_WARN("exit_with_pid_ignored value=\"{}\": not a pid", s);
    return;
  }
  auto stop = [owner] {
    LEGO_LOG_WARN("owner_exited pid={}: stopping (LEGO_EXIT_WITH_PID)", owner);
    kill(getpid(), SIGTERM);  // pending until the main thread's sigwait takes it
  };
  const int fd = static_cast<int>(syscall(SYS_pidfd_open, static_cast<pid_t>(owner), 0));
  if (fd < 0) {
    if (errno == ESRCH) return stop();  // gone already
    LEGO_LOG_WARN("exit_with_pid_ignored pid={} err={}", owner, strerror(errno));
    return;
  }
  std::thread([fd, stop] {
    pollfd p{fd, POLLIN, 0};
    while (poll(&p, 1, -1) < 0 && errno == EINTR) {
    }
    stop();
  }).detach();
}
}  // namespace

int RunDaemon(const KindDefaults& defaults, int argc, char** argv, Component component) {
  const std::string kind_name(proto::ComponentKindName(defaults.kind));
  DaemonConfig config;
  bool exit_now = false;
  Status st = ParseDaemonConfig(defaults, argc, argv, &config, &exit_now);
  if (!st.ok()) {
    fmt::print(stderr, "lego-{}: {}\n", kind_name, st.message());
    return 2;
  }
  if (exit_now) return 0;

  InitLogging(kind_name, config.log_level);
  // Signals are taken synchronously by the main thread only: block them before any thread starts.
  sigset_t sigs;
  sigemptyset(&sigs);
  sigaddset(&sigs, SIGTERM);
  sigaddset(&sigs, SIGINT);
  sigaddset(&sigs, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &sigs, nullptr);
  signal(SIGPIPE, SIG_IGN);
  StopWithOwner();

  auto fail = [&](const Status& s) {
    LEGO_LOG_ERROR("start_failed error=\"{}\"", s.ToString());
    fmt::print(stderr, "lego-{}: {}\n", kind_name, s.ToString());
    return 1;
  };

  std::error_code ec;
  fs::create_directories(config.data_dir, ec);
  if (ec || access(config.data_dir.c_str(), W_OK) != 0)
    return fail(IoError(fmt::format("data dir {} is not a writable directory: {}", config.data_dir,
                                    ec ? ec.message() : std::strerror(errno))));
  auto name = LoadOrCreateIdentity(config);
  if (!name.ok()) return fail(name.status());

  Metrics metrics;
  if (config.metrics_listen != "off") {
    auto port = metrics.StartHttp(config.metrics_listen);
    if (!port.ok()) return fail(port.status());
  }
  metrics.Gauge("lego_capacity_bytes", "Configured capacity").Set(static_cast<double>(config.capacity));
  auto& g_used = metrics.Gauge("lego_used_bytes", "Bytes in use");

  msg::MessengerOptions mo;
  mo.name = kind_name;
  mo.kind = defaults.kind;
  mo.metrics = &metrics;
  mo.ucx_transports = config.ucx_transports;
  if (const char* s = getenv("LEGO_SPIN_US")) mo.spin_us = atoi(s);  // tuning experiments
  auto messenger = msg::Messenger::Create(mo);
  if (!messenger.ok()) return fail(messenger.status());
  msg::Messenger& m = *messenger.value();
  st = m.Listen(config.listen);
  if (!st.ok()) return fail(st);

  std::atomic<MemberAgent*> agent_now{nullptr};  // for used_changed: set once the agent runs
  DaemonContext ctx{config, metrics, m, name.value(), [&agent_now] {
                      if (MemberAgent* a = agent_now.load(std::memory_order_acquire)) a->HeartbeatSoon();
                    }};
  if (component.setup) {
    st = component.setup(ctx);
    if (!st.ok()) return fail(st);
  }
  auto used = [&component, &g_used]() -> uint64_t {
    uint64_t u = component.used_bytes ? component.used_bytes() : 0;
    g_used.Set(static_cast<double>(u));
    return u;
  };
  // Heartbeats refresh lego_used_bytes once an interval; a read (`lego stats`, a scrape) refreshes it too,
  // so that right after a program exits it does not still show the program's pages.
  const uint64_t used_hook = metrics.OnCollect([used] { used(); });
  st = m.Start();
  if (!st.ok()) return fail(st);
  if (component.start) component.start(ctx);

  std::unique_ptr<MemberAgent> agent;
  if (defaults.kind != proto::ComponentKind::kGm) {
    MemberInfo info{defaults.kind, name.value(), m.listen_address().ToString(), metrics.http_port(),
                    config.capacity};
    agent = std::make_unique<MemberAgent>(m, config.gm, info, used);
    agent->Start();
    agent_now.store(agent.get(), std::memory_order_release);
  }
  // Stops what started above, in reverse order: used on SIGTERM, and if the ready file cannot be written.
  auto stop = [&] {
    agent_now.store(nullptr, std::memory_order_release);
    if (agent) agent->Stop();
    metrics.RemoveCollectHook(used_hook);  // what used_bytes reads goes away in stop()
    if (component.stop) component.stop();
    m.Shutdown();
  };
  if (!config.ready_file.empty()) {
    st = WriteFileAtomic(config.ready_file,
                         fmt::format("listen={}\nmetrics_port={}\npid={}\n", m.listen_address().ToString(),
                                     metrics.http_port(), getpid()));
    if (!st.ok()) {
      stop();
      return fail(st);
    }
  }
  LEGO_LOG_INFO("started kind={} name={} listen={} metrics_port={} data_dir={} capacity={} gm={}", kind_name,
                name.value(), m.listen_address().ToString(), metrics.http_port(), config.data_dir,
                config.capacity, defaults.kind == proto::ComponentKind::kGm ? "-" : config.gm.ToString());

  int sig = 0;
  sigwait(&sigs, &sig);
  LEGO_LOG_INFO("stopping signal={}", strsignal(sig));
  stop();
  if (!config.ready_file.empty()) std::remove(config.ready_file.c_str());
  LEGO_LOG_INFO("stopped");
  return 0;
}

}  // namespace lego::daemon
