// The FS protocol (protocol/fs.h) over the messenger: a client that sends a vNode's file requests to the
// component serving them, and the server side that answers them from any FsService.
//
// RemoteFs (client): the pmon's FUSE mount uses it towards the vNode's buffer-cache mmon, the mmon towards
// the vNode's smon. It asks lego-gm where a vNode lives (c2g.vnode_lookup) on first use and after any
// transport failure. A request that gets no answer fails with EIO: after a timeout always (the program gets
// its error within the timeout); after a dead connection, an idempotent request (getattr, read, write,
// setattr, readdir, fsync, statfs) is sent again along a fresh route until its timeout: a restarted smon or
// mmon may be up again on another port, and a vNode whose cache mmon died is moved by the gm to another
// once it notices (so a program sees a pause, not EIO). Create, mkdir, rmdir, unlink and rename would
// answer EEXIST or ENOENT for work a first copy did, so each is stamped with a request id (unique to this
// RemoteFs: a random base plus a count) that the smon remembers (src/smon/duplicate_request_cache.h); the
// pmon (target kCacheMmon) sends them again too, but only once the vNode has moved to another mmon (the
// first may still hold the first copy), the mmon (target kSmon) never. A request refused unread (status Busy:
// too much waited for order on the connection) never ran, so any request goes again, after a pause, until its
// timeout.
//
// ServeFs (server): installs handlers for every FS opcode that decode the request (rejecting malformed ones
// with kBadMessage) and run it on a WorkQueue, since file systems and downstream calls block.
//
// Thread safety: RemoteFs::Execute may be called from any number of threads at once.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>

#include "common/work_queue.h"
#include "messaging/messenger.h"
#include "protocol/fs.h"
#include "protocol/vnode.h"

namespace lego::msg {

struct RemoteFsOptions {
  enum class Target { kSmon, kCacheMmon } target = Target::kSmon;
  Millis timeout{5000};  // per request; then EIO
};

class RemoteFs : public proto::FsService {
 public:
  RemoteFs(Messenger& messenger, HostPort gm, RemoteFsOptions options);
  proto::FsReply Execute(const proto::FsRequest& req) override;
  // The reply's data is decoded straight into dst (no FsReply::data in between).
  proto::FsReply ReadInto(const proto::FsRequest& req, std::span<uint8_t> dst, size_t* n) override;

  // The vNode as lego-gm describes it now (by id, or by name with req.id == 0). The default timeout leaves
  // the gm time to create the default vNode on its smon (gm::kSmonCallTimeout is 10 s).
  Result<proto::VnodeRecord> Lookup(const proto::VnodeLookupReq& req, Millis timeout = Millis(15000));
  uint64_t transport_errors() const { return transport_errors_.load(); }
  // A key for the peer that serves the vNode (the last one the gm named; kept across failures), or nullopt
  // if the gm has not named one yet: the mmon limits the FS threads one smon may hold by it. Keys have the
  // top bit set (never 0, never a FsQueueKeys::kResolving).
  std::optional<uint64_t> PeerKey(uint32_t vnode);
  // Asks the gm for the route of req's vNode (and so its PeerKey) if none is known; blocks for up to the
  // timeout. Returns the reply req fails with (EIO) only if the gm could not be asked (timeout, unreachable).
  std::optional<proto::FsReply> Resolve(const proto::FsRequest& req);
  // Requests sent again after their peer was found gone (beyond the one immediate retry).
  uint64_t retried() const { return retried_.load(); }
  // Requests a peer refused unread (status Busy: too much waited for order on the connection) and that were
  // therefore sent again.
  uint64_t busy_retried() const { return busy_.load(); }

 private:
  // Sends req (stamped with a request id if it needs one) and returns the raw reply, sending it again as
  // described above.
  Result<Bytes> Exchange(const proto::FsRequest& req);
  // Whether req may be sent again after its peer was found gone.
  bool MayResend(const proto::FsRequest& req) const;
  // Counts and logs a transport failure; the program gets EIO.
  proto::FsReply Fail(const proto::FsRequest& req, const Status& st);
  Result<std::shared_ptr<Channel>> ChannelFor(uint32_t vnode);
  // Records (and returns) the route to the peer the gm named in v, if it is alive.
  Result<std::shared_ptr<Channel>> Route(uint32_t vnode, const proto::VnodeRecord& v);
  void Forget(uint32_t vnode);

  Messenger& messenger_;
  const RemoteFsOptions options_;
  std::shared_ptr<Channel> gm_;
  std::mutex mu_;
  std::map<uint32_t, std::shared_ptr<Channel>> routes_;      // vnode -> channel; guarded by mu_
  std::map<std::string, std::shared_ptr<Channel>> by_addr_;  // one channel per peer; guarded by mu_
  std::map<uint32_t, uint64_t> peer_keys_;                   // vnode -> PeerKey; guarded by mu_
  std::atomic<uint64_t> transport_errors_{0};
  std::atomic<uint64_t> retried_{0};
  std::atomic<uint64_t> busy_{0};
  std::atomic<uint64_t> request_ids_;  // the next request id; never 0
  static constexpr Millis kRetryPause{100};
};

// How ServeFs keys a request for the WorkQueue's per-key limit. `known` gives the key on the progress thread,
// without blocking, or nullopt if it is not known yet; then the request is first submitted under kResolving
// (so at most the queue's per-key limit of threads wait for lookups), where `resolve` finds the key (it may
// block: the mmon asks the gm where the vNode's smon is) and the request goes back to the queue under it.
// If `resolve` returns a reply the request fails with it at once; if it finds no key the request runs where
// it is.
// Before, a vNode not yet resolved ran under its own id: the first requests of a stuck smon's second vNode
// took the threads left for every other smon (a vNode on a live smon waited one whole timeout).
struct FsQueueKeys {
  std::function<std::optional<uint64_t>(const proto::FsRequest&)> known;
  std::function<std::optional<proto::FsReply>(const proto::FsRequest&)> resolve;
  static constexpr uint64_t kResolving = uint64_t{1} << 62;
};

// Installs handlers for the FS opcodes; requests run on `queue` against `service`, submitted with the key
// `keys` gives (default: the vNode), for the queue's per-key limit. First, on the messenger's
// progress thread, `try_inline` (if set) may answer a request itself (return true with the reply in *out):
// that saves two thread wake-ups per request, so use it for what never waits for another daemon (the
// smon's local file calls other than fsync, a buffer-cache hit).
// REQUIRES: before messenger.Start(); queue and service outlive the messenger's serving.
using FsFastPath = std::function<bool(const proto::FsRequest& req, proto::FsReply* out)>;
void ServeFs(Messenger& messenger, WorkQueue& queue, proto::FsService& service,
             FsFastPath try_inline = nullptr, FsQueueKeys keys = {});

}  // namespace lego::msg
