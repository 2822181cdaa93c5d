#include "cli/run.h"

#include "cli/vnode.h"
#include "protocol/vnode.h"

#include <elf.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <random>
#include <set>
#include <thread>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "cli/local_cluster.h"
#include "protocol/local.h"
#include "protocol/membership.h"

namespace lego::cli {
namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

// The program's path as execvp would find it.
Result<std::string> Which(const std::string& prog) {
  if (prog.find('/') != std::string::npos) return prog;
  const char* path = getenv("PATH");
  std::string p = path ? path : "/usr/local/bin:/usr/bin:/bin";
  size_t start = 0;
  while (start <= p.size()) {
    size_t end = p.find(':', start);
    if (end == std::string::npos) end = p.size();
    std::string dir = p.substr(start, end - start);
    std::string cand = (dir.empty() ? "." : dir) + "/" + prog;
    if (access(cand.c_str(), X_OK) == 0 && fs::is_regular_file(cand)) return cand;
    start = end + 1;
  }
  return NotFound(fmt::format("{}: command not found", prog));
}

Result<std::string> CheckFile(const std::string& path, int depth) {
  if (depth > 4) return InvalidArgument(fmt::format("{}: too many levels of #! interpreters", path));
  struct stat st;
  if (stat(path.c_str(), &st) != 0) return NotFound(fmt::format("{}: {}", path, strerror(errno)));
  if (!S_ISREG(st.st_mode)) return InvalidArgument(fmt::format("{}: not a regular file", path));
  if (access(path.c_str(), X_OK) != 0) return InvalidArgument(fmt::format("{}: not executable", path));
  if (st.st_mode & (S_ISUID | S_ISGID))
    return InvalidArgument(fmt::format(
        "{} is set-user-ID or set-group-ID: the loader ignores LD_PRELOAD for it, so Lego cannot capture its "
        "memory",
        path));
  std::ifstream f(path, std::ios::binary);
  char head[256] = {};
  f.read(head, sizeof head);
  const size_t n = static_cast<size_t>(f.gcount());
  if (n >= 2 && head[0] == '#' && head[1] == '!') {
    std::string line(head + 2, n - 2);
    line = line.substr(0, line.find('\n'));
    size_t b = line.find_first_not_of(" \t");
    if (b == std::string::npos) return InvalidArgument(fmt::format("{}: empty #! line", path));
    std::string interp = line.substr(b, line.find_first_of(" \t", b) - b);
    auto r = CheckFile(interp, depth + 1);
    if (!r.ok()) return r.status();
    return path;
  }
  if (n < sizeof(Elf64_Ehdr) || std::memcmp(head, ELFMAG, SELFMAG) != 0)
    return InvalidArgument(fmt::format("{}: not an ELF executable or #! script", path));
  Elf64_Ehdr eh;
  std::memcpy(&eh, head, sizeof eh);
  if (eh.e_ident[EI_CLASS] != ELFCLASS64 || eh.e_machine != EM_X86_64)
    return InvalidArgument(fmt::format("{}: not an x86-64 program", path));
  bool interp = false;
  for (int i = 0; i < eh.e_phnum && !interp; ++i) {
    Elf64_Phdr ph;
    f.clear();
    f.seekg(static_cast<std::streamoff>(eh.e_phoff + static_cast<uint64_t>(i) * eh.e_phentsize));
    if (!f.read(reinterpret_cast<char*>(&ph), sizeof ph)) break;
    interp = ph.p_type == PT_INTERP;
  }
  if (!interp)
    return InvalidArgument(fmt::format(
        "{} is statically linked: Lego captures a program's memory with a preloaded library, which a static "
        "binary never loads. Rebuild it dynamically linked",
        path));
  return path;
}

std::string PreloadPath() {
  if (const char* p = getenv("LEGO_PRELOAD")) return p;
  std::error_code ec;
  fs::path self = fs::read_symlink("/proc/self/exe", ec);
  return (self.parent_path() / "liblego_preload.so").string();
}

pid_t g_child = 0;

// Signals sent to `lego run` itself are forwarded to the program. Those the terminal sent to the whole
// foreground group (Ctrl-C: si_code SI_KERNEL) already reached the program, so they are not sent twice.
void Forward(int sig, siginfo_t* info, void*) {
  if (g_child > 0 && (info == nullptr || info->si_code != SI_KERNEL)) kill(g_child, sig);
}

std::string NewJobId() {
  std::mt19937_64 rng{std::random_device{}()};
  return fmt::format("{:012x}", rng() & 0xffffffffffffull);
}

std::string Pages(uint64_t pages) { return FormatBytes(pages * 4096); }

json ToJson(const proto::ProcessRecord& p) {
  const auto& f = p.fixed;
  return json{{"pid", f.pid},
              {"comm", p.comm},
              {"job", p.job},
              {"vnode", p.fixed.vnode},
              {"ended", (f.flags & proto::kProcessEnded) != 0},
              {"killed_why", p.killed_why},
              {"space", fmt::format("{:#x}", f.space)},
              {"resident_pages", f.resident_pages},
              {"remote_pages", f.remote_pages},
              {"excache_cap_bytes", f.cap_pages * 4096},
              {"faults", f.faults},
              {"excache_misses", f.misses},
              {"excache_hits", f.hits},
              {"zero_filled_pages", f.zero_filled},
              {"fetched_bytes", f.fetched_pages * 4096},
              {"prefetch_issued_pages", f.prefetch_issued},
              {"prefetch_used_pages", f.prefetch_used},
              {"evicted_clean_pages", f.evicted_clean},
              {"evicted_dirty_pages", f.evicted_dirty},
              {"writeback_bytes", f.writeback_pages * 4096},
              {"remote_freed_pages", f.freed_remote_pages},
              {"fault_p50_us", f.fault_p50_ns / 1000.0},
              {"fault_p99_us", f.fault_p99_ns / 1000.0},
              {"fault_service_s", f.fault_service_ms / 1000.0}};
}

void PrintOne(const std::string& who, const proto::ProcessFixed& f, bool latency) {
  fmt::print(
      stderr,
      "lego: {}: {} faults: {} ExCache misses (fetched from memory monitors), {} resolved locally "
      "({} pages zero-filled on first touch){}\n"
      "lego:   fetched {} ({} prefetched, {} of it used); evicted {} clean + {} dirty pages, wrote back {}; "
      "freed {} on memory monitors at exit\n",
      who, f.faults, f.misses, f.hits, f.zero_filled,
      latency ? fmt::format("; fault service p50 {:.1f} us, p99 {:.1f} us, {:.1f} s in all",
                            f.fault_p50_ns / 1000.0, f.fault_p99_ns / 1000.0, f.fault_service_ms / 1000.0)
              : fmt::format("; fault service {:.1f} s in all", f.fault_service_ms / 1000.0),
      Pages(f.fetched_pages), Pages(f.prefetch_issued), Pages(f.prefetch_used), f.evicted_clean,
      f.evicted_dirty, Pages(f.writeback_pages), Pages(f.freed_remote_pages));
}

// One line for the job, then its busiest processes (a shell script can fork hundreds).
void PrintJobStats(std::vector<proto::ProcessRecord> procs) {
  std::sort(procs.begin(), procs.end(), [](auto& a, auto& b) { return a.fixed.faults > b.fixed.faults; });
  if (procs.size() == 1)
    return PrintOne(fmt::format("pid {} ({})", procs[0].fixed.pid, procs[0].comm), procs[0].fixed, true);
  proto::ProcessFixed t{};
  for (auto& p : procs) {
    const auto& f = p.fixed;
    t.faults += f.faults;
    t.misses += f.misses;
    t.hits += f.hits;
    t.zero_filled += f.zero_filled;
    t.fetched_pages += f.fetched_pages;
    t.prefetch_issued += f.prefetch_issued;
    t.prefetch_used += f.prefetch_used;
    t.evicted_clean += f.evicted_clean;
    t.evicted_dirty += f.evicted_dirty;
    t.writeback_pages += f.writeback_pages;
    t.freed_remote_pages += f.freed_remote_pages;
    t.fault_service_ms = static_cast<uint32_t>(
        std::min<uint64_t>(uint64_t{t.fault_service_ms} + f.fault_service_ms, UINT32_MAX));
  }
  PrintOne(fmt::format("job of {} processes", procs.size()), t, false);
  for (size_t i = 0; i < procs.size() && i < 3; ++i)
    PrintOne(fmt::format("  pid {} ({})", procs[i].fixed.pid, procs[i].comm), procs[i].fixed, true);
}

}  // namespace

Result<std::string> CheckCapturable(const std::string& program) {
  auto path = Which(program);
  if (!path.ok()) return path.status();
  return CheckFile(*path, 0);
}

std::string PmonFailure::Describe() const {
  return fmt::format("process monitor {} {} ({})", addr,
                     answered ? "answered with an error" : "did not answer", why.message());
}

Result<std::vector<proto::ProcessRecord>> ListProcesses(msg::Messenger& m, const QueryOptions& o, bool all,
                                                        std::vector<PmonFailure>* failures,
                                                        const std::set<std::string>* skip,
                                                        std::vector<proto::MemberRecord>* dead) {
  auto pmons = AliveMembers(m, o, proto::ComponentKind::kPmon, "ps", dead);
  if (!pmons.ok()) return pmons.status();
  std::vector<proto::ProcessRecord> out;
  for (const auto& mem : *pmons) {
    if (skip && skip->count(mem.listen_addr)) continue;
    // Connect and call; a timeout or a lost connection means no answer, anything else is the pmon's.
    auto ask = [&]() -> Result<proto::Bytes> {
      auto hp = ParseHostPort(mem.listen_addr);
      if (!hp.ok()) return hp.status();
      auto ch = m.Connect(*hp, msg::Millis(o.timeout_ms));
      if (!ch.ok()) return ch.status();
      return (*ch)->Call(proto::kListProcesses, {}, msg::Millis(o.timeout_ms));
    };
    auto reply = ask();
    Result<std::vector<proto::ProcessRecord>> procs =
        reply.ok() ? proto::DecodeProcessList(*reply)
                   : Result<std::vector<proto::ProcessRecord>>(reply.status());
    const bool answered = reply.ok() || (reply.status().code() != StatusCode::kTimeout &&
                                         reply.status().code() != StatusCode::kPeerUnreachable);
    if (!procs.ok()) {
      if (failures) failures->push_back({mem.listen_addr, procs.status(), answered});
      continue;
    }
    for (auto& p : *procs)
      if (all || !(p.fixed.flags & proto::kProcessEnded)) out.push_back(std::move(p));
  }
  return out;
}

// The job's processes as the pmons report them once all have ended (a pmon frees their remote memory right
// after each exits: wait for that, up to tries x 100 ms); an empty list if no pmon can be asked. A pmon that
// cannot be asked is named once and not asked again (each try would wait for its timeout).
static std::vector<proto::ProcessRecord> JobRecords(const std::string& state_dir, const std::string& job,
                                                    int tries) {
  QueryOptions q;
  q.state_dir = state_dir;
  auto m = MakeCliMessenger();
  std::vector<proto::ProcessRecord> mine;
  std::set<std::string> skip;
  for (int i = 0; m.ok() && i < tries; ++i) {
    std::vector<PmonFailure> failures;
    auto procs = ListProcesses(**m, q, true, &failures, &skip);
    if (!procs.ok()) {
      fmt::print(stderr, "lego run: cannot ask about job {}: {}\n", job, procs.status().message());
      break;
    }
    for (const auto& f : failures) {
      fmt::print(stderr, "lego run: cannot ask about job {}: {}\n", job, f.Describe());
      skip.insert(f.addr);
    }
    mine.clear();
    bool all_ended = true;
    for (auto& p : *procs)
      if (p.job == job) {
        all_ended &= (p.fixed.flags & proto::kProcessEnded) != 0;
        mine.push_back(p);
      }
    if (!mine.empty() && all_ended) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  return mine;
}

int RunCommand(const RunOptions& o) {
  if (o.argv.empty()) {
    fmt::print(stderr, "lego run: no program given (usage: lego run [OPTIONS] -- PROGRAM [ARGS...])\n");
    return 2;
  }
  auto path = CheckCapturable(o.argv[0]);
  if (!path.ok()) {
    fmt::print(stderr, "lego run: refusing to run: {}\n", path.status().message());
    return 127;
  }
  std::string socket = o.pmon_socket;
  if (socket.empty()) {
    auto state = ReadState(o.state_dir);
    if (!state.ok()) {
      fmt::print(
          stderr,
          "lego run: no cluster is up (state dir {}). Start one with `lego up`, or pass --pmon-socket\n",
          o.state_dir);
      return 1;
    }
    socket = fmt::format("{}/data/pmon-0/pmon.sock", o.state_dir);
  }
  if (access(socket.c_str(), F_OK) != 0) {
    fmt::print(stderr, "lego run: the process monitor's socket {} does not exist: is lego-pmon running?\n",
               socket);
    return 1;
  }
  const std::string preload = PreloadPath();
  if (access(preload.c_str(), R_OK) != 0) {
    fmt::print(stderr, "lego run: the preload library {} is missing (set LEGO_PRELOAD)\n", preload);
    return 1;
  }
  const std::string job = NewJobId();
  // The vNode: the pmon mounts its storage and from now on counts this job's processes as the vNode's.
  std::string mountpoint, vnode_name;
  {
    QueryOptions q;
    q.state_dir = o.state_dir;
    q.gm = o.gm;
    auto m = MakeCliMessenger();
    auto a = m.ok() ? AttachVnode(**m, q, job, o.vnode, o.pmon) : Result<proto::AttachVnodeResp>(m.status());
    if (!a.ok()) {
      fmt::print(stderr, "lego run: cannot attach vNode '{}': {}\n", o.vnode.empty() ? "default" : o.vnode,
                 a.status().message());
      return 1;
    }
    mountpoint = a->mountpoint;
    vnode_name = a->name;
  }
  std::error_code abs_ec;
  const std::string program = std::filesystem::absolute(*path, abs_ec).string();
  if (!o.keep_cwd) {
    // The program starts in the vNode, not here: say so when an argument names a file that exists here
    // and not there (the usual surprise: `lego run -- sort data.txt`).
    for (size_t i = 1; i < o.argv.size(); ++i) {
      const std::string& a = o.argv[i];
      if (a.empty() || a[0] == '/' || a[0] == '-') continue;
      std::error_code ec;
      if (std::filesystem::exists(a, ec) &&
          !std::filesystem::exists(std::filesystem::path(mountpoint) / a, ec)) {
        fmt::print(stderr,
                   "lego run: note: '{}' exists here but not in vNode '{}', where the program starts ({}); "
                   "use an absolute path, or --keep-cwd to start here\n",
                   a, vnode_name, mountpoint);
        break;
      }
    }
  }
  std::string ld = preload;
  if (const char* old = getenv("LD_PRELOAD"); old && *old) ld += std::string(":") + old;

  struct sigaction sa {};
  sa.sa_sigaction = Forward;
  sa.sa_flags = SA_SIGINFO | SA_RESTART;
  sigemptyset(&sa.sa_mask);
  for (int sig : {SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2}) sigaction(sig, &sa, nullptr);

  std::vector<char*> argv;
  for (const auto& a : o.argv) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  pid_t child = fork();
  if (child < 0) {
    fmt::print(stderr, "lego run: fork: {}\n", strerror(errno));
    return 1;
  }
  if (child == 0) {
    struct sigaction dfl {};
    dfl.sa_handler = SIG_DFL;
    for (int sig : {SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2}) sigaction(sig, &dfl, nullptr);
    // The program lives as long as `lego run`: even a kill -9 of it takes the program along.
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() == 1) _exit(127);  // lego run already died
    setenv("LD_PRELOAD", ld.c_str(), 1);
    setenv(LEGO_ENV_SOCKET, socket.c_str(), 1);
    setenv(LEGO_ENV_JOB, job.c_str(), 1);
    if (o.excache) setenv(LEGO_ENV_EXCACHE, std::to_string(o.excache).c_str(), 1);
    setenv("LEGO_VNODE", vnode_name.c_str(), 1);
    setenv("LEGO_VNODE_ROOT", mountpoint.c_str(), 1);
    if (!o.keep_cwd && chdir(mountpoint.c_str()) != 0) {
      fmt::print(stderr, "lego run: cannot enter the vNode's mount {}: {}\n", mountpoint, strerror(errno));
      _exit(127);
    }
    execv(program.c_str(), argv.data());
    fmt::print(stderr, "lego run: cannot execute {}: {}\n", program, strerror(errno));
    _exit(127);
  }
  g_child = child;
  int status = 0;
  while (waitpid(child, &status, 0) < 0 && errno == EINTR) {
  }
  g_child = 0;
  int rc;
  bool sigkill = false;
  if (WIFEXITED(status)) {
    rc = WEXITSTATUS(status);
  } else if (WIFSIGNALED(status)) {
    int sig = WTERMSIG(status);
    if (sig != SIGINT && sig != SIGPIPE)
      fmt::print(stderr, "lego run: {} was killed by signal {} ({})\n", o.argv[0], sig, strsignal(sig));
    rc = 128 + sig;
    sigkill = sig == SIGKILL;
  } else {
    rc = 1;
  }
  // A SIGKILL may have come from the process monitor (the program's memory became unreachable): ask it why.
  std::vector<proto::ProcessRecord> mine;
  if (o.stats || sigkill) mine = JobRecords(o.state_dir, job, o.stats ? 50 : 10);
  for (const auto& p : mine)
    if (p.fixed.flags & proto::kProcessKilled)
      fmt::print(stderr, "lego run: the process monitor killed pid {} ({}): {}\n", p.fixed.pid, p.comm,
                 p.killed_why);
  if (o.stats) {
    if (o.stats_json) {
      json j = json::array();
      for (auto& p : mine) j.push_back(ToJson(p));
      std::cerr << j.dump(2) << "\n";
    } else if (mine.empty()) {
      fmt::print(stderr, "lego run: no statistics: the process monitor did not report job {}\n", job);
    } else {
      PrintJobStats(mine);
    }
  }
  return rc;
}

int PsCommand(const QueryOptions& o, bool all) {
  auto m = MakeCliMessenger();
  if (!m.ok()) {
    fmt::print(stderr, "lego ps: {}\n", m.status().ToString());
    return 1;
  }
  std::vector<PmonFailure> failures;
  std::vector<proto::MemberRecord> dead;
  auto procs = ListProcesses(**m, o, all, &failures, nullptr, &dead);
  if (!procs.ok()) {
    fmt::print(stderr, "lego ps: {}\n", procs.status().message());
    return 1;
  }
  for (const auto& f : failures)
    fmt::print(stderr, "lego ps: {}: its processes are not listed\n", f.Describe());
  // A pmon the gm counts dead is not asked; say so (on stderr: the gm keeps listing it dead until it comes
  // back), or the processes of one that is only stopped would vanish from the list unexplained.
  for (const auto& mem : dead)
    fmt::print(
        stderr,
        "lego ps: process monitor {} ({}) is dead (last heard {:.1f} s ago): its processes, if any still "
        "run, are not listed\n",
        mem.name, mem.listen_addr, static_cast<double>(mem.fixed.last_heartbeat_age_ms) / 1000.0);
  if (o.json) {
    json j = json::array();
    for (auto& p : *procs) j.push_back(ToJson(p));
    std::cout << j.dump(2) << "\n";
    return 0;
  }
  // vNode names, best effort (ids if the gm does not answer).
  std::map<uint32_t, std::string> vnode_names;
  if (auto gm = ResolveGm(o, "ps", nullptr); gm.ok()) {
    if (auto ch = (*m)->Connect(*gm, msg::Millis(o.timeout_ms)); ch.ok()) {
      if (auto r = (*ch)->Call(proto::kVnodeList, {}, msg::Millis(o.timeout_ms)); r.ok()) {
        if (auto list = proto::DecodeVnodeList(*r); list.ok())
          for (const auto& v : *list) vnode_names[v.fixed.id] = v.name;
      }
    }
  }
  auto vnode_of = [&](uint32_t id) -> std::string {
    if (id == 0) return "-";
    auto it = vnode_names.find(id);
    return it == vnode_names.end() ? std::to_string(id) : it->second;
  };
  fmt::print("{:>8} {:<16} {:<13} {:<12} {:>12} {:>12} {:>10} {:>10} {:>10} {:>9}\n", "PID", "COMMAND", "JOB",
             "VNODE", "EXCACHE", "REMOTE", "FAULTS", "MISSES", "EVICTED", "P50(us)");
  for (auto& p : *procs) {
    const auto& f = p.fixed;
    fmt::print("{:>8} {:<16} {:<13} {:<12} {:>12} {:>12} {:>10} {:>10} {:>10} {:>9.1f}{}\n", f.pid,
               p.comm.substr(0, 16), p.job, vnode_of(f.vnode).substr(0, 12),
               fmt::format("{} pages", f.resident_pages), fmt::format("{} pages", f.remote_pages), f.faults,
               f.misses, f.evicted_clean + f.evicted_dirty, f.fault_p50_ns / 1000.0,
               (f.flags & proto::kProcessKilled)  ? " (killed by the pmon: " + p.killed_why + ")"
               : (f.flags & proto::kProcessEnded) ? std::string(" (ended)")
                                                  : std::string());
  }
  if (procs->empty() && failures.empty()) fmt::print("(no processes are running under Lego)\n");
  if (procs->empty() && !failures.empty())
    fmt::print("(no processes listed: {} process monitor(s) could not be asked)\n", failures.size());
  return 0;
}

int TopCommand(const QueryOptions& o, int interval_ms, int iterations) {
  auto m = MakeCliMessenger();
  if (!m.ok()) {
    fmt::print(stderr, "lego top: {}\n", m.status().ToString());
    return 1;
  }
  std::map<std::pair<uint32_t, uint64_t>, proto::ProcessFixed> last;
  const bool tty = isatty(STDOUT_FILENO);
  for (int it = 0; iterations <= 0 || it < iterations; ++it) {
    std::vector<PmonFailure> failures;
    auto procs = ListProcesses(**m, o, false, &failures);
    if (!procs.ok()) {
      fmt::print(stderr, "lego top: {}\n", procs.status().message());
      return 1;
    }
    if (tty) fmt::print("\033[H\033[2J");
    const double secs = interval_ms / 1000.0;
    fmt::print("lego top - {} processes, every {:.1f}s (Ctrl-C quits)\n", procs->size(), secs);
    for (const auto& f : failures) fmt::print("  {}: its processes are not shown\n", f.Describe());
    fmt::print("{:>8} {:<16} {:>11} {:>11} {:>10} {:>10} {:>10} {:>10} {:>9} {:>9}\n", "PID", "COMMAND",
               "EXCACHE", "REMOTE", "FAULTS/s", "MISSES/s", "FETCH/s", "WBACK/s", "P50(us)", "P99(us)");
    std::map<std::pair<uint32_t, uint64_t>, proto::ProcessFixed> now;
    for (auto& p : *procs) {
      const auto& f = p.fixed;
      auto key = std::pair{f.pid, f.space};
      proto::ProcessFixed prev{};
      if (auto i = last.find(key); i != last.end()) prev = i->second;
      auto rate = [&](uint64_t a, uint64_t b) { return static_cast<double>(a - std::min(a, b)) / secs; };
      fmt::print("{:>8} {:<16} {:>11} {:>11} {:>10.0f} {:>10.0f} {:>10} {:>10} {:>9.1f} {:>9.1f}\n", f.pid,
                 p.comm.substr(0, 16), Pages(f.resident_pages), Pages(f.remote_pages),
                 rate(f.faults, prev.faults), rate(f.misses, prev.misses),
                 FormatBytes(static_cast<uint64_t>(rate(f.fetched_pages, prev.fetched_pages) * 4096)),
                 FormatBytes(static_cast<uint64_t>(rate(f.writeback_pages, prev.writeback_pages) * 4096)),
                 f.fault_p50_ns / 1000.0, f.fault_p99_ns / 1000.0);
      now[key] = f;
    }
    last = std::move(now);
    std::fflush(stdout);
    if (iterations <= 0 || it + 1 < iterations)
      std::this_thread::sleep_for(std::chrono::milliseconds(interval_ms));
  }
  return 0;
}

}  // namespace lego::cli
