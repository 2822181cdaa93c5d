// ProcessSession: one program (one address space) running under this process monitor.
//
// It owns the program's userfaultfd and its local socket (src/protocol/local.h). A fault thread reads the
// uffd and resolves every fault: first touch is zero-filled locally in blocks, a page that lives on a memory
// monitor is fetched (with what the prefetcher proposes) and installed with UFFDIO_COPY, write-protected
// while clean so that its first write marks it dirty. The ExCache's evictor calls EvictBatch: it
// write-protects the victims, reads the dirty ones with process_vm_readv, writes them back, then asks the
// program's helper thread (in the preload) to MADV_DONTNEED them. Faults that land on pages being evicted
// are parked and woken when the batch is done. See docs/architecture.md, "How a page fault travels".
#pragma once

#include <sys/types.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "pmon/memory_client.h"
#include "pmon/prefetcher.h"
#include "pmon/resident_set.h"
#include "pmon/stats.h"

struct uffd_msg;

namespace lego::pmon {

class ExCache;

struct SessionOptions {
  EvictionPolicy policy = EvictionPolicy::kFifo;
  bool prefetch = true;
  uint32_t zero_block_pages = 64;  // first-touch zero fill granularity (256 KiB)
  uint32_t spin_us = 0;            // keep polling the uffd this long after a fault before sleeping
  bool follow_cpu = true;          // run the fault thread on the faulting thread's CPU
  int drop_timeout_ms = 10000;     // a DROP not answered by then leaves its pages in doubt (EvictBatch)
  bool fetch_ahead = true;         // pipeline sequential streams: fetch the next window during this one
};

struct SessionInfo {
  uint32_t pid = 0;
  uint64_t space = 0;
  std::string comm, job;
  uint64_t resident_pages = 0, remote_pages = 0, cap_pages = 0;
  uint64_t started_ms = 0;
  std::string killed_why;  // set if the pmon killed the process (its memory became unreachable)
};

class ProcessSession : public std::enable_shared_from_this<ProcessSession> {
 public:
  ProcessSession(int uffd, int sock, pid_t pid, uint64_t space, std::string comm, std::string job,
                 uint64_t cap_pages, const SessionOptions& options, ExCache& excache, MemoryClient& memory,
                 MemStats& pmon_totals);
  ~ProcessSession();

  // Starts the fault thread. on_end runs on it once the program is gone (socket closed) and the
  // session's remote memory has been freed.
  void Start(std::function<void(ProcessSession*)> on_end);
  // Ends the session early (pmon shutting down): stops the fault thread and frees remote memory.
  void Stop();

  // ExCache interface.
  size_t EvictBatch(size_t max_pages);
  uint64_t resident_pages() const { return resident_.load(std::memory_order_relaxed); }
  uint64_t cap_pages() const { return cap_pages_; }
  void AddResident(uint64_t n) { resident_.fetch_add(n, std::memory_order_relaxed); }
  void SubResident(uint64_t n) {
    resident_.fetch_sub(std::min(n, resident_pages()), std::memory_order_relaxed);
  }
  bool ended() const { return ended_.load(std::memory_order_acquire); }
  // After the session ended: whether its space was freed on every mmon that held it (else the pmon's
  // reaper retries: PmonService, SpaceJournal).
  bool remote_freed() const { return remote_freed_.load(std::memory_order_acquire); }

  SessionInfo Info() const;
  const MemStats& stats() const { return stats_; }
  pid_t pid() const { return pid_.load(); }
  // Eviction needs the program's helper thread: a fork child has none until its HELLO.
  // Nor while a DROP is in doubt (its pages wait for the late ACK).
  bool can_evict() const {
    return sock_.load() >= 0 && !ended() && !drop_in_doubt_.load(std::memory_order_acquire);
  }
  // Eviction pauses after a failed write-back (and once a second while the memory monitors are full).
  bool evict_paused() const { return MonoMillis() < evict_paused_until_ms_.load(std::memory_order_relaxed); }

  // fork(): the session of the child whose uffd came in UFFD_EVENT_FORK. It starts with a copy of this
  // page table (the kernel copied the mappings; the memory monitors copy the remote pages) and serves
  // faults at once; it can evict once Attach() gives it the child's pid and socket.
  std::shared_ptr<ProcessSession> ForkChild(int child_uffd, uint64_t child_space);
  void Attach(pid_t pid, int sock);
  // Called by the fault thread on UFFD_EVENT_FORK (set by the PmonService before Start).
  std::function<void(ProcessSession*, int child_uffd)> on_fork;
  uint64_t space() const { return space_; }
  int uffd() const { return uffd_; }
  const std::string& comm() const { return comm_; }

 private:
  enum class State : uint8_t { kResident, kEvicting, kRemote };
  struct Page {
    State state;
    bool dirty;               // written since it was installed (needs a write-back when evicted)
    bool remote;              // the memory monitor holds a copy
    bool wp;                  // write-protected now
    bool prefetched = false;  // fetched write-protected on a read, to see whether it gets written
    // A fork child's page that its parent was evicting when it forked: mapped in the child unless the
    // batch's DROP ran before the fork (ForkChild). Settled at the child's HELLO from its page table
    // (SettleForkedPages); before that, a missing-page fault on it fetches it, a write fault shows it mapped.
    bool maybe_dropped = false;
  };

  void FaultLoop();
  void SettleForkedPages(pid_t pid);  // Attach: a fork child's maybe_dropped pages, from its page table
  bool DroppedBeforeForkLocked(std::unordered_map<uint64_t, Page>::iterator it);
  void HandleMessage(const uffd_msg& m);
  void HandleFault(uint64_t addr, bool write, bool wp);
  void FollowCpu(uint32_t tid);
  void ZeroFill(uint64_t addr, bool write);
  void Fetch(uint64_t addr, bool write);
  // A window of pages being fetched from a memory monitor (fault thread only).
  struct Window {
    std::vector<uint64_t> vaddrs;  // the faulting page first, or (ahead) a forward run
    std::shared_ptr<msg::PendingCall> call;
    bool writable = false;  // install them writable (and dirty)
    bool sampled = false;   // counted in the written-after-read sample
    bool ahead = false;     // fetched ahead of any fault
  };
  // The first page of a window installed ahead, held back as the stream's trigger (fault thread only).
  struct Staged {
    uint64_t addr;
    bool writable;
    std::vector<uint8_t> data;  // kPage bytes
  };
  bool SampleWindowLocked();
  void ClampWindow(std::vector<uint64_t>& vaddrs) const;
  void IssueAhead(uint64_t fault_addr);
  void StageAhead();
  void InstallStaged(bool wake, bool write);
  void InstallWindow(Window w, uint64_t fault_addr, bool stage_first = false);
  // What InstallWindow leaves to do once a window's pages are in: their entries, the resident set, the
  // prefetcher's and the statistics' counts, the reply's buffer.
  struct Installed {
    std::vector<uint64_t> vaddrs;
    std::vector<bool> ok;  // installed, by vaddrs index
    size_t installed = 0, fetched = 0;
    bool writable = false, sampled = false, ahead = false, fault = false;
    msg::ReplyView reply;
  };
  void Account(Installed&& done);
  // A single page fetched for a fault is accounted for later: while the next fault's request is in flight
  // (Fetch), or before anything reads or changes that page's entry (FlushInstall: a fault on it, an event,
  // a zero fill, idle, teardown; a window's planning skips it). Until then its entry still says kRemote
  // and it is not in the resident set, so the evictor cannot pick it. Fault thread only.
  void FlushInstall();
  void DropAheadIn(uint64_t start, uint64_t end);
  void HandleUnmap(uint64_t start, uint64_t end);
  void Teardown();
  void Fatal(const std::string& why);                     // the program's memory is unreachable: kill it
  void FailFault(uint64_t addr, const std::string& why);  // Fatal, for the fault at addr
  void Kill(pid_t pid, const std::string& why);           // logs why, then SIGKILL
  bool ReserveOrOvercommit(size_t n);

  // uffd ioctls. Copy returns bytes copied or -errno.
  int64_t Copy(uint64_t dst, const void* src, uint64_t len, bool wp, bool wake);
  int Protect(uint64_t start, uint64_t len, bool wp);  // mode 0 also wakes
  void Wake(uint64_t start, uint64_t len);
  std::vector<uint64_t> ProtectRuns(const std::vector<uint64_t>& sorted, uint64_t unit);  // the failures
  void Count(std::atomic<uint64_t> MemStats::*field, uint64_t n = 1);

  const int uffd_;
  std::atomic<int> sock_;   // -1 until a fork child's HELLO arrives
  std::atomic<pid_t> pid_;  // 0 until then
  const uint64_t space_;
  const std::string comm_, job_;
  const uint64_t cap_pages_;
  const SessionOptions options_;
  const uint64_t started_ms_;
  ExCache& excache_;
  MemoryClient& memory_;
  MemStats& totals_;
  MemStats stats_;

  int stop_fd_ = -1;  // eventfd: Stop() wakes the fault thread
  int wake_fd_ = -1;  // eventfd: wakes the fault thread to poll again (a new socket; a DROP fell in doubt)
  std::thread thread_;
  std::function<void(ProcessSession*)> on_end_;
  std::atomic<bool> ended_{false};
  std::atomic<bool> remote_freed_{false};
  mutable std::mutex why_mu_;
  std::string killed_why_;  // guarded by why_mu_: the first reason Fatal was given
  std::atomic<uint64_t> resident_{0};
  std::atomic<uint64_t> remote_{0};
  int64_t attach_deadline_ms_ = 0;
  uint32_t follow_count_ = 0;  // fault thread only
  int current_cpu_ = -1;       // a fork child that has not said HELLO by then is given up

  mutable std::mutex mu_;                     // pages_, resident set, prefetcher, parked_
  std::unordered_map<uint64_t, Page> pages_;  // by page number (vaddr >> 12)
  ResidentSet rset_;
  Prefetcher prefetcher_;
  uint64_t pf_installed_ = 0, pf_written_ = 0;  // prefetched pages, and those written soon after (decaying)
  uint64_t windows_ = 0;                        // fetches (fault thread only)
  std::optional<Window> ahead_;                 // the window fetched ahead of the stream (fault thread only)
  std::optional<Staged> staged_;                // fault thread only
  std::optional<Installed> deferred_;           // FlushInstall (fault thread only)
  // Buffers of installed windows' replies, given to the next page reads (fault thread only): a reply then
  // needs no allocation, and a large one no zero-filled buffer (Channel::CallAsync). At most two are kept.
  std::vector<proto::Bytes> spare_replies_;
  proto::Bytes SpareReply();
  std::vector<uint64_t> parked_;  // fault addresses on pages being evicted; woken after the batch

  std::mutex evict_mu_;  // one eviction batch at a time; owns reads of sock_
  uint64_t drop_seq_ = 0;
  // A DROP whose ACK did not come within drop_timeout_ms: its pages stay kEvicting until it does.
  struct LateDrop {
    uint64_t seq = 0;
    std::vector<uint64_t> pages;    // page numbers
    std::vector<uint64_t> written;  // addresses of those written back by the batch (sorted)
  };
  LateDrop late_drop_;  // guarded by evict_mu_; read under mu_ too while drop_in_doubt_ (Settle)
  std::atomic<bool> drop_in_doubt_{false};
  int SendDrop(int sock, uint64_t seq, std::span<const uint64_t> pages);  // 0 or errno
  int AwaitDropAck(int sock, uint64_t seq, int timeout_ms);
  void SettleLateDrop();
  size_t Settle(const std::vector<uint64_t>& dropped, const std::vector<uint64_t>& kept,
                const std::vector<uint64_t>& written);
  std::atomic<bool> remote_full_{false};  // told the program that new allocations must fail
  // A write-back that failed is tried again after a pause: once a second while the memory monitors are
  // full, else after a pause that doubles up to kMaxWritebackPause (not every 20 ms on a new connection).
  // The ExCache's evictor skips this process meanwhile instead of picking it again and again while others
  // wait for room. Written under evict_mu_.
  std::atomic<int64_t> evict_paused_until_ms_{0};
  void PauseEviction(int64_t ms) {
    evict_paused_until_ms_.store(MonoMillis() + ms, std::memory_order_relaxed);
  }
  int64_t writeback_pause_ms_ = 0;  // the last pause after a failure other than full (guarded by evict_mu_)
  int owner_lost_batches_ = 0;      // consecutive batches whose write-back found an owner of pages gone
  void SetRemoteFull(int sock, bool full);
  std::vector<uint8_t> evict_buf_;
  std::vector<uint8_t> zeros_;
};

}  // namespace lego::pmon
