#include "pmon/pmon_service.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>

#include "common/log.h"
#include "protocol/c2p.h"
#include "protocol/local.h"
#include "protocol/local_codec.h"
#include "protocol/p2m.h"
#include "protocol/wire.h"

namespace lego::pmon {
namespace {

constexpr int kHelloTimeoutMs = 5000;
constexpr int kFaultLatencyMinOctave = 8;   // 256 ns
constexpr int kFaultLatencyMaxOctave = 30;  // ~1.07 s

Status Errno(const std::string& what) { return Status(StatusCode::kInternal, what + ": " + strerror(errno)); }

void SendAck(int fd, int32_t status, int pass_fd = -1) {
  uint8_t buf[sizeof(lego_local_hdr) + sizeof(lego_local_hello_ack)];
  lego_local_hdr h{LEGO_LOCAL_MAGIC, LEGO_LOCAL_VERSION, LEGO_LOCAL_HELLO_ACK};
  lego_local_hello_ack a{status, 0};
  std::memcpy(buf, &h, sizeof h);
  std::memcpy(buf + sizeof h, &a, sizeof a);
  iovec iov{buf, sizeof buf};
  msghdr mh{};
  mh.msg_iov = &iov;
  mh.msg_iovlen = 1;
  alignas(cmsghdr) char ctrl[CMSG_SPACE(sizeof(int))];
  if (pass_fd >= 0) {
    mh.msg_control = ctrl;
    mh.msg_controllen = sizeof ctrl;
    cmsghdr* c = CMSG_FIRSTHDR(&mh);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    std::memcpy(CMSG_DATA(c), &pass_fd, sizeof(int));
  }
  (void)sendmsg(fd, &mh, MSG_NOSIGNAL);
}

bool IsUserfaultfd(int fd) {
  char path[64], target[64] = {};
  snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
  ssize_t n = readlink(path, target, sizeof target - 1);
  return n > 0 && std::strstr(target, "userfaultfd") != nullptr;
}

uint64_t NewSpaceId(uint32_t tag) {
  static std::mt19937_64 rng{std::random_device{}()};
  static std::mutex mu;
  std::lock_guard lock(mu);
  return proto::MakeSpaceId(tag, rng());
}

}  // namespace

PmonService::PmonService(const PmonOptions& options, msg::Messenger& messenger, Metrics& metrics)
    : options_(options),
      metrics_(metrics),
      excache_(options.excache_bytes),
      memory_(messenger, options.gm, options.rpc_timeout),
      vnodes_(std::make_unique<VnodeManager>(messenger, options.gm, options.vnode_root,
                                             options.storage_timeout,
                                             [this](pid_t pid) { return VnodeOfProcess(pid); })) {}

PmonService::~PmonService() { Stop(); }

Status PmonService::Start() {
  if (!options_.space_journal.empty()) {
    auto j = SpaceJournal::Open(options_.space_journal);
    if (!j.ok()) return Status(j.status().code(), "space journal: " + j.status().message());
    journal_ = std::move(*j);
    if (!journal_->leftovers().empty())
      LEGO_LOG_WARN(
          "spaces_left_behind count={} journal={}: a previous run of this pmon ended without "
          "freeing them; freeing them now",
          journal_->leftovers().size(), options_.space_journal);
    std::lock_guard lock(mu_);
    unfreed_ = journal_->leftovers();
  }
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (options_.socket_path.size() >= sizeof addr.sun_path)
    return Status(StatusCode::kInvalidArgument, "socket path too long: " + options_.socket_path);
  std::strcpy(addr.sun_path, options_.socket_path.c_str());
  listen_fd_ = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
  if (listen_fd_ < 0) return Errno("socket");
  unlink(options_.socket_path.c_str());  // a stale socket of a previous life
  if (bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) < 0)
    return Errno("bind " + options_.socket_path);
  chmod(options_.socket_path.c_str(), 0666);  // programs of any user on this host may run under Lego
  if (listen(listen_fd_, 128) < 0) return Errno("listen");
  stop_fd_ = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  excache_.Start();
  listener_ = std::thread([this] { ListenLoop(); });
  reaper_ = std::thread([this] { ReapLoop(); });
  LEGO_LOG_INFO("pmon_serving socket={} excache_bytes={} eviction={} prefetch={}", options_.socket_path,
                options_.excache_bytes, EvictionPolicyName(options_.session.policy),
                options_.session.prefetch);
  return Status::Ok();
}

void PmonService::Stop() {
  if (stop_fd_ < 0) return;
  uint64_t one = 1;
  (void)!write(stop_fd_, &one, sizeof one);
  if (listener_.joinable()) listener_.join();
  attach_queue_.Stop();
  for (auto& s : Sessions()) s->Stop();  // each frees its remote memory on the way out
  {
    std::lock_guard lock(mu_);
    reap_stop_ = true;  // what is still unfreed stays in the journal for the next start
  }
  reap_cv_.notify_all();
  if (reaper_.joinable()) reaper_.join();
  excache_.Stop();
  vnodes_->UnmountAll();
  std::map<ProcessSession*, std::shared_ptr<ProcessSession>> sessions;
  std::vector<std::shared_ptr<ProcessSession>> ended;
  {
    std::lock_guard lock(mu_);
    sessions.swap(sessions_);
    ended.swap(ended_);
  }  // freed outside mu_ (see ListenLoop)
  close(listen_fd_);
  close(stop_fd_);
  unlink(options_.socket_path.c_str());
  stop_fd_ = -1;
}

void PmonService::Created(uint64_t space) {
  if (journal_) journal_->Added(space);
}

void PmonService::ReapLoop() {
  std::set<uint64_t> told;  // spaces whose failure was logged (once each)
  Millis wait = options_.reap_interval;
  std::unique_lock lock(mu_);
  while (!reap_stop_) {
    if (unfreed_.empty()) {
      wait = options_.reap_interval;
      reap_cv_.wait(lock, [&] { return reap_stop_ || !unfreed_.empty(); });
      continue;
    }
    const std::set<uint64_t> pending = unfreed_;  // a copy: the calls below run without mu_
    lock.unlock();
    bool all = true;
    for (uint64_t space : pending) {
      uint64_t freed = 0;
      Status st = memory_.DestroySpaceEverywhere(space, &freed);
      if (st.ok()) {
        if (journal_) journal_->Removed(space);
        told.erase(space);
        LEGO_LOG_INFO("space_reaped space={:#x} pages_freed={}", space, freed);
      } else if (told.insert(space).second) {
        all = false;
        LEGO_LOG_WARN("space_not_freed_yet space={:#x} err=\"{}\" (retried until it is)", space,
                      st.ToString());
      } else {
        all = false;
      }
      lock.lock();
      if (st.ok()) unfreed_.erase(space);
      const bool stop = reap_stop_;
      lock.unlock();
      if (stop) break;
    }
    // Back off while something stays unreachable (an mmon that is gone for good is asked once a minute).
    wait = all ? options_.reap_interval : std::min<Millis>(wait * 2, Millis(60000));
    lock.lock();
    reap_cv_.wait_for(lock, wait, [&] { return reap_stop_; });
  }
}

std::vector<std::shared_ptr<ProcessSession>> PmonService::Sessions() const {
  std::lock_guard lock(mu_);
  std::vector<std::shared_ptr<ProcessSession>> out;
  for (auto& [k, v] : sessions_) out.push_back(v);
  return out;
}

void PmonService::ListenLoop() {
  pollfd fds[2] = {{listen_fd_, POLLIN, 0}, {stop_fd_, POLLIN, 0}};
  for (;;) {
    int r = poll(fds, 2, 500);
    // Finished sessions are freed (their fault threads joined) outside mu_: the process-list handler
    // takes mu_ on the messenger's progress thread, which must never wait for a join.
    std::vector<std::shared_ptr<ProcessSession>> ended;
    {
      std::lock_guard lock(mu_);
      ended.swap(ended_);
    }
    ended.clear();  // joins their threads (a session last released on its own thread detaches it)
    if (r < 0 && errno != EINTR) break;
    if (fds[1].revents) break;
    if (!(fds[0].revents & POLLIN)) continue;
    int conn = accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (conn < 0) continue;
    Accept(conn);
  }
}

// Reads the HELLO of a new program, checks it, and starts its session.
void PmonService::Accept(int conn) {
  auto refuse = [&](int err, const std::string& why) {
    hellos_refused_++;
    LEGO_LOG_WARN("hello_refused {} err={}", why, strerror(err));
    SendAck(conn, err);
    close(conn);
  };
  pollfd p{conn, POLLIN, 0};
  if (poll(&p, 1, kHelloTimeoutMs) <= 0) return refuse(ETIMEDOUT, "no HELLO within 5 s");
  uint8_t buf[512];
  iovec iov{buf, sizeof buf};
  alignas(cmsghdr) char ctrl[CMSG_SPACE(sizeof(int) * 4)];
  msghdr mh{};
  mh.msg_iov = &iov;
  mh.msg_iovlen = 1;
  mh.msg_control = ctrl;
  mh.msg_controllen = sizeof ctrl;
  ssize_t n = recvmsg(conn, &mh, MSG_CMSG_CLOEXEC);
  int uffd = -1;
  for (cmsghdr* c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
    size_t nfd = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    for (size_t i = 0; i < nfd; ++i) {
      int fd;
      std::memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof fd);
      if (uffd < 0)
        uffd = fd;
      else
        close(fd);  // exactly one fd is expected; close extras
    }
  }
  auto close_uffd = [&] {
    if (uffd >= 0) close(uffd);
  };
  auto decoded = proto::DecodeLocalHello(std::span(buf, n > 0 ? static_cast<size_t>(n) : 0));
  if (decoded.error) {
    close_uffd();
    return refuse(decoded.error, decoded.why);
  }
  lego_local_hello& hello = decoded.body;
  ucred cred{};
  socklen_t len = sizeof cred;
  if (getsockopt(conn, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0 ||
      cred.pid != static_cast<pid_t>(hello.pid)) {
    close_uffd();
    return refuse(EPERM, fmt::format("HELLO claims pid {} but the peer is pid {}", hello.pid, cred.pid));
  }
  if (hello.flags & LEGO_HELLO_FORK_CHILD) {
    close_uffd();
    return AttachForkChild(conn, hello);
  }
  if (uffd < 0 || !IsUserfaultfd(uffd)) {
    close_uffd();
    return refuse(EBADF, fmt::format("pid {} sent no userfaultfd", hello.pid));
  }
  fcntl(uffd, F_SETFL, fcntl(uffd, F_GETFL) | O_NONBLOCK);
  const uint64_t budget = excache_.budget_pages();
  uint64_t cap = hello.excache_cap ? std::min<uint64_t>(hello.excache_cap / kPage, budget) : budget;
  cap = std::max<uint64_t>(cap, 64);
  const uint64_t space = NewSpaceId(options_.space_tag);
  Created(space);
  auto s = std::make_shared<ProcessSession>(uffd, conn, static_cast<pid_t>(hello.pid), space, hello.comm,
                                            hello.job, cap, options_.session, excache_, memory_, totals_);
  LEGO_LOG_INFO("process_started pid={} comm={} job={} cap_bytes={} uffd_features={:#x}", hello.pid,
                hello.comm, hello.job, cap * kPage, hello.uffd_features);
  StartSession(s);
  SendAck(conn, 0);
}

void PmonService::StartSession(const std::shared_ptr<ProcessSession>& s) {
  {
    std::lock_guard lock(mu_);
    sessions_[s.get()] = s;
  }
  excache_.Add(s);
  processes_started_++;
  s->on_fork = [this](ProcessSession* parent, int fd) { OnFork(parent, fd); };
  s->Start([this](ProcessSession* p) { SessionEnded(p); });
}

// On the parent's fault thread, while the forking parent waits in fork(): copy the address space (the
// memory monitors share its pages copy-on-write) and start serving the child's faults.
void PmonService::OnFork(ProcessSession* parent, int child_uffd) {
  fcntl(child_uffd, F_SETFL, fcntl(child_uffd, F_GETFL) | O_NONBLOCK | O_CLOEXEC);
  fcntl(child_uffd, F_SETFD, FD_CLOEXEC);
  const uint64_t child_space = NewSpaceId(options_.space_tag);
  Created(child_space);
  // The page table first, then the copy on the mmons: a page the snapshot finds remote was written back
  // before it, so the copy has it. (The other way round, a whole eviction batch could land between the two:
  // its pages remote in the child's table, still mapped in the child, and missing from its copy.)
  auto child = parent->ForkChild(child_uffd, child_space);
  uint64_t pages = 0;
  Status st = memory_.ForkSpace(parent->space(), child_space, &pages);
  if (!st.ok())
    LEGO_LOG_ERROR("fork_copy_failed parent_pid={} err={}; the child will be refused", parent->pid(),
                   st.ToString());
  LEGO_LOG_INFO("process_forked parent_pid={} comm={} child_space={:#x} remote_pages_shared={}",
                parent->pid(), parent->comm(), child_space, pages);
  {
    std::lock_guard lock(mu_);
    pending_children_.push_back({parent, child, !st.ok()});
  }
  pending_cv_.notify_all();
  StartSession(child);
}

// A fork child's HELLO: pair it with the oldest child session forked by its parent, and hand it its uffd.
void PmonService::AttachForkChild(int conn, const lego_local_hello& hello) {
  std::shared_ptr<ProcessSession> child;
  bool broken = false;
  {
    std::unique_lock lock(mu_);
    auto find = [&] {
      for (auto it = pending_children_.begin(); it != pending_children_.end(); ++it) {
        if (it->parent->pid() == static_cast<pid_t>(hello.ppid) || it->child->ended()) {
          if (it->child->ended()) {
            pending_children_.erase(it);
            return false;
          }
          child = it->child;
          broken = it->broken;
          pending_children_.erase(it);
          return true;
        }
      }
      return false;
    };
    pending_cv_.wait_for(lock, std::chrono::seconds(2), find);
  }
  if (!child || broken) {
    hellos_refused_++;
    LEGO_LOG_WARN("hello_refused fork child pid={} ppid={}: {}", hello.pid, hello.ppid,
                  child ? "its memory could not be copied" : "no fork of its parent is known");
    SendAck(conn, child ? ENOMEM : ESRCH);
    close(conn);
    return;
  }
  child->Attach(static_cast<pid_t>(hello.pid), conn);
  LEGO_LOG_INFO("fork_child_attached pid={} ppid={} comm={}", hello.pid, hello.ppid, hello.comm);
  SendAck(conn, 0, child->uffd());
}

void PmonService::SessionEnded(ProcessSession* s) {
  excache_.Remove(s);
  processes_ended_++;
  if (s->remote_freed() && journal_) journal_->Removed(s->space());
  std::lock_guard lock(mu_);
  if (!s->remote_freed()) {
    unfreed_.insert(s->space());
    reap_cv_.notify_all();
  }
  std::erase_if(pending_children_,
                [s](const PendingChild& p) { return p.child.get() == s || p.parent == s; });
  auto it = sessions_.find(s);
  if (it == sessions_.end()) return;
  recent_.push_back(Record(*s, true, VnodeOfJobLocked(s->Info().job)));
  if (recent_.size() > kRecentEnded) recent_.pop_front();
  ended_.push_back(std::move(it->second));  // destroyed on the listener thread, not on its own
  sessions_.erase(it);
}

void PmonService::InstallHandlers(msg::Messenger& messenger) {
  messenger.Handle(proto::kListProcesses, [this](const msg::Incoming&, msg::Responder r) {
    std::vector<proto::ProcessRecord> out;
    for (auto& s : Sessions()) {
      uint32_t vnode;
      {
        std::lock_guard lock(mu_);
        vnode = VnodeOfJobLocked(s->Info().job);
      }
      out.push_back(Record(*s, false, vnode));
    }
    {
      std::lock_guard lock(mu_);
      out.insert(out.end(), recent_.begin(), recent_.end());
    }
    r.Reply(proto::EncodeProcessList(out));
  });
  messenger.Handle(proto::kAttachVnode, [this](const msg::Incoming& in, msg::Responder r) {
    auto req = proto::DecodeAttachVnodeReq(in.payload);
    if (!req.ok()) return r.Error(req.status());
    attach_queue_.Submit(
        [this, req = std::move(req.value()), r = std::make_shared<msg::Responder>(std::move(r))] {
          auto a = vnodes_->Attach(req.vnode);
          if (!a.ok()) {
            LEGO_LOG_WARN("vnode_attach_failed job={} vnode={} why=\"{}\"", req.job, req.vnode,
                          a.status().ToString());
            return r->Error(a.status());
          }
          const auto root = static_cast<pid_t>(req.pid);
          const uint64_t root_start = root > 1 ? ProcStartTime(root) : 0;
          {
            std::lock_guard lock(mu_);
            // Forget jobs that are over (their `lego run` is gone and none of their processes runs).
            std::erase_if(jobs_, [this](const auto& kv) {
              for (const auto& [k, s] : sessions_)
                if (s->Info().job == kv.first) return false;
              return ProcStartTime(kv.second.root) != kv.second.root_start;
            });
            jobs_[req.job] = {a->vnode, root_start ? root : 0, root_start};
          }
          r->Reply(proto::EncodeAttachVnodeResp(a.value()));
        });
  });
  InstallDetachHandler(messenger);
}

void PmonService::InstallDetachHandler(msg::Messenger& messenger) {
  messenger.Handle(proto::kDetachVnode, [this](const msg::Incoming& in, msg::Responder r) {
    auto req = proto::DecodeFixed<proto::DetachVnodeReq>(in.payload, "c2p.detach_vnode");
    if (!req.ok()) return r.Error(req.status());
    if (req->vnode == 0 || req->reserved != 0) return r.Error(BadMessage("c2p.detach_vnode: bad vnode"));
    attach_queue_.Submit([this, vnode = req->vnode, r = std::make_shared<msg::Responder>(std::move(r))] {
      vnodes_->Detach(vnode);
      r->Reply();
    });
  });
}

uint32_t PmonService::VnodeOfProcess(pid_t pid) const {
  std::lock_guard lock(mu_);
  for (const auto& [k, s] : sessions_) {
    if (s->pid() == pid) return VnodeOfJobLocked(s->Info().job);
  }
  for (const auto& [job, j] : jobs_)
    if (j.root == pid && pid > 0 && ProcStartTime(pid) == j.root_start) return j.vnode;
  return 0;
}

uint64_t PmonService::ProcStartTime(pid_t pid) {
  uint64_t start = 0;
  return ReadProcStatField(pid, 22, &start) ? start : 0;
}

uint32_t PmonService::VnodeOfJobLocked(const std::string& job) const {
  auto it = jobs_.find(job);
  return it == jobs_.end() ? 0 : it->second.vnode;
}

proto::ProcessRecord PmonService::Record(const ProcessSession& s, bool ended, uint32_t vnode) {
  SessionInfo i = s.Info();
  const MemStats& st = s.stats();
  proto::ProcessRecord rec;
  auto& f = rec.fixed;
  f.pid = i.pid;
  f.flags = (ended ? proto::kProcessEnded : 0) | (i.killed_why.empty() ? 0 : proto::kProcessKilled);
  f.space = i.space;
  f.started_ms = i.started_ms;
  f.resident_pages = i.resident_pages;
  f.remote_pages = i.remote_pages;
  f.cap_pages = i.cap_pages;
  f.faults = st.faults;
  f.misses = st.misses;
  f.hits = st.hits;
  f.zero_filled = st.zero_filled;
  f.fetched_pages = st.fetched_pages;
  f.prefetch_issued = st.prefetch_issued;
  f.prefetch_used = st.prefetch_used;
  f.evicted_clean = st.evicted_clean;
  f.evicted_dirty = st.evicted_dirty;
  f.writeback_pages = st.writeback_pages;
  f.freed_remote_pages = st.freed_remote_pages;
  f.fault_p50_ns = st.fault_latency.Quantile(0.5);
  f.fault_p99_ns = st.fault_latency.Quantile(0.99);
  f.fault_service_ms =
      static_cast<uint32_t>(std::min<uint64_t>(st.fault_latency.Sum() / 1000000, UINT32_MAX));
  rec.comm = i.comm;
  rec.job = i.job;
  rec.killed_why = std::move(i.killed_why);
  f.vnode = vnode;
  return rec;
}

std::vector<proto::StatsEntry> PmonService::ExtraStats() const {
  const MemStats& t = totals_;
  auto u = [](const std::atomic<uint64_t>& a) { return static_cast<double>(a.load()); };
  size_t running;
  {
    std::lock_guard lock(mu_);
    running = sessions_.size();
  }
  std::vector<proto::StatsEntry> v = {
      {"lego_pmon_processes_running", static_cast<double>(running)},
      {"lego_pmon_processes_started_total", u(processes_started_)},
      {"lego_pmon_processes_ended_total", u(processes_ended_)},
      {"lego_pmon_hellos_refused_total", u(hellos_refused_)},
      {"lego_pmon_excache_budget_bytes", static_cast<double>(excache_.budget_pages() * kPage)},
      {"lego_pmon_excache_resident_bytes", static_cast<double>(excache_.resident_pages() * kPage)},
      {"lego_pmon_faults_total", u(t.faults)},
      {"lego_pmon_excache_misses_total", u(t.misses)},
      {"lego_pmon_excache_hits_total", u(t.hits)},
      {"lego_pmon_zero_filled_pages_total", u(t.zero_filled)},
      {"lego_pmon_fetched_bytes_total", u(t.fetched_pages) * kPage},
      {"lego_pmon_prefetch_issued_pages_total", u(t.prefetch_issued)},
      {"lego_pmon_prefetch_used_pages_total", u(t.prefetch_used)},
      {"lego_pmon_evicted_clean_pages_total", u(t.evicted_clean)},
      {"lego_pmon_evicted_dirty_pages_total", u(t.evicted_dirty)},
      {"lego_pmon_writeback_bytes_total", u(t.writeback_pages) * kPage},
      {"lego_pmon_remote_freed_pages_total", u(t.freed_remote_pages)},
      {"lego_pmon_overcommit_pages_total", u(t.overcommit_pages)},
      {"lego_pmon_fork_refetched_pages_total", u(t.fork_refetched)},
      {"lego_pmon_evict_batches_total", u(t.evict_batches)},
      {"lego_pmon_evict_seconds_total", u(t.evict_ns) / 1e9},
      {"lego_pmon_fault_room_wait_seconds_total", u(t.room_wait_ns) / 1e9},
      {"lego_pmon_fault_service_seconds_total", static_cast<double>(t.fault_latency.Sum()) / 1e9},
      {"lego_pmon_fault_latency_p50_ns", static_cast<double>(t.fault_latency.Quantile(0.5))},
      {"lego_pmon_fault_latency_p99_ns", static_cast<double>(t.fault_latency.Quantile(0.99))},
  };
  // The fault-service-time distribution, cumulative per power of two from 256 ns to ~1 s (bench/run plots
  // it).
  for (int octave = kFaultLatencyMinOctave; octave <= kFaultLatencyMaxOctave; ++octave)
    v.push_back({fmt::format("lego_pmon_fault_latency_le_{}ns", uint64_t{1} << octave),
                 static_cast<double>(t.fault_latency.CountBelowPow2(octave))});
  v.push_back({"lego_pmon_fault_latency_count", static_cast<double>(t.fault_latency.Count())});
  auto fs = vnodes_->Stats();
  v.insert(v.end(), fs.begin(), fs.end());
  return v;
}

}  // namespace lego::pmon
