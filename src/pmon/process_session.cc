#include "pmon/process_session.h"

#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>

#include "common/log.h"
#include "pmon/excache.h"
#include "protocol/c2p.h"
#include "protocol/local.h"
#include "protocol/local_codec.h"

namespace lego::pmon {
namespace {

uint64_t NowNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

constexpr Millis kRoomWait{2000};    // a fault waits this long for the evictor before overcommitting
constexpr Millis kAheadRoomWait{2};  // a window fetched ahead waits this long for room, else is not fetched
constexpr int64_t kMinWritebackPause = 20;    // ms: after a failed write-back, the first pause
constexpr int64_t kMaxWritebackPause = 1000;  // ms: the longest

}  // namespace

ProcessSession::ProcessSession(int uffd, int sock, pid_t pid, uint64_t space, std::string comm,
                               std::string job, uint64_t cap_pages, const SessionOptions& options,
                               ExCache& excache, MemoryClient& memory, MemStats& pmon_totals)
    : uffd_(uffd),
      sock_(sock),
      pid_(pid),
      space_(space),
      comm_(std::move(comm)),
      job_(std::move(job)),
      cap_pages_(cap_pages),
      options_(options),
      started_ms_(WallMillis()),
      excache_(excache),
      memory_(memory),
      totals_(pmon_totals),
      rset_(options.policy),
      prefetcher_(options.prefetch),
      zeros_(static_cast<size_t>(options.zero_block_pages) * kPage, 0) {
  stop_fd_ = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  wake_fd_ = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  evict_buf_.resize(ExCache::kBatchPages * kPage);
}

ProcessSession::~ProcessSession() {
  Stop();
  if (stop_fd_ >= 0) close(stop_fd_);
  if (wake_fd_ >= 0) close(wake_fd_);
  close(uffd_);
  if (sock_ >= 0) close(sock_);
}

void ProcessSession::Start(std::function<void(ProcessSession*)> on_end) {
  on_end_ = std::move(on_end);
  thread_ = std::thread([this] { FaultLoop(); });
}

void ProcessSession::Stop() {
  uint64_t one = 1;
  if (stop_fd_ >= 0) (void)!write(stop_fd_, &one, sizeof one);
  if (!thread_.joinable()) return;
  if (thread_.get_id() == std::this_thread::get_id())
    thread_.detach();  // the last reference went away on the fault thread itself, after Teardown
  else
    thread_.join();
}

void ProcessSession::Count(std::atomic<uint64_t> MemStats::*field, uint64_t n) {
  (stats_.*field).fetch_add(n, std::memory_order_relaxed);
  (totals_.*field).fetch_add(n, std::memory_order_relaxed);
}

SessionInfo ProcessSession::Info() const {
  SessionInfo i;
  i.pid = static_cast<uint32_t>(pid_.load());
  i.space = space_;
  i.comm = comm_;
  i.job = job_;
  i.resident_pages = resident_pages();
  i.remote_pages = remote_.load(std::memory_order_relaxed);
  i.cap_pages = cap_pages_;
  i.started_ms = started_ms_;
  std::lock_guard lock(why_mu_);
  i.killed_why = killed_why_;
  return i;
}

// ---- uffd ioctls ---------------------------------------------------------------------------------------

int64_t ProcessSession::Copy(uint64_t dst, const void* src, uint64_t len, bool wp, bool wake) {
  uffdio_copy c{};
  c.dst = dst;
  c.src = reinterpret_cast<uint64_t>(src);
  c.len = len;
  c.mode = (wp ? UFFDIO_COPY_MODE_WP : 0) | (wake ? 0 : UFFDIO_COPY_MODE_DONTWAKE);
  if (ioctl(uffd_, UFFDIO_COPY, &c) == 0) return static_cast<int64_t>(len);
  if (c.copy > 0) return c.copy;  // partial
  return c.copy < 0 ? c.copy : -errno;
}

int ProcessSession::Protect(uint64_t start, uint64_t len, bool wp) {
  uffdio_writeprotect w{};
  w.range.start = start;
  w.range.len = len;
  w.mode = wp ? UFFDIO_WRITEPROTECT_MODE_WP : 0;
  return ioctl(uffd_, UFFDIO_WRITEPROTECT, &w) == 0 ? 0 : -errno;
}

void ProcessSession::Wake(uint64_t start, uint64_t len) {
  uffdio_range r{start, len};
  (void)ioctl(uffd_, UFFDIO_WAKE, &r);
}

// ---- fault thread --------------------------------------------------------------------------------------

std::shared_ptr<ProcessSession> ProcessSession::ForkChild(int child_uffd, uint64_t child_space) {
  auto child = std::make_shared<ProcessSession>(child_uffd, -1, 0, child_space, comm_, job_, cap_pages_,
                                                options_, excache_, memory_, totals_);
  child->attach_deadline_ms_ = MonoMillis() + 10000;
  uint64_t resident = 0;
  {
    std::lock_guard lock(mu_);
    std::lock_guard clock(child->mu_);
    for (auto& [pg, p] : pages_) {
      Page cp = p;
      if (cp.state == State::kEvicting) {
        // Mid-eviction in the parent. Still mapped in the child, unless the batch's DROP ran before the
        // fork: a DROP follows the batch's successful write-back, so the page's data is then on its memory
        // monitor (and ForkSpace, after the fork, copied it into the child's space), or it was never
        // written and reads as zero. HandleFault tells the two apart by a missing-page fault.
        cp = Page{State::kResident, true, p.remote || p.dirty, false, false, true};
      }
      child->pages_[pg] = cp;
      if (cp.state == State::kResident) {
        child->rset_.Insert(pg);
        ++resident;
      }
    }
    child->remote_.store(remote_.load());
  }
  excache_.Overcommit(*child, resident);  // pages shared copy-on-write with the parent count for both
  return child;
}

void ProcessSession::Attach(pid_t pid, int sock) {
  pid_.store(pid);
  SettleForkedPages(pid);  // before sock_: eviction must not start on a page that may be unmapped
  sock_.store(sock);
  {
    // A fork child whose memory became unreachable before it said hello (Fatal found no pid to kill).
    std::lock_guard lock(why_mu_);
    if (!killed_why_.empty()) Kill(pid, killed_why_);
  }
  uint64_t one = 1;
  (void)!write(wake_fd_, &one, sizeof one);
}

// The pages a fork child's parent was evicting when it forked are mapped in the child unless the batch's
// DROP ran first (ForkChild). Until its HELLO the child has run none of its own code (only the preload's
// atfork handler), so its page table tells which: a page present (or swapped) there is mapped and stays
// resident; one absent was dropped before the fork, and its data is on the memory monitor (kRemote) or, never
// written, zero (forgotten). Settled before eviction may start: the evictor reading an unmapped page with
// process_vm_readv would fault into this session's own fault thread, which parks the fault behind the very
// batch doing the read. And once the child runs its own code, a page it drops itself (MADV_DONTNEED) must
// read as zero, not as the parent's copy.
void ProcessSession::SettleForkedPages(pid_t pid) {
  std::vector<uint64_t> unsure;
  {
    std::lock_guard lock(mu_);
    for (const auto& [pg, p] : pages_)
      if (p.maybe_dropped) unsure.push_back(pg);
  }
  if (unsure.empty()) return;
  const int fd = open(fmt::format("/proc/{}/pagemap", pid).c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    LEGO_LOG_WARN("pagemap_unreadable pid={} err={}: {} pages inherited mid-eviction are taken as mapped",
                  pid, strerror(errno), unsure.size());
  size_t left = 0, refetch = 0;
  {
    std::lock_guard lock(mu_);
    for (uint64_t pg : unsure) {
      auto it = pages_.find(pg);
      if (it == pages_.end() || !it->second.maybe_dropped) continue;  // a fault settled it meanwhile
      it->second.maybe_dropped = false;
      uint64_t entry = 0;
      const bool known = fd >= 0 && pread(fd, &entry, sizeof entry, static_cast<off_t>(pg * 8)) == 8;
      if (!known || (entry >> 62) != 0) continue;  // bit 63 present, bit 62 swapped: mapped
      ++left;
      refetch += DroppedBeforeForkLocked(it);
    }
  }
  if (fd >= 0) close(fd);
  if (left) excache_.Release(*this, left);
  Count(&MemStats::fork_refetched, refetch);
  LEGO_LOG_DEBUG("fork_pages_settled pid={} unsure={} dropped_before_fork={}", pid, unsure.size(), left);
}

// A fork child's maybe_dropped page found dropped before the fork: out of the resident set, and remote again
// if the memory monitor has it, else forgotten (it reads as zero). Returns true if remote. The caller gives
// back its ExCache room. REQUIRES mu_.
bool ProcessSession::DroppedBeforeForkLocked(std::unordered_map<uint64_t, Page>::iterator it) {
  rset_.Erase(it->first);
  if (!it->second.remote) {
    pages_.erase(it);
    return false;
  }
  it->second = Page{State::kRemote, false, true, false};
  remote_.fetch_add(1, std::memory_order_relaxed);
  return true;
}

void ProcessSession::FaultLoop() {
  uffd_msg msgs[64];
  uint64_t spin_until = 0;
  bool stopping = false;
  while (!stopping) {
    const bool doubt = drop_in_doubt_.load(std::memory_order_acquire);
    if (doubt) SettleLateDrop();  // a DROP's ACK came late: settle its pages (cheap when it has not)
    pollfd fds[4] = {{uffd_, POLLIN, 0},
                     {sock_.load(), static_cast<short>(POLLRDHUP | (doubt ? POLLIN : 0)), 0},
                     {stop_fd_, POLLIN, 0},
                     {wake_fd_, POLLIN, 0}};
    ssize_t n = read(uffd_, msgs, sizeof msgs);
    if (n > 0) {
      // Events that change the address space (UNMAP, FORK) before the batch's page faults. Reading an UNMAP
      // lets the program's munmap (or MAP_FIXED mmap) return, so a fault queued before it and handled after
      // it could install old contents into a fresh mapping at the same address; handled first, the unmap
      // drops the range (and any window fetched ahead into it) and the stale fault zero-fills or fails with
      // ENOENT. A FORK first snapshots the table as the child's page table has it, before this batch's
      // faults make pages resident that the child never got.
      const ssize_t count = n / static_cast<ssize_t>(sizeof(uffd_msg));
      for (ssize_t i = 0; i < count; ++i)
        if (msgs[i].event != UFFD_EVENT_PAGEFAULT) HandleMessage(msgs[i]);
      for (ssize_t i = 0; i < count; ++i)
        if (msgs[i].event == UFFD_EVENT_PAGEFAULT) HandleMessage(msgs[i]);
      spin_until = NowNs() + options_.spin_us * 1000ull;
      continue;
    }
    if (n < 0 && errno != EAGAIN && errno != EINTR) {
      LEGO_LOG_WARN("uffd_read_failed pid={} err={}", pid_.load(), strerror(errno));
      break;
    }
    if (NowNs() < spin_until) continue;  // a burst of faults is likely: stay on the CPU briefly
    FlushInstall();                      // idle: nothing to overlap it with
    if (fds[1].fd < 0 && MonoMillis() > attach_deadline_ms_) {
      LEGO_LOG_WARN("fork_child_never_said_hello space={:#x} parent_comm={}", space_, comm_);
      break;
    }
    if (poll(fds, 4, fds[1].fd < 0 ? 200 : -1) < 0 && errno != EINTR) break;
    if (fds[3].revents) {
      uint64_t v;
      (void)!read(wake_fd_, &v, sizeof v);
    }
    if (fds[2].revents) stopping = true;
    if (fds[1].revents & (POLLRDHUP | POLLHUP | POLLERR)) break;  // the program exited or exec'd
    if (fds[0].revents & (POLLERR | POLLHUP)) break;
  }
  FlushInstall();
  Teardown();
}

void ProcessSession::HandleMessage(const uffd_msg& m) {
  if (m.event != UFFD_EVENT_PAGEFAULT) FlushInstall();  // an unmap or fork reads the page table
  switch (m.event) {
    case UFFD_EVENT_PAGEFAULT: {
      if (options_.follow_cpu) FollowCpu(m.arg.pagefault.feat.ptid);
      const uint64_t t0 = NowNs();
      HandleFault(m.arg.pagefault.address & ~(kPage - 1), m.arg.pagefault.flags & UFFD_PAGEFAULT_FLAG_WRITE,
                  m.arg.pagefault.flags & UFFD_PAGEFAULT_FLAG_WP);
      const uint64_t dt = NowNs() - t0;
      stats_.fault_latency.Record(dt);
      totals_.fault_latency.Record(dt);
      Count(&MemStats::faults);
      break;
    }
    case UFFD_EVENT_UNMAP:
      HandleUnmap(m.arg.remove.start, m.arg.remove.end);
      break;
    case UFFD_EVENT_FORK:
      if (on_fork)
        on_fork(this, static_cast<int>(m.arg.fork.ufd));
      else
        close(static_cast<int>(m.arg.fork.ufd));
      break;
    default:
      LEGO_LOG_DEBUG("uffd_event_ignored pid={} event={}", pid_.load(), m.event);
  }
}

// Runs the fault thread on the CPU of the thread that faults: a fault resolved on the faulting CPU costs
// a quarter of one resolved across CPUs (decision 005: 8.7 against 35 us here), because both wake-ups stay
// local. The faulting thread's CPU is read from /proc every 32 faults, whichever thread faults then: reading
// it costs 8 us here, and reading it at every change of faulting thread (as before) did so on about every
// other fault of a program with two threads faulting in turn (strace: 11k opens for 21k uffd ioctls).
void ProcessSession::FollowCpu(uint32_t tid) {
  if (tid == 0 || follow_count_++ % 32 != 0) return;
  uint64_t processor = 0;
  if (!ReadProcStatField(tid, 39, &processor)) return;
  const int cpu = static_cast<int>(processor);
  if (cpu == current_cpu_) return;
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  if (sched_setaffinity(0, sizeof set, &set) == 0) current_cpu_ = cpu;
}

void ProcessSession::HandleFault(uint64_t addr, bool write, bool wp) {
  const uint64_t pg = addr / kPage;
  if (deferred_ && deferred_->vaddrs.front() == addr) FlushInstall();  // its entry must be true first
  std::unique_lock lock(mu_);
  auto it = pages_.find(pg);
  if (it != pages_.end() && it->second.state == State::kEvicting) {
    parked_.push_back(addr);  // woken when its eviction batch is done; it then faults again
    return;
  }
  if (wp) {
    // First write to a clean page: it is dirty from now on. The flag and the protection change together
    // under mu_ (the evictor relies on Page::wp being true to the page table).
    if (it != pages_.end() && it->second.state == State::kResident) {
      it->second.dirty = true;
      it->second.wp = false;
      it->second.maybe_dropped = false;  // mapped, since it was write-protected
      if (it->second.prefetched) ++pf_written_;
      it->second.prefetched = false;
      rset_.Touch(pg);
    }
    if (int rc = Protect(addr, kPage, false); rc < 0) {
      // Only a successful unprotect wakes the fault. EAGAIN (an UNMAP/fork event not read yet) or ENOENT
      // (unmapped meanwhile): wake it anyway; it faults again if it still has to.
      if (rc != -ENOENT && rc != -EAGAIN)
        LEGO_LOG_RATELIMITED("unprotect_failed pid={} addr={:#x} err={}", pid_.load(), addr, strerror(-rc));
      Wake(addr, kPage);
    }
    lock.unlock();
    Count(&MemStats::hits);
    return;
  }
  if (it == pages_.end()) {
    lock.unlock();
    return ZeroFill(addr, write);
  }
  if (it->second.state == State::kRemote) {
    lock.unlock();
    return Fetch(addr, write);
  }
  if (it->second.maybe_dropped && it->second.remote) {
    // A fork child's page that the parent's eviction dropped before the fork: its data is on the memory
    // monitor, not zero. (A zero page here gave the child zeros where its parent had written.)
    DroppedBeforeForkLocked(it);
    lock.unlock();
    excache_.Release(*this, 1);
    Count(&MemStats::fork_refetched);
    return Fetch(addr, write);
  }
  // Missing but resident in our table: either another thread's fault on the same page got there first
  // (COPY says EEXIST: just wake), or the program dropped the page itself (MADV_DONTNEED reads as zero).
  lock.unlock();
  int64_t rc = Copy(addr, zeros_.data(), kPage, !write, true);
  if (rc < 0) {
    Wake(addr, kPage);  // a failed copy wakes nobody: EEXIST is resolved, EAGAIN/ENOENT fault again
  } else if (rc == static_cast<int64_t>(kPage)) {
    std::lock_guard relock(mu_);
    auto again = pages_.find(pg);
    if (again != pages_.end()) again->second = Page{State::kResident, write, again->second.remote, !write};
  }
  Count(&MemStats::hits);
}

bool ProcessSession::ReserveOrOvercommit(size_t n) {
  if (remote_full_.load(std::memory_order_relaxed)) {
    // Eviction cannot write back: waiting would only stall the program.
    excache_.Overcommit(*this, n);
    Count(&MemStats::overcommit_pages, n);
    return false;
  }
  const uint64_t t0 = NowNs();
  const bool ok = excache_.Reserve(*this, n, kRoomWait);
  Count(&MemStats::room_wait_ns, NowNs() - t0);
  if (ok) return true;
  excache_.Overcommit(*this, n);
  Count(&MemStats::overcommit_pages, n);
  LEGO_LOG_RATELIMITED("excache_overcommit pid={} pages={} (eviction stalled: memory monitors full or slow?)",
                       pid_.load(), n);
  return false;
}

// First touch: no network trip. Zero-fill the run of never-touched pages around addr inside its aligned
// block. The fault's kind predicts the block's use: after a write fault the block goes in writable and
// dirty (a program writes what it allocates; write-protecting it would cost one more fault per page),
// after a read fault it goes in write-protected and clean.
void ProcessSession::ZeroFill(uint64_t addr, bool write) {
  FlushInstall();  // nothing to overlap it with here, and the reservation below may wait
  const uint64_t block = options_.zero_block_pages * kPage;
  uint64_t lo = addr, hi = addr + kPage;
  {
    std::lock_guard lock(mu_);
    const uint64_t blo = addr & ~(block - 1), bhi = blo + block;
    while (lo > blo && !pages_.count((lo - kPage) / kPage)) lo -= kPage;
    while (hi < bhi && !pages_.count(hi / kPage)) hi += kPage;
  }
  size_t n = (hi - lo) / kPage;
  if (n > cap_pages_ / 4) {  // a tiny cap: one page at a time
    lo = addr;
    hi = addr + kPage;
    n = 1;
  }
  ReserveOrOvercommit(n);
  int64_t rc = Copy(lo, zeros_.data(), hi - lo, !write, false);
  if (rc < 0 && n > 1) {
    // The block crosses the end of the registered range (ENOENT) or a page installed behind our back
    // (EEXIST): fall back to the faulting page alone.
    excache_.Release(*this, n - 1);
    lo = addr;
    hi = addr + kPage;
    n = 1;
    rc = Copy(lo, zeros_.data(), kPage, !write, false);
  } else if (rc > 0 && rc < static_cast<int64_t>(hi - lo)) {
    excache_.Release(*this, n - static_cast<size_t>(rc) / kPage);  // partial: keep what went in
    hi = lo + static_cast<uint64_t>(rc);
    n = (hi - lo) / kPage;
    if (addr >= hi) {  // the faulting page was not covered
      ReserveOrOvercommit(1);
      if (Copy(addr, zeros_.data(), kPage, !write, false) == static_cast<int64_t>(kPage)) {
        std::lock_guard lock(mu_);
        pages_[addr / kPage] = Page{State::kResident, write, false, !write};
        rset_.Insert(addr / kPage);
      } else {
        excache_.Release(*this, 1);
      }
    }
  }
  if (rc < 0) {
    excache_.Release(*this, n);
    if (rc == -EEXIST) return Wake(addr, kPage);  // a racing fault installed it
    LEGO_LOG_RATELIMITED("zero_fill_failed pid={} addr={:#x} err={}", pid_.load(), addr,
                         strerror(static_cast<int>(-rc)));
    return Wake(addr, kPage);
  }
  {
    std::lock_guard lock(mu_);
    for (uint64_t a = lo; a < hi; a += kPage) {
      pages_[a / kPage] = Page{State::kResident, write, false, !write};
      rset_.Insert(a / kPage);
    }
  }
  Count(&MemStats::zero_filled, n);
  Count(&MemStats::hits);
  Wake(addr, kPage);
}

// A page that lives on a memory monitor: fetch it, with the prefetcher's proposals, in one request. As for
// zero fill, the fault's kind predicts the pages': after a write fault they go in writable and dirty, and so
// they do after a read fault when most pages fetched on reads were written soon after (read-modify-write
// patterns), which saves a write-protect fault per page.
//
// Sequential streams are pipelined (IssueAhead, StageAhead): a forward stream at full depth has its next
// window fetched while the current one is installed, and installed before the program gets there but for a
// trigger page (staged_). One window ahead at most; a miss elsewhere drops it (decision 006).
void ProcessSession::Fetch(uint64_t addr, bool write) {
  const uint64_t pg = addr / kPage;
  if (staged_ || ahead_) FlushInstall();  // streams: kept simple, in order
  if (staged_) {
    const bool reached = staged_->addr == addr;
    InstallStaged(reached, write);  // on a miss elsewhere, the staged page goes in anyway
    if (reached) return StageAhead();
  }
  if (ahead_) {
    Window w = std::move(*ahead_);
    ahead_.reset();
    if (pg >= w.vaddrs.front() / kPage && pg <= w.vaddrs.back() / kPage) {
      // The stream outran the window fetched ahead: send for the next one, then install this one.
      IssueAhead(addr);
      InstallWindow(std::move(w), addr);
      return StageAhead();
    }
    // A miss elsewhere: the stream stopped. Its pages are not installed (they would push out pages the
    // program is using now: zstd --long at 25% took 3x the misses when they were). Nor is it waited for:
    // the page the program faulted on is fetched now, not after the rest of that window.
    w.call->Abandon();
    excache_.Release(*this, w.vaddrs.size());
  }
  Window w;
  w.vaddrs.push_back(addr);
  {
    std::lock_guard lock(mu_);
    w.sampled = !write && SampleWindowLocked();
    w.writable = write || !w.sampled;
    for (uint64_t p : prefetcher_.OnMiss(pg)) {
      if ((p * kPage) >> kRegionShift != addr >> kRegionShift) break;  // one request: one vRegion
      auto it = pages_.find(p);
      if (it == pages_.end() || it->second.state != State::kRemote) continue;
      if (deferred_ && deferred_->vaddrs.front() == p * kPage) continue;  // in, not accounted for yet
      w.vaddrs.push_back(p * kPage);
    }
  }
  ClampWindow(w.vaddrs);
  const size_t n = w.vaddrs.size();
  auto call = memory_.ReadStart(space_, w.vaddrs, SpareReply());
  FlushInstall();  // the previous fault's bookkeeping, while this request is in flight
  if (!call.ok())
    return FailFault(addr, fmt::format("cannot read page {:#x} from its memory monitor: {}", addr,
                                       call.status().ToString()));
  // Room for the pages is made while they travel: a wait for the evictor overlaps the fetch.
  ReserveOrOvercommit(n);
  w.call = std::move(*call);
  if (n > 1) IssueAhead(addr);
  InstallWindow(std::move(w), addr);
  StageAhead();
}

// Only write-protected windows show whether their pages get written; while windows go in writable, one in
// eight still goes in protected to keep measuring. REQUIRES mu_.
bool ProcessSession::SampleWindowLocked() {
  return ++windows_ % 8 == 0 || pf_installed_ < 256 || pf_written_ * 2 < pf_installed_;
}

// A window is at most a quarter of the process's cap.
void ProcessSession::ClampWindow(std::vector<uint64_t>& vaddrs) const {
  vaddrs.resize(std::min(vaddrs.size(), std::max<size_t>(1, cap_pages_ / 4)));
}

// With the program woken and walking the window just installed, wait for the one fetched ahead and install it
// but for its first page, kept here (staged_): the program's fault on that page is the signal that it got
// there, which sends for the next window (Linux readahead's PG_readahead marker). The install is thus off
// the program's critical path.
void ProcessSession::StageAhead() {
  if (!ahead_) return;
  Window w = std::move(*ahead_);
  ahead_.reset();
  IssueAhead(w.vaddrs.front());
  InstallWindow(std::move(w), 0, /*stage_first=*/true);
}

// Installs the staged page; wakes its fault if `wake` (the program got there), else installs it quietly.
void ProcessSession::InstallStaged(bool wake, bool write) {
  Staged sp = std::move(*staged_);
  staged_.reset();
  const bool writable = sp.writable || write;
  const int64_t rc = Copy(sp.addr, sp.data.data(), kPage, !writable, wake);
  const bool ok = rc == static_cast<int64_t>(kPage);
  if (wake && rc < 0) Wake(sp.addr, kPage);  // a failed copy wakes nobody (see InstallWindow)
  if (!ok) {
    excache_.Release(*this, 1);
    return;
  }
  {
    std::lock_guard lock(mu_);
    if (auto it = pages_.find(sp.addr / kPage); it != pages_.end()) {
      it->second = Page{State::kResident, writable, true, !writable, !writable};
      rset_.Insert(sp.addr / kPage);
    }
  }
  remote_.fetch_sub(std::min<uint64_t>(1, remote_.load()), std::memory_order_relaxed);
  if (wake) Count(&MemStats::hits);
}

// Sends for the window after the stream's current one, if the prefetcher has a forward stream, the pages are
// still remote and in the same vRegion, and the ExCache has room within kAheadRoomWait. (Two windows in
// flight instead of one measured no faster: 0.73-1.10 GB/s on seq_scan.)
void ProcessSession::IssueAhead(uint64_t fault_addr) {
  if (!options_.fetch_ahead) return;
  Window w;
  {
    std::lock_guard lock(mu_);
    // Only a stream at full depth (its last windows were all used) is fetched ahead: short streams in a
    // program that also misses elsewhere would spend the ExCache on pages it does not reach.
    const uint64_t start = prefetcher_.depth() == Prefetcher::kMaxDepth ? prefetcher_.NextWindowStart() : 0;
    if (start == 0) return;
    // The program is expected at `start` next: plan that window now (OnMiss counts the current one used).
    std::vector<uint64_t> planned{start};
    for (uint64_t p : prefetcher_.OnMiss(start)) planned.push_back(p);
    for (uint64_t p : planned) {  // a contiguous run of remote pages from `start`
      if ((p * kPage) >> kRegionShift != fault_addr >> kRegionShift) break;
      if (!w.vaddrs.empty() && p != w.vaddrs.back() / kPage + 1) break;
      auto it = pages_.find(p);
      if (it == pages_.end() || it->second.state != State::kRemote) break;
      w.vaddrs.push_back(p * kPage);
    }
    if (w.vaddrs.empty()) return;
    w.sampled = SampleWindowLocked();
    w.writable = !w.sampled;
  }
  ClampWindow(w.vaddrs);
  if (!excache_.Reserve(*this, w.vaddrs.size(), kAheadRoomWait)) return;
  auto call = memory_.ReadStart(space_, w.vaddrs, SpareReply());
  if (!call.ok()) {
    excache_.Release(*this, w.vaddrs.size());
    return;  // the miss that reaches these pages fetches them itself (and reports the error)
  }
  w.call = std::move(*call);
  w.ahead = true;
  ahead_ = std::move(w);
}

proto::Bytes ProcessSession::SpareReply() {
  if (spare_replies_.empty()) return {};
  proto::Bytes b = std::move(spare_replies_.back());
  spare_replies_.pop_back();
  return b;
}

// Waits for a window's pages and installs them; wakes the fault at fault_addr (0: none) once its page is in.
void ProcessSession::InstallWindow(Window w, uint64_t fault_addr, bool stage_first) {
  size_t n = w.vaddrs.size();
  const size_t fetched = n;
  std::vector<uint8_t> present(n);
  // The pages are installed straight from the reply (no copy): the k-th present page is at pages + k * kPage.
  msg::ReplyView reply;
  const uint8_t* pages = nullptr;
  Status st = MemoryClient::ReadFinish(*w.call, n, present.data(), &reply, &pages);
  if (!st.ok()) {
    excache_.Release(*this, n);
    if (fault_addr == 0) return;  // nobody waits for these: the miss that reaches them fetches them again
    return FailFault(fault_addr, fmt::format("cannot read page {:#x} from its memory monitor: {}", fault_addr,
                                             st.ToString()));
  }
  // Only pages the memory monitor took (written back, or copied there by a fork) are read from it. One it
  // says it never had was lost: the mmon restarted at the same address with an empty pool. Installing a
  // zero page would hand the program wrong data without a word. Past this check every page is present, so
  // the i-th page of the window is at pages + i * kPage.
  if (auto lost = std::find(present.begin(), present.end(), 0); lost != present.end()) {
    const size_t i = static_cast<size_t>(lost - present.begin());
    const size_t absent = static_cast<size_t>(std::count(lost, present.end(), 0));
    excache_.Release(*this, n);
    LEGO_LOG_RATELIMITED("remote_pages_lost pid={} space={:#x} pages={} first={:#x}", pid_.load(), space_,
                         absent, w.vaddrs[i]);
    if (fault_addr == 0) return;  // the miss that reaches them fetches them again, and fails then
    return FailFault(
        fault_addr,
        fmt::format("its memory monitor no longer has {} of its pages (page {:#x}; restarted with "
                    "an empty pool?): they are lost",
                    absent, w.vaddrs[i]));
  }
  if (stage_first && n > 1) {
    // Keep the first page back (StageAhead): its data here, the page remote and reserved until its fault.
    Staged sp{w.vaddrs.front(), w.writable, std::vector<uint8_t>(pages, pages + kPage)};
    pages += kPage;
    staged_ = std::move(sp);
    w.vaddrs.erase(w.vaddrs.begin());
    --n;
  }
  const uint64_t addr = w.vaddrs.front();
  size_t installed = 0;
  std::vector<bool> ok(n, false);
  // A forward run of pages (a sequential window) is one UFFDIO_COPY, which also wakes the fault.
  bool run = n > 1;
  for (size_t i = 0; run && i < n; ++i) run = w.vaddrs[i] == addr + i * kPage;
  if (run) {
    const int64_t rc = Copy(addr, pages, n * kPage, !w.writable, fault_addr != 0);
    const size_t done = rc > 0 ? static_cast<size_t>(rc) / kPage : 0;
    for (size_t i = 0; i < done; ++i) ok[i] = true;
    installed = done;
    if (done < n) run = false;  // stopped short (EEXIST, an unmapped page?): the rest page by page below
  }
  // Otherwise page by page without waking anybody, the faulting page last.
  size_t fault_i = n;
  for (size_t i = 0; i < n; ++i)
    if (w.vaddrs[i] == fault_addr) fault_i = i;
  auto one = [&](size_t i) {
    const bool fault_page = i == fault_i;
    int64_t rc = Copy(w.vaddrs[i], pages + i * kPage, kPage, !w.writable, fault_page);
    ok[i] = rc == static_cast<int64_t>(kPage);
    if (ok[i]) ++installed;
    // A failed copy wakes nobody: after EEXIST the page is there, after EAGAIN (an UNMAP/fork event not
    // read yet) or ENOENT the thread faults again.
    if (fault_page && rc < 0) Wake(fault_addr, kPage);
  };
  if (!run) {
    for (size_t i = n; i-- > 0;)
      if (i != fault_i && !ok[i]) one(i);
    if (fault_i < n && !ok[fault_i]) one(fault_i);
  } else if (fault_i == n && fault_addr != 0) {
    Wake(fault_addr, kPage);  // the fault is not in this window (cannot happen for a window of its own)
  }
  if (installed < n) excache_.Release(*this, n - installed);
  Installed done{std::move(w.vaddrs), std::move(ok), installed,       fetched,         w.writable,
                 w.sampled,           w.ahead,       fault_addr != 0, std::move(reply)};
  // The program runs again (on this CPU, before this thread) and its next fault waits for what follows
  // here. For a single page that is a fault's whole bookkeeping (0.4 us of 11: docs/benchmarks-memory.md),
  // so it is done while that fault's request is in flight instead.
  if (fetched == 1 && done.fault && !done.ahead && installed == 1) {
    FlushInstall();  // cannot be pending (Fetch flushed it), but two must never be
    deferred_ = std::move(done);
    return;
  }
  Account(std::move(done));
}

void ProcessSession::FlushInstall() {
  if (!deferred_) return;
  Installed done = std::move(*deferred_);
  deferred_.reset();
  Account(std::move(done));
}

void ProcessSession::Account(Installed&& done) {
  const size_t n = done.vaddrs.size(), fetched = done.fetched;
  {
    std::lock_guard lock(mu_);
    for (size_t i = 0; i < n; ++i) {
      if (!done.ok[i]) continue;
      auto it = pages_.find(done.vaddrs[i] / kPage);
      if (it == pages_.end()) continue;  // unmapped meanwhile
      it->second = Page{State::kResident, done.writable, true, !done.writable, !done.writable};
      rset_.Insert(done.vaddrs[i] / kPage);
    }
    prefetcher_.Issued(done.ahead ? fetched : fetched - 1);
    if (done.sampled) pf_installed_ += fetched;
    if (pf_installed_ > 8192) {  // a moving average: recent behaviour counts
      pf_installed_ /= 2;
      pf_written_ /= 2;
    }
    Count(&MemStats::prefetch_used,
          prefetcher_.used() - stats_.prefetch_used.load(std::memory_order_relaxed));
  }
  remote_.fetch_sub(std::min<uint64_t>(done.installed, remote_.load()), std::memory_order_relaxed);
  // A reply read in place goes back to UCX here; a copied one's buffer is kept for a later window.
  if (proto::Bytes buf = done.reply.TakeBuffer(); buf.capacity() > 0 && spare_replies_.size() < 2)
    spare_replies_.push_back(std::move(buf));
  if (done.fault) Count(&MemStats::misses);
  Count(&MemStats::fetched_pages, fetched);
  Count(&MemStats::prefetch_issued, done.ahead ? fetched : fetched - 1);
}

// An unmapped range may be mapped again at once: a window fetched ahead over it must not be installed there.
void ProcessSession::DropAheadIn(uint64_t start, uint64_t end) {
  if (staged_ && staged_->addr >= start && staged_->addr < end) {
    staged_.reset();
    excache_.Release(*this, 1);
  }
  if (!ahead_ || ahead_->vaddrs.back() < start || ahead_->vaddrs.front() >= end) return;
  ahead_->call->Abandon();  // its reply, if it still comes, is dropped unread
  excache_.Release(*this, ahead_->vaddrs.size());
  ahead_.reset();
}

void ProcessSession::HandleUnmap(uint64_t start, uint64_t end) {
  start &= ~(kPage - 1);
  DropAheadIn(start, end);
  size_t resident = 0;
  bool had_remote = false;
  {
    std::lock_guard lock(mu_);
    auto drop = [&](std::unordered_map<uint64_t, Page>::iterator it) {
      if (it->second.state == State::kResident) {
        rset_.Erase(it->first);
        ++resident;
      }
      if (it->second.state != State::kResident || it->second.remote) had_remote = true;
      if (it->second.state == State::kRemote) remote_.fetch_sub(1, std::memory_order_relaxed);
      return pages_.erase(it);
    };
    if ((end - start) / kPage <= pages_.size()) {
      for (uint64_t a = start; a < end; a += kPage)
        if (auto it = pages_.find(a / kPage); it != pages_.end()) drop(it);
    } else {
      for (auto it = pages_.begin(); it != pages_.end();)
        it = (it->first * kPage >= start && it->first * kPage < end) ? drop(it) : std::next(it);
    }
  }
  if (resident) excache_.Release(*this, resident);
  if (had_remote) {
    uint64_t freed = 0;
    Status st = memory_.FreeRange(space_, start, end - start, &freed);
    if (!st.ok())
      LEGO_LOG_WARN("free_range_failed pid={} start={:#x} err={}", pid_.load(), start, st.ToString());
    Count(&MemStats::freed_remote_pages, freed);
  }
}

void ProcessSession::Fatal(const std::string& why) {
  {
    std::lock_guard lock(why_mu_);  // `lego run` shows its user the first reason (c2p.list_processes)
    if (killed_why_.empty()) killed_why_ = why.substr(0, proto::kMaxKilledWhy);
  }
  if (pid_t pid = pid_.load(); pid > 0)
    Kill(pid, why);
  else
    LEGO_LOG_ERROR("memory_unreachable fork_child comm={} {}; killed when it says hello", comm_, why);
}

void ProcessSession::Kill(pid_t pid, const std::string& why) {
  LEGO_LOG_ERROR("memory_unreachable pid={} comm={} {}; killing the process", pid, comm_, why);
  kill(pid, SIGKILL);
}

// A fault whose page cannot be read: the process is killed. A fork child that has not said HELLO yet has no
// pid to kill, and it faults on its way to the HELLO (its atfork handler runs in it): left blocked, it would
// never say it, and hang for good once its session gave up waiting. Its fault is resolved with a zero page
// instead, so that it reaches the HELLO, where Attach kills it; none of the program's own code runs before.
void ProcessSession::FailFault(uint64_t addr, const std::string& why) {
  Fatal(why);
  if (pid_.load() > 0) return;
  excache_.Overcommit(*this, 1);
  bool installed = Copy(addr, zeros_.data(), kPage, false, true) == static_cast<int64_t>(kPage);
  if (installed) {
    std::lock_guard lock(mu_);
    auto it = pages_.find(addr / kPage);
    installed = it != pages_.end();
    if (installed) {
      if (it->second.state == State::kRemote) remote_.fetch_sub(1, std::memory_order_relaxed);
      it->second = Page{State::kResident, true, it->second.remote, false};
      rset_.Insert(addr / kPage);
    }
  } else {
    Wake(addr, kPage);
  }
  if (!installed) excache_.Release(*this, 1);
}

void ProcessSession::Teardown() {
  ended_.store(true, std::memory_order_release);
  // The window fetched ahead may hold its reply in the messenger's receive buffer (read in place): give it
  // back now, not when the session object is freed, which may be after the messenger is gone.
  DropAheadIn(0, ~uint64_t{0});
  size_t resident;
  {
    // Let an in-flight eviction batch finish first; none starts after it (ended_). Not held across the RPCs
    // below: the pmon's one evictor waits for this lock, and a dead memory monitor costs each its timeout.
    std::lock_guard evict(evict_mu_);
    std::lock_guard lock(mu_);
    resident = resident_pages();
    pages_.clear();
  }
  excache_.Release(*this, resident);
  uint64_t freed = 0;
  Status st = memory_.DestroySpace(space_, &freed);
  if (!st.ok())
    LEGO_LOG_WARN("destroy_space_failed pid={} space={:#x} err={} (retried later)", pid_.load(), space_,
                  st.ToString());
  remote_freed_.store(st.ok(), std::memory_order_release);
  Count(&MemStats::freed_remote_pages, freed);
  remote_.store(0);
  LEGO_LOG_INFO("process_ended pid={} comm={} space={:#x} faults={} misses={} remote_pages_freed={}",
                pid_.load(), comm_, space_, stats_.faults.load(), stats_.misses.load(), freed);
  if (on_end_) on_end_(this);
}

// ---- eviction (the ExCache's evictor thread) --------------------------------------------------------------

// Write-protects sorted page numbers or addresses (unit: 1 or kPage), one ioctl per run of neighbours:
// each ioctl costs a TLB shoot-down in the program. A run that fails (EAGAIN while an UNMAP/fork event is
// unread, ENOENT across an unmapped hole) is retried page by page; returns the entries left unprotected.
std::vector<uint64_t> ProcessSession::ProtectRuns(const std::vector<uint64_t>& sorted, uint64_t unit) {
  std::vector<uint64_t> failed;
  auto addr = [&](uint64_t e) { return unit == 1 ? e * kPage : e; };
  size_t i = 0;
  while (i < sorted.size()) {
    size_t j = i + 1;
    while (j < sorted.size() && sorted[j] == sorted[j - 1] + (unit == 1 ? 1 : kPage)) ++j;
    if (Protect(addr(sorted[i]), (j - i) * kPage, true) < 0) {
      for (size_t k = i; k < j; ++k)
        if (j - i == 1 || Protect(addr(sorted[k]), kPage, true) < 0) failed.push_back(sorted[k]);
    }
    i = j;
  }
  return failed;
}

// Remote memory full: the program's new allocations fail from now on (malloc NULL, mmap ENOMEM), while
// what it has keeps working (past the ExCache budget, counted as overcommit). REQUIRES evict_mu_.
void ProcessSession::SetRemoteFull(int sock, bool full) {
  if (full) PauseEviction(1000);  // while full, a write-back is tried once a second
  if (remote_full_ == full) return;
  remote_full_ = full;
  if (full)
    LEGO_LOG_WARN(
        "remote_memory_full pid={} comm={}: its new allocations fail until memory monitors have room",
        pid_.load(), comm_);
  else
    LEGO_LOG_INFO("remote_memory_available pid={} comm={}", pid_.load(), comm_);
  uint8_t buf[sizeof(lego_local_hdr) + sizeof(lego_local_remote_full)];
  lego_local_hdr h{LEGO_LOCAL_MAGIC, LEGO_LOCAL_VERSION, LEGO_LOCAL_REMOTE_FULL};
  lego_local_remote_full f{full ? 1 : 0, 0};
  std::memcpy(buf, &h, sizeof h);
  std::memcpy(buf + sizeof h, &f, sizeof f);
  (void)send(sock, buf, sizeof buf, MSG_NOSIGNAL | MSG_DONTWAIT);
}

size_t ProcessSession::EvictBatch(size_t max_pages) {
  std::lock_guard evict(evict_mu_);
  if (!can_evict()) return 0;
  if (evict_paused()) return 0;  // memory monitors full (retried once a second), or a write-back failed
  const uint64_t t0 = NowNs();
  struct Timer {
    ProcessSession* s;
    uint64_t t0;
    ~Timer() {
      s->Count(&MemStats::evict_batches);
      s->Count(&MemStats::evict_ns, NowNs() - t0);
    }
  } timer{this, t0};
  const int sock = sock_.load();
  const pid_t pid = pid_.load();
  std::vector<uint64_t> victims, rearm, dirty, dirty_unprotected;
  {
    std::lock_guard lock(mu_);
    victims = rset_.PickVictims(std::min(max_pages, ExCache::kBatchPages), [&](uint64_t pg) {
      auto& p = pages_[pg];
      if (!p.wp) rearm.push_back(pg);  // CLOCK: catch its next write
    });
    for (uint64_t pg : victims) {
      auto& p = pages_[pg];
      p.state = State::kEvicting;
      if (p.dirty) {
        dirty.push_back(pg * kPage);
        if (!p.wp) dirty_unprotected.push_back(pg * kPage);
        p.wp = true;
      }
    }
    // Protection changes happen under mu_ with their flag, so Page::wp never lies to a racing fault.
    // Address order: runs of neighbours take one ioctl (one TLB shoot-down in the program).
    std::sort(rearm.begin(), rearm.end());
    const std::vector<uint64_t> not_rearmed = ProtectRuns(rearm, 1);
    for (uint64_t pg : rearm)
      if (!std::binary_search(not_rearmed.begin(), not_rearmed.end(), pg)) pages_[pg].wp = true;
    // 1. Stop writes to dirty victims, so that what we read is what stays. A victim that could not be
    // protected stays resident: a write after our read would be lost by the DROP.
    std::sort(dirty_unprotected.begin(), dirty_unprotected.end());
    const std::vector<uint64_t> unprotected = ProtectRuns(dirty_unprotected, kPage);
    if (!unprotected.empty()) {
      auto kept = [&](uint64_t a) { return std::binary_search(unprotected.begin(), unprotected.end(), a); };
      for (uint64_t a : unprotected) {
        Page& p = pages_[a / kPage];
        p.state = State::kResident;
        p.wp = false;
        rset_.Insert(a / kPage);
      }
      std::erase_if(victims, [&](uint64_t pg) { return kept(pg * kPage); });
      std::erase_if(dirty, kept);
    }
  }
  if (victims.empty()) return 0;
  std::sort(victims.begin(), victims.end());  // runs of neighbours: one madvise each in the program
  std::sort(dirty.begin(), dirty.end());
  // 2. Read them and write them back.
  bool ok = true;
  std::vector<uint64_t> written;
  if (!dirty.empty()) {
    std::vector<iovec> local(dirty.size()), remote(dirty.size());
    for (size_t i = 0; i < dirty.size(); ++i) {
      local[i] = {evict_buf_.data() + i * kPage, kPage};
      remote[i] = {reinterpret_cast<void*>(dirty[i]), kPage};
    }
    ssize_t got = process_vm_readv(pid, local.data(), local.size(), remote.data(), remote.size(), 0);
    size_t pages_read = got > 0 ? static_cast<size_t>(got) / kPage : 0;
    // A short read means a page was unmapped meanwhile; skip it (its UNMAP event frees it).
    for (size_t i = pages_read; i < dirty.size(); ++i) {
      ssize_t one = process_vm_readv(pid, &local[i], 1, &remote[i], 1, 0);
      if (one != static_cast<ssize_t>(kPage)) dirty[i] = 0;
    }
    std::vector<uint64_t> vaddrs;
    std::vector<uint8_t> packed;
    size_t k = 0;
    for (size_t i = 0; i < dirty.size(); ++i) {
      if (!dirty[i]) continue;
      if (k != i) std::memcpy(evict_buf_.data() + k * kPage, evict_buf_.data() + i * kPage, kPage);
      vaddrs.push_back(dirty[i]);
      ++k;
    }
    bool owner_lost = false;
    Status st = memory_.Write(space_, vaddrs, evict_buf_.data(), &owner_lost);
    if (!st.ok()) {
      ok = false;
      LEGO_LOG_RATELIMITED("writeback_failed pid={} pages={} err={}", pid_.load(), vaddrs.size(),
                           st.ToString());
      if (st.code() == StatusCode::kOutOfMemory) {
        SetRemoteFull(sock, true);
      } else {
        writeback_pause_ms_ = std::clamp(writeback_pause_ms_ * 2, kMinWritebackPause, kMaxWritebackPause);
        PauseEviction(writeback_pause_ms_);
      }
      // The memory monitor that holds some of the process's pages is gone, twice in a row (the second
      // time on a fresh connection, after a pause: a connection that failed once is not a dead monitor):
      // its pages are lost, as the read path finds on the next fault there. Kill the process now, not
      // whenever it next touches one: until then every fault would wait for room that cannot be made.
      owner_lost_batches_ = owner_lost ? owner_lost_batches_ + 1 : 0;
      if (owner_lost_batches_ >= 2)
        Fatal(fmt::format("cannot write pages back to its memory monitor, which holds some of its memory: {}",
                          st.ToString()));
    } else {
      written = std::move(vaddrs);
      writeback_pause_ms_ = 0;
      owner_lost_batches_ = 0;
      if (remote_full_) SetRemoteFull(sock, false);
    }
  }
  // 3. Ask the program's helper thread to drop them, a chunk at a time. A chunk whose ACK does not come in
  // time stays in doubt (late_drop_); chunks never sent stay resident.
  std::vector<uint64_t> dropped, kept, in_doubt;
  uint64_t in_doubt_seq = 0;
  if (!ok) {
    kept = victims;  // the write-back failed, so nothing was dropped
  } else {
    size_t i = 0;
    int drop_err = 0;
    while (i < victims.size() && !drop_err) {
      const size_t cnt = std::min<size_t>(LEGO_LOCAL_MAX_DROP, victims.size() - i);
      const std::span<const uint64_t> chunk(victims.data() + i, cnt);
      const uint64_t seq = ++drop_seq_;
      drop_err = SendDrop(sock, seq, chunk);
      if (drop_err) break;  // not sent (the program is gone): the chunk stays
      i += cnt;
      drop_err = AwaitDropAck(sock, seq, options_.drop_timeout_ms);
      if (drop_err == ETIMEDOUT) {
        in_doubt.assign(chunk.begin(), chunk.end());
        in_doubt_seq = seq;
        break;
      }
      // Done, or failed in the helper (the ACK's errno) and maybe carried out in part: every page's data is
      // on a memory monitor (or it was never written), so the chunk is settled as evicted; a page the program
      // still has mapped then stays correct, only untracked by the ExCache.
      dropped.insert(dropped.end(), chunk.begin(), chunk.end());
    }
    kept.assign(victims.begin() + static_cast<ptrdiff_t>(i), victims.end());
    if (drop_err && drop_err != EPIPE && drop_err != ETIMEDOUT)
      LEGO_LOG_RATELIMITED("drop_failed pid={} err={}", pid_.load(), strerror(drop_err));
  }
  std::sort(written.begin(), written.end());
  Count(&MemStats::writeback_pages, written.size());
  if (!in_doubt.empty()) {
    // The helper has not answered (the program is stopped, or very slow). Settling the chunk now would be
    // wrong: the DROP may still run later, and a write let through meanwhile would be discarded by it. So its
    // pages stay kEvicting, still counted in the ExCache, faults on them wait, and this process is not
    // picked for eviction until the ACK comes (the fault thread watches the socket: SettleLateDrop).
    LEGO_LOG_WARN(
        "drop_ack_late pid={} seq={} pages={} timeout_ms={}: the pages stay in doubt until the "
        "program's helper thread answers (is the program stopped?)",
        pid_.load(), in_doubt_seq, in_doubt.size(), options_.drop_timeout_ms);
    late_drop_ = LateDrop{in_doubt_seq, std::move(in_doubt), {}};
    for (uint64_t pg : late_drop_.pages)
      if (std::binary_search(written.begin(), written.end(), pg * kPage))
        late_drop_.written.push_back(pg * kPage);
    drop_in_doubt_.store(true, std::memory_order_release);
    // The fault thread may be asleep in poll() without POLLIN for the socket (it reads drop_in_doubt_ once
    // per round): wake it to watch for the ACK. Without this, a fault parked on one of these pages before the
    // DROP fell in doubt waited for an event that never came: a single-threaded program hung for good.
    uint64_t one = 1;
    (void)!write(wake_fd_, &one, sizeof one);
  }
  return Settle(dropped, kept, written);
}

int ProcessSession::SendDrop(int sock, uint64_t seq, std::span<const uint64_t> pages) {
  std::vector<uint8_t> buf(sizeof(lego_local_hdr) + sizeof(lego_local_drop) + pages.size() * 8);
  lego_local_hdr h{LEGO_LOCAL_MAGIC, LEGO_LOCAL_VERSION, LEGO_LOCAL_DROP};
  lego_local_drop d{seq, static_cast<uint32_t>(pages.size()), 0};
  std::memcpy(buf.data(), &h, sizeof h);
  std::memcpy(buf.data() + sizeof h, &d, sizeof d);
  for (size_t j = 0; j < pages.size(); ++j) {
    const uint64_t a = pages[j] * kPage;
    std::memcpy(buf.data() + sizeof h + sizeof d + j * 8, &a, 8);
  }
  if (send(sock, buf.data(), buf.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(buf.size()))
    return errno ? errno : EIO;
  return 0;
}

// Waits up to timeout_ms (0: only what is already there) for the DROP_ACK of seq. Returns its status (0 or
// the helper's errno), ETIMEDOUT, or the socket's error (EPIPE: the program is gone).
int ProcessSession::AwaitDropAck(int sock, uint64_t seq, int timeout_ms) {
  for (;;) {
    pollfd p{sock, POLLIN, 0};
    const int rc = poll(&p, 1, timeout_ms);
    if (rc < 0 && errno == EINTR) continue;
    if (rc <= 0) return ETIMEDOUT;
    uint8_t in[64];
    const ssize_t r = recv(sock, in, sizeof in, MSG_DONTWAIT);
    if (r < 0 && (errno == EAGAIN || errno == EINTR)) continue;
    if (r <= 0) return r == 0 ? EPIPE : errno;
    int32_t status = 0;
    if (proto::DecodeDropAck(std::span(in, static_cast<size_t>(r)), seq, &status)) return status;
    // Anything else (an older seq's ACK) is skipped.
  }
}

// The fault thread calls this while a DROP is in doubt and the program's socket is readable.
void ProcessSession::SettleLateDrop() {
  std::unique_lock evict(evict_mu_, std::try_to_lock);
  if (!evict.owns_lock() || !drop_in_doubt_.load(std::memory_order_acquire)) return;
  const int sock = sock_.load();
  const int err = sock < 0 ? EPIPE : AwaitDropAck(sock, late_drop_.seq, 0);
  if (err == ETIMEDOUT) return;  // not yet
  LEGO_LOG_INFO("drop_ack_arrived pid={} seq={} pages={} status={}", pid_.load(), late_drop_.seq,
                late_drop_.pages.size(), err);
  LateDrop late = std::move(late_drop_);
  late_drop_ = {};
  drop_in_doubt_.store(false, std::memory_order_release);
  // Carried out (maybe in part, after an error): settled as evicted, as in EvictBatch. EPIPE: the program is
  // gone and Teardown follows.
  Settle(late.pages, {}, late.written);
}

// 4. Settles a batch: dropped pages become remote (or forgotten, if never written), kept ones resident again
// (write-protected, clean if written back), and the faults parked on any of them are woken. Returns the
// number of pages evicted. REQUIRES evict_mu_; `written` sorted.
size_t ProcessSession::Settle(const std::vector<uint64_t>& dropped, const std::vector<uint64_t>& kept,
                              const std::vector<uint64_t>& written) {
  size_t evicted = 0, n_clean = 0, n_dirty = 0;
  std::vector<uint64_t> parked;
  {
    std::lock_guard lock(mu_);
    for (uint64_t pg : kept) {
      auto it = pages_.find(pg);
      if (it == pages_.end()) continue;  // unmapped meanwhile
      Page& p = it->second;
      const bool wb = std::binary_search(written.begin(), written.end(), pg * kPage);
      p = Page{State::kResident, p.dirty && !wb, p.remote || wb, true};
      rset_.Insert(pg);
    }
    for (uint64_t pg : dropped) {
      auto it = pages_.find(pg);
      if (it == pages_.end()) continue;
      Page& p = it->second;
      const bool wb = std::binary_search(written.begin(), written.end(), pg * kPage);
      ++evicted;
      (p.dirty ? n_dirty : n_clean)++;
      if (p.remote || wb) {
        p = Page{State::kRemote, false, true, false};
        remote_.fetch_add(1, std::memory_order_relaxed);
      } else {
        pages_.erase(it);  // never written: it reads as zero again, nothing kept remotely
      }
    }
    // Faults parked on pages still in doubt stay parked; the others are woken (they fault again if needed).
    std::vector<uint64_t> still;
    const bool doubt = drop_in_doubt_.load(std::memory_order_relaxed);
    for (uint64_t a : parked_) {
      const auto& d = late_drop_.pages;
      (doubt && std::find(d.begin(), d.end(), a / kPage) != d.end() ? still : parked).push_back(a);
    }
    parked_.swap(still);
  }
  if (evicted) excache_.Release(*this, evicted);
  Count(&MemStats::evicted_clean, n_clean);
  Count(&MemStats::evicted_dirty, n_dirty);
  for (uint64_t a : parked) Wake(a, kPage);
  return evicted;
}

}  // namespace lego::pmon
