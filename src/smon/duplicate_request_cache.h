// DuplicateRequestCache: runs each non-idempotent FS request once, however many times it arrives.
//
// Create, mkdir, rmdir, unlink and rename answer differently when run twice (EEXIST, ENOENT for work the
// first run did). The pmon stamps each such request with a request id (FsReqFixed::request_id) and, when the
// connection to the vNode's cache mmon dies under it, sends it again along the vNode's new route: the first
// copy may or may not have reached the smon. This cache, in front of the smon's file store, remembers the
// reply to each request id it ran and answers a repeat with it instead of running it again (the duplicate
// request cache of NFS servers). Requests without an id, and idempotent ones, pass straight through.
//
// Bounds: the last `capacity` ids are kept (oldest forgotten first; an id is needed only for the sender's
// request timeout, seconds). The cache is in memory: a restarted smon has forgotten every id, so a request
// whose first copy ran before the restart runs again (RemoteFs never resends a non-idempotent request to the
// smon itself, only past a dead cache mmon; see docs/architecture.md, "Storage failures").
//
// Thread safety: Execute may be called from any thread. Requests with an id run one at a time (they are
// metadata operations, and the smon runs them on its progress thread anyway), so that two copies of one
// request never run at once.
#pragma once

#include <cstdint>
#include <deque>
#include <unordered_map>

#include "common/thread_annotations.h"
#include "protocol/fs.h"

namespace lego::smon {

class DuplicateRequestCache : public proto::FsService {
 public:
  static constexpr size_t kDefaultCapacity = 65536;  // about 10 MiB when full

  explicit DuplicateRequestCache(proto::FsService& inner, size_t capacity = kDefaultCapacity);

  proto::FsReply Execute(const proto::FsRequest& req) override;
  proto::FsReply ReadInto(const proto::FsRequest& req, std::span<uint8_t> dst, size_t* n) override {
    return inner_.ReadInto(req, dst, n);
  }

  // Repeats answered from the cache instead of run again.
  uint64_t replayed() const;
  size_t size() const;

 private:
  struct Key {
    uint32_t vnode;
    uint64_t id;
    bool operator==(const Key&) const = default;
  };
  struct KeyHash {
    size_t operator()(const Key& k) const { return std::hash<uint64_t>()(k.id ^ (uint64_t{k.vnode} << 32)); }
  };

  proto::FsService& inner_;
  const size_t capacity_;
  mutable Mutex mu_;
  // A reply of these ops is its fixed part only (no data, entries or statfs).
  std::unordered_map<Key, proto::FsReplyFixed, KeyHash> replies_ GUARDED_BY(mu_);
  std::deque<Key> order_ GUARDED_BY(mu_);  // oldest first
  uint64_t replayed_ GUARDED_BY(mu_) = 0;
};

}  // namespace lego::smon
