// C2P (0x07xx) messages: the CLI asking a process monitor about the processes it runs. See
// docs/protocol.md, "C2P".
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "protocol/codec.h"

namespace lego::proto {

// One process in a kListProcesses reply. Counters are totals since the process started.
struct ProcessFixed {
  uint32_t pid;
  uint32_t flags;           // kProcessEnded: the process is gone (kept a while so `lego run` can report)
  uint64_t space;           // its address space id on the memory monitors
  uint64_t started_ms;      // wall clock, ms since the epoch
  uint64_t resident_pages;  // in the ExCache now
  uint64_t remote_pages;    // only on memory monitors now
  uint64_t cap_pages;       // per-process ExCache cap (the pmon budget if none was given)
  uint64_t faults;
  uint64_t misses;
  uint64_t hits;
  uint64_t zero_filled;
  uint64_t fetched_pages;
  uint64_t prefetch_issued;
  uint64_t prefetch_used;
  uint64_t evicted_clean;
  uint64_t evicted_dirty;
  uint64_t writeback_pages;
  uint64_t freed_remote_pages;
  uint64_t fault_p50_ns;
  uint64_t fault_p99_ns;
  uint32_t vnode;             // id of the vNode the process runs in (0: none)
  uint32_t fault_service_ms;  // the pmon's service time of all its faults, summed (saturates at 2^32-1)
};
static_assert(sizeof(ProcessFixed) == 160);

struct ProcessRecord {
  ProcessFixed fixed{};
  std::string comm;  // program name
  std::string job;   // job id given by `lego run`
  // Why the process monitor killed the process (kProcessKilled), for `lego run` to tell its user: e.g. a
  // memory monitor holding its pages became unreachable. Empty otherwise.
  std::string killed_why;
};

inline constexpr uint32_t kProcessEnded = 1;
inline constexpr uint32_t kProcessKilled = 2;  // the process monitor killed it (see killed_why)
inline constexpr uint32_t kMaxProcesses = 65536;

// Reply: u32 count, then per process: ProcessFixed, string comm, string job, string killed_why (at most
// kMaxKilledWhy bytes). Empty request.
inline constexpr size_t kMaxKilledWhy = 1024;
Bytes EncodeProcessList(const std::vector<ProcessRecord>& procs);
Result<std::vector<ProcessRecord>> DecodeProcessList(std::span<const uint8_t> payload);

// kAttachVnode request: u32 pid of `lego run` (on the pmon's host: it and its descendants count as the
// vNode's from now on, before the program has even said HELLO), u32 reserved, string job (the `lego run`
// job id), string vnode name (empty: the default vNode, created on first use). The pmon looks the vNode up at
// the gm, mounts its storage (FUSE) if it is not mounted yet, and from then on counts the job's processes as
// the vNode's. Reply: AttachVnodeFixed, string name, string mountpoint. kNotFound (no such vNode),
// kPeerUnreachable (no smon or mmon alive), kIoError.
struct AttachVnodeFixed {
  uint32_t vnode;
  uint32_t reserved;
};
static_assert(sizeof(AttachVnodeFixed) == 8);
struct AttachVnodeReq {
  uint32_t pid = 0;
  std::string job;
  std::string vnode;
};
struct AttachVnodeResp {
  uint32_t vnode = 0;
  std::string name;
  std::string mountpoint;
};
// kDetachVnode request (after `lego vnode rm`): the pmon unmounts the vNode if it has it mounted (programs
// still in it see ENOTCONN). Empty reply, also when it was not mounted.
struct DetachVnodeReq {
  uint32_t vnode;
  uint32_t reserved;
};
static_assert(sizeof(DetachVnodeReq) == 8);

Bytes EncodeAttachVnodeReq(const AttachVnodeReq& m);
Result<AttachVnodeReq> DecodeAttachVnodeReq(std::span<const uint8_t> payload);
Bytes EncodeAttachVnodeResp(const AttachVnodeResp& m);
Result<AttachVnodeResp> DecodeAttachVnodeResp(std::span<const uint8_t> payload);

}  // namespace lego::proto
