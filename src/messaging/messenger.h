// Messenger: Lego's one messaging layer, on UCX active messages. Every daemon and the CLI own one.
//
// What it gives:
//   - requests with replies (Channel::Call, Channel::CallAsync) and one-way messages (Channel::Send),
//     many outstanding at once from many threads, each with its own timeout;
//   - a typed error instead of a hang: kTimeout when no reply arrives in time, kPeerUnreachable when
//     UCX's peer error handling reports the connection dead (every pending call on it fails at once);
//   - connection by HOST:PORT (Messenger::Connect) with a protocol-version handshake, and reconnection
//     on the next call after the peer restarts;
//   - a server side: Listen on HOST:PORT, and handlers per opcode that reply now or later (Responder).
//   UCX picks the transport: shared memory on one host, TCP between hosts, RDMA verbs where present.
//
// Threading and progress (docs/decisions/002-messaging-progress.md):
//   One UCX worker per Messenger, serialized by worker_mu_. A progress thread drives it: after any
//   activity it polls for `spin_us`, then arms the worker and blocks in epoll on UCX's wake-up fd, so an
//   idle Messenger burns no CPU. A thread waiting for a reply drives the worker itself for up to
//   `spin_us` (no cross-thread wake-up on the fast path) and then sleeps on its call's condition variable;
//   a caller of a small FS call does not spin but sleeps in poll() on UCX's wake-up fd (WaitFsCall).
//   Handlers run inline on whichever thread is driving the worker: they must not block. A handler that
//   needs to block moves its Responder to another thread and replies from there.
//
// Lifetime: a Messenger must outlive its Channels and every Responder it handed out. Shutdown() fails
// pending calls with kShuttingDown, closes every connection and joins the progress thread.
#pragma once

#include <atomic>
#include <chrono>
#include <concepts>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <thread>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include <ucp/api/ucp.h>

#include "common/metrics.h"
#include "common/status.h"
#include "common/thread_annotations.h"
#include "common/util.h"
#include "messaging/pending_table.h"
#include "protocol/codec.h"
#include "protocol/membership.h"
#include "protocol/wire.h"

namespace lego::msg {

using proto::Bytes;
using Millis = std::chrono::milliseconds;

struct MessengerOptions {
  std::string name = "lego";  // appears in logs
  proto::ComponentKind kind = proto::ComponentKind::kUnknown;
  uint32_t max_payload = proto::kDefaultMaxPayload;  // larger messages are refused both ways
  int spin_us = 50;                                  // poll this long after activity before sleeping
  std::string ucx_transports;                        // UCX_TLS value; empty lets UCX choose
  // UCX error-handling mode per connection (docs/decisions/002-messaging-progress.md). UCX 1.13's shared
  // memory transports cannot report peer failure, so a PEER-mode endpoint never uses them and runs over
  // TCP loopback even on one host. kAuto: NONE (shared memory) for loopback peers, PEER for all others.
  enum class ErrorMode { kAuto, kPeer, kNone } error_mode = ErrorMode::kAuto;
  Metrics* metrics = nullptr;  // counters go here if set
  // Per connection: at most this many bytes of messages are held behind a rendezvous transfer still
  // arriving (protocol.md, "Ordering"): small messages' copies and later rendezvous messages' buffers, with
  // the transfer at the head of the queue counted too (but always taken, so a message up to max_payload gets
  // through). A request past it is refused with kBusy, a one-way message dropped, both logged. Bounds
  // what a peer that stalls a transfer can make the receiver allocate.
  size_t max_held_bytes = 64u << 20;
};

// A request or one-way message as a handler sees it. payload is valid only during the handler call.
struct Incoming {
  uint16_t opcode = 0;
  std::span<const uint8_t> payload;
  uint64_t conn_id = 0;  // the connection it came on; stable for the connection's life
  bool one_way = false;
  uint64_t request_id = 0;  // for logs (0 for one-way)
  // The buffer `payload` lies in, when the handler may take it (a rendezvous-sized message, received into
  // a buffer of its own): moving from it keeps `payload`'s bytes where they are (a moved vector keeps its
  // storage), so a handler that queues work can keep the payload without copying it. Else nullptr.
  Bytes* owned = nullptr;
};

class Messenger;

// Sends the one reply to a request. Move it to another thread to reply later. If it is destroyed without
// replying, the caller gets kInternal ("handler did not reply") rather than waiting for its timeout.
// For one-way messages every method is a no-op.
class Responder {
 public:
  Responder(Messenger* m, uint64_t conn_id, uint64_t request_id, uint16_t opcode, bool one_way)
      : m_(m), conn_id_(conn_id), request_id_(request_id), opcode_(opcode), pending_(!one_way) {}
  Responder(Responder&& o) noexcept { *this = std::move(o); }
  Responder& operator=(Responder&& o) noexcept;
  Responder(const Responder&) = delete;
  ~Responder();

  void Reply(std::span<const uint8_t> payload = {});
  // The same, handing the buffer over (an rvalue Bytes): a large payload is sent from it without a copy
  // (decision 002). A template so that Reply({}) still means the span overload.
  template <class B>
  requires std::same_as<B, Bytes>
  void Reply(B&& payload) { ReplyOwned(std::move(payload)); }
  void Error(const Status& status);  // REQUIRES: !status.ok()

 private:
  void ReplyOwned(Bytes&& payload);

  Messenger* m_ = nullptr;
  uint64_t conn_id_ = 0;
  uint64_t request_id_ = 0;
  uint16_t opcode_ = 0;
  bool pending_ = false;
};

using Handler = std::function<void(const Incoming&, Responder)>;

// A reply read where it landed (PendingCall::WaitView, Channel::CallView): a reply that arrived whole in one
// of UCX's receive buffers (eager, larger than UCX's inline messages: a 4 KiB page, say) is not copied out;
// the view points into that buffer, and handing the buffer back to UCX is the view's destruction (decision
// 002, "Replies read in place"). Other replies are in a buffer of the view's own. Move-only. Must not outlive
// its Messenger; while it lives, UCX keeps the buffer, so keep views briefly (a few per thread).
class ReplyView {
 public:
  ReplyView() = default;
  ReplyView(ReplyView&& o) noexcept { *this = std::move(o); }
  ReplyView& operator=(ReplyView&& o) noexcept;
  ReplyView(const ReplyView&) = delete;
  ReplyView& operator=(const ReplyView&) = delete;
  ~ReplyView();  // gives a held buffer back to UCX; keeps a small copied reply's buffer for this thread's
                 // next CallView

  std::span<const uint8_t> bytes() const { return view_; }
  // The buffer of a copied reply (or, for a reply read in place, the unused reply_buffer its call was given),
  // for a later call's reply_buffer. The view is empty (and released) afterwards.
  Bytes TakeBuffer();

 private:
  friend class PendingCall;
  friend class MessengerTestPeer;
  void Release();
  Messenger* m_ = nullptr;
  void* held_ = nullptr;  // UCX's data pointer, for ucp_am_data_release; null for a copied reply
  std::span<const uint8_t> view_;
  Bytes buf_;
};

// The result of CallAsync. Wait() blocks until the reply, an error or the deadline.
class PendingCall {
 public:
  ~PendingCall();
  Result<Bytes> Wait();
  // The same, for a call started with Channel::Receive::kInPlace: the reply without a copy where possible.
  // Once only, like Wait().
  Result<ReplyView> WaitView();
  bool done() const { return done_.load(std::memory_order_acquire); }
  // The caller no longer wants the reply (a window fetched ahead that the program will not use): the call
  // leaves the pending table at once and its reply, if one still comes, is dropped unread (a large one is
  // not even transferred). Wait() after Abandon() returns kInternal. No-op on a finished call.
  void Abandon();

 private:
  friend class Messenger;
  friend class Channel;
  friend class MessengerTestPeer;
  Messenger* m_ = nullptr;
  uint64_t request_id_ = 0;
  uint64_t conn_id_ = 0;
  uint16_t opcode_ = 0;
  size_t request_bytes_ = 0;
  bool small_reply_ = false;  // the caller said so (Channel::Reply::kSmall)
  bool in_place_ = false;     // the caller will read the reply with WaitView (Channel::Receive::kInPlace)
  // The deadline is kept on CLOCK_MONOTONIC_COARSE (a few ns to read, against ~25 for steady_clock here) and
  // converted only when a caller has to sleep; it may then fire up to one coarse tick late, never early.
  int64_t coarse_deadline_ns_ = 0;
  void SetTimeout(Millis timeout);
  std::chrono::steady_clock::time_point Deadline() const;
  // For reuse by the next synchronous call of its thread (Channel::CallSync): every field below except the
  // mutex and condition variable back to its initial value. A field added here must be reset there too.
  void Reset(Messenger* m);
  std::mutex mu_;
  std::condition_variable cv_;
  // A waiter that sleeps in poll() on the worker's wake-up fd (an FS call: Messenger::WaitFsCall) gets this
  // eventfd of its thread written when another thread completes the call. Guarded by mu_.
  int waker_fd_ = -1;
  int sleepers_ = 0;        // threads in cv_.wait (guarded by mu_): no notify, no futex call, when none
  void WakeWaiterLocked();  // REQUIRES mu_, after done_ is set
  std::atomic<bool> done_{false};
  Status status_;  // guarded by mu_ until done_
  // Guarded by mu_ until done_. Before that it may hold a buffer for the reply (CallAsync), which a
  // rendezvous receive takes under the messenger's pending_mu_ while the call is still in the table.
  Bytes reply_;
  // A reply left in UCX's receive buffer (in_place_; empty if none): its data() is UCX's data pointer for
  // ucp_am_data_release. Guarded by mu_ until done_; WaitView hands it to a ReplyView, Wait copies it out,
  // the destructor gives it back.
  std::span<const uint8_t> held_;
};

// How a call is made (Channel::Begin, Messenger::StartCall).
struct CallOptions {
  Bytes* owned = nullptr;         // holds the payload and may be kept by the send instead of a copy
  bool small_reply = false;       // Channel::Reply::kSmall
  bool in_place = false;          // Channel::Receive::kInPlace
  PendingCall* reuse = nullptr;   // the call object to use instead of a new one (CallSync)
  Bytes* reply_buffer = nullptr;  // moved into the call to receive its reply (CallAsync)
};

// A client connection to one HOST:PORT. Thread-safe. If the connection fails, the next call reconnects
// (and repeats the version handshake); calls that were in flight when it failed get kPeerUnreachable.
class Channel {
 public:
  Result<Bytes> Call(uint16_t opcode, std::span<const uint8_t> payload, Millis timeout);
  // The same, for a caller that knows its reply will be small (an FS READ of a few KiB): the wait may then
  // sleep on UCX's wake-up fd itself (Messenger::PollForReply).
  enum class Reply { kAnySize, kSmall };
  Result<Bytes> Call(uint16_t opcode, std::span<const uint8_t> payload, Millis timeout, Reply reply);
  std::shared_ptr<PendingCall> CallAsync(uint16_t opcode, std::span<const uint8_t> payload, Millis timeout);
  // The same, handing the request buffer over, and with a buffer for the reply (the previous call's, say):
  // Wait() returns the reply in it. Its capacity is reused, and so are its bytes up to its current size for
  // a reply large enough to travel by rendezvous, which would otherwise land in a fresh, zero-filled buffer.
  // Receive::kInPlace: the caller reads the reply with WaitView, which may leave it in UCX's buffer.
  enum class Receive { kCopy, kInPlace };
  std::shared_ptr<PendingCall> CallAsync(uint16_t opcode, Bytes&& payload, Millis timeout,
                                         Bytes&& reply_buffer, Receive receive = Receive::kCopy);
  // Call, with the reply read in place (see ReplyView).
  Result<ReplyView> CallView(uint16_t opcode, std::span<const uint8_t> payload, Millis timeout);
  // The same, handing the request buffer over (an rvalue Bytes): a large request is sent from it without a
  // copy. Templates so that Call(op, {}, t) still means the span overload.
  template <class B>
  requires std::same_as<B, Bytes> Result<Bytes> Call(uint16_t opcode, B&& payload, Millis timeout) {
    return CallOwnedSync(opcode, std::move(payload), timeout);
  }
  template <class B>
  requires std::same_as<B, Bytes> std::shared_ptr<PendingCall> CallAsync(uint16_t opcode, B&& payload,
                                                                         Millis timeout) {
    return CallOwned(opcode, std::move(payload), timeout);
  }
  Status Send(uint16_t opcode, std::span<const uint8_t> payload);  // one-way
  // Drops the current connection; the next call reconnects and repeats the hello. Calls pending on the old
  // connection fail with kPeerUnreachable. Use it when calls time out: on loopback (UCX error mode NONE, see
  // MessengerOptions::error_mode) a dead peer may show up only as timeouts, never as a connection error.
  void Reset();
  const HostPort& address() const { return addr_; }
  // The current connection id (0 if none); changes on reconnect.
  uint64_t conn_id() const { return conn_id_.load(); }

 private:
  friend class Messenger;
  Channel(Messenger* m, HostPort addr, Millis connect_timeout)
      : m_(m), addr_(std::move(addr)), connect_timeout_(connect_timeout) {}
  Result<uint64_t> EnsureConnected(Millis timeout);
  std::shared_ptr<PendingCall> CallOwned(uint16_t opcode, Bytes&& payload, Millis timeout);
  Result<Bytes> CallOwnedSync(uint16_t opcode, Bytes&& payload, Millis timeout);
  // Connects if needed and starts the call (see CallOptions).
  std::shared_ptr<PendingCall> Begin(uint16_t opcode, std::span<const uint8_t> payload, Millis timeout,
                                     const CallOptions& opts);
  // Call and wait (Wait, or WaitView for a Result<ReplyView>), with this thread's reusable call object.
  template <class R>
  R CallSync(uint16_t opcode, std::span<const uint8_t> payload, Millis timeout, CallOptions opts);

  Messenger* m_;
  const HostPort addr_;
  const Millis connect_timeout_;
  std::mutex connect_mu_;  // serializes reconnects
  std::atomic<uint64_t> conn_id_{0};
  // The high half of this connection's request ids (random, low half zero): replies are matched by request
  // id alone, so a peer must not be able to guess the ids of calls pending on our other connections.
  std::atomic<uint64_t> id_salt_{0};
  // Messenger::conns_closed_ when conn_id_ was last seen alive: while it is unchanged, no lookup is needed.
  std::atomic<uint64_t> checked_closed_{~uint64_t{0}};
};

class Messenger {
 public:
  static Result<std::unique_ptr<Messenger>> Create(const MessengerOptions& options);
  ~Messenger();
  Messenger(const Messenger&) = delete;
  Messenger& operator=(const Messenger&) = delete;

  // Whether a request may be handled before requests sent ahead of it on its connection (protocol.md,
  // "Ordering"). kMayOvertake is for requests that only read, whose callers never read what they have not
  // seen acknowledged (the pmon reads a page only once its write-back has been answered): p2m.read_pages
  // then need not wait for a 1 MiB write-back's transfer ahead of it.
  enum class Order { kAsSent, kMayOvertake };
  // REQUIRES: called before Start(). Replaces any built-in handler for that opcode.
  void Handle(uint16_t opcode, Handler handler, Order order = Order::kAsSent);

  // Accept connections on addr (port 0 picks a free port). REQUIRES: before Start().
  Status Listen(const HostPort& addr);
  Status Start();
  // The address actually bound by Listen (with the real port).
  const HostPort& listen_address() const { return listen_addr_; }

  // Connects to HOST:PORT and performs the hello handshake; fails with kPeerUnreachable, kTimeout or
  // kVersionMismatch. The channel reconnects by itself later.
  Result<std::shared_ptr<Channel>> Connect(const HostPort& addr, Millis timeout);
  // A channel that connects lazily on its first call (for peers that may not be up yet).
  std::shared_ptr<Channel> ChannelTo(const HostPort& addr, Millis connect_timeout);

  void Shutdown();

  const MessengerOptions& options() const { return options_; }
  size_t connection_count();

 private:
  friend class Channel;
  friend class Responder;
  friend class PendingCall;
  friend class ReplyView;
  friend class MessengerTestPeer;  // tests/transport: sends raw, malformed messages

  // A send in flight: the header and payload stay alive until UCX's callback. The payload is a copy, or the
  // buffer the sender handed over. Recycled through free_sends_.
  struct HeldSend {
    Messenger* m = nullptr;
    proto::MsgHeader hdr;
    size_t header_len = 0;
    Bytes data;
  };
  static constexpr size_t kPooledSendBytes = 16 * 1024;  // at most 64 x 16 KiB kept per messenger
  static constexpr size_t kMaxPooledSends = 64;
  static constexpr size_t kInlineBytes = 1024;  // larger messages never fit UCX's inline (short) sends
  // Replies read in place (ReplyView) from this size: a smaller one is copied, which costs less than giving
  // the buffer back (and one of up to ~100 bytes arrives in a FIFO element that UCX cannot lend anyway).
  static constexpr size_t kMinInPlaceBytes = 1024;

  struct Conn {
    uint64_t id = 0;
    ucp_ep_h ep = nullptr;
    bool client = false;  // we connected out (a Channel) rather than accepted
    std::string peer;     // for logs
    // The connection's route (protocol.md, "Routes"). Accepted: the one we gave the peer in our hello
    // reply (0 until then); the peer's requests carry it instead of UCX's reply endpoint. Client: the
    // one the server gave us; our requests carry it (0: the server gave none, send with the reply flag).
    uint32_t route = 0;
  };

  // Messages on one connection are handled in the order they were sent (protocol.md, "Ordering"). A
  // rendezvous message's data arrives after its header, while the small messages behind it arrive whole, so
  // from the header of a rendezvous request or one-way message until it is delivered, its connection has a
  // queue here, and the requests and one-way messages that arrive after it wait in it (replies do not:
  // each completes its own call). All guarded by worker_mu_.
  struct Ordered {
    enum class State : uint8_t { kReceiving, kReady, kFailed };
    proto::MsgHeader hdr;
    Bytes buf;  // the payload (a copy, or where the transfer lands)
    State state = State::kReceiving;
    size_t counted = 0;  // its bytes in OrderQueue::held_bytes (the payload's length)
  };
  struct RndvRecv;  // a rendezvous receive in flight (messenger.cc)
  struct OrderQueue {
    std::deque<std::unique_ptr<Ordered>> entries;
    size_t held_bytes = 0;  // payload bytes of the messages in entries (copies and rendezvous buffers)
    bool draining = false;  // DeliverOrdered is running for this connection
  };
  void QueueOrdered(const proto::MsgHeader& hdr, uint64_t conn_id, void* data, size_t len, bool rndv);
  void DeliverOrdered(uint64_t conn_id);  // delivers the queue's finished head entries; erases it if empty

  explicit Messenger(const MessengerOptions& options);
  Status Init();
  void ProgressLoop();
  void InstallBuiltinHandlers();

  // Connection table; all REQUIRE worker_mu_.
  Result<uint64_t> CreateClientConn(const HostPort& addr);
  uint32_t AssignRoute(uint64_t conn_id);  // an accepted connection's route (made on first use); 0 if gone
  void ForgetConn(std::unordered_map<uint64_t, Conn>::iterator it);  // erases it and its route
  void FailConn(ucp_ep_h ep, ucs_status_t status);
  ucs_status_ptr_t CloseEp(ucp_ep_h ep, bool force);  // REQUIRES worker_mu_
  void LockWorker();                                  // worker_mu_.lock(), letting the poll loop step aside
  // ucp_worker_progress, then the UCX buffers released meanwhile from inside its callbacks. REQUIRES
  // worker_mu_.
  unsigned Progress();
  // Hands a reply read in place back to UCX: at once, or, from inside a UCX callback (where UCX may not have
  // taken the buffer's ownership back yet), once the outermost Progress() returns.
  void ReleaseHeld(void* data);
  ucp_err_handling_mode_t ErrMode(bool loopback_peer) const;
  void CloseConn(uint64_t conn_id);  // a client connection dropped on purpose: disconnect, do not wait

  // owned, if set, holds payload and may be taken: a send that cannot complete at once keeps it alive
  // instead of copying the payload.
  Status SendMsg(uint64_t conn_id, proto::MsgKind kind, uint16_t opcode, uint64_t request_id, int32_t status,
                 std::span<const uint8_t> payload, Bytes* owned = nullptr);
  Status SendRawLocked(ucp_ep_h ep, const proto::MsgHeader& hdr, size_t header_len,
                       std::span<const uint8_t> payload, Bytes* owned = nullptr);
  void RecycleSend(HeldSend* held);  // REQUIRES worker_mu_
  // The call's request id is id_salt (high half) | a per-messenger counter (low half).
  std::shared_ptr<PendingCall> StartCall(uint64_t conn_id, uint64_t id_salt, uint16_t opcode,
                                         std::span<const uint8_t> payload, Millis timeout,
                                         const CallOptions& opts = {});
  uint64_t NewIdSalt();  // REQUIRES worker_mu_
  // Replies travel without UCX's reply endpoint (protocol.md): a reply is matched by its request id alone.
  // `owned`: the buffer that is exactly `payload` (a rendezvous receive); the reply takes it instead of a
  // copy.
  // `holdable`: payload is UCX's persistent data (UCP_AM_RECV_ATTR_FLAG_DATA), which a call that reads its
  // reply in place keeps instead of a copy. Returns true if it kept it (OnAm then returns UCS_INPROGRESS).
  bool CompleteCall(uint64_t request_id, Status status, std::span<const uint8_t> payload,
                    Bytes* owned = nullptr, bool holdable = false);
  void FailCallsOnConn(uint64_t conn_id, const Status& status);
  // A call nobody waits for still times out: the progress thread fails every pending call past its
  // deadline (at most kSweepEvery late while it runs, or one idle epoll timeout when nothing happens).
  void SweepExpiredCalls();
  void MarkTimedOut(PendingCall* call);  // REQUIRES call->mu_, and the call already out of pending_
  void WaitCall(PendingCall* call);
  // An FS call's wait: poll the worker's wake-up fd beside the progress thread (decision 007). Returns false
  // if it cannot (no eventfd): the caller then sleeps on the call's condition variable.
  bool WaitFsCall(PendingCall* call);
  void ExpireWait(PendingCall* call, std::unique_lock<std::mutex>& lk);  // lk holds call->mu_
  void Kick();

  // UCX callbacks (static trampolines).
  static void OnConnRequest(ucp_conn_request_h req, void* arg);
  static void OnEpError(void* arg, ucp_ep_h ep, ucs_status_t status);
  static ucs_status_t OnAm(void* arg, const void* header, size_t header_len, void* data, size_t len,
                           const ucp_am_recv_param_t* param);
  static void OnSendDone(void* request, ucs_status_t status, void* user_data);
  static void OnRndvDone(void* request, ucs_status_t status, size_t length, void* user_data);

  // Returns true if the payload was kept in UCX's buffer (a reply read in place).
  bool HandleAm(const void* header, size_t header_len, void* data, size_t len,
                const ucp_am_recv_param_t* param);
  void Dispatch(const proto::MsgHeader& hdr, uint64_t conn_id, std::span<const uint8_t> payload,
                Bytes* owned);
  // A validated message with its whole payload: completes a call (reply) or dispatches to a handler.
  // `owned`: the buffer that holds exactly the payload, when it may be taken (see Incoming::owned).
  // `holdable` and the result: as for CompleteCall.
  bool Deliver(const proto::MsgHeader& hdr, uint64_t conn_id, std::span<const uint8_t> payload,
               Bytes* owned = nullptr, bool holdable = false);
  void Reject(uint64_t conn_id, const proto::MsgHeader& hdr, StatusCode code, const std::string& why);
  // The error reply to a request (nothing for a one-way message): code, with `why` as its payload.
  void ReplyError(uint64_t conn_id, const proto::MsgHeader& hdr, StatusCode code, const std::string& why);

  MessengerOptions options_;
  ucp_context_h context_ = nullptr;
  ucp_worker_h worker_ = nullptr;
  ucp_listener_h listener_ = nullptr;
  HostPort listen_addr_;
  int worker_efd_ = -1;
  int kick_fd_ = -1;  // eventfd: wakes the progress thread
  int epoll_fd_ = -1;

  std::recursive_mutex worker_mu_;  // serializes every UCX call on worker_ and its endpoints
  std::atomic<int> lock_waiters_{0};
  std::unordered_map<uint64_t, Conn> conns_;           // guarded by worker_mu_
  std::unordered_map<ucp_ep_h, uint64_t> ep_conn_;     // guarded by worker_mu_
  std::unordered_map<uint32_t, uint64_t> route_conn_;  // guarded by worker_mu_: accepted conns by route
  std::vector<ucp_ep_h> to_close_;                     // guarded by worker_mu_: failed eps to close
  std::vector<ucs_status_ptr_t> closing_;              // guarded by worker_mu_: CloseConn's closes in flight
  bool keep_worker_ = false;  // set by Shutdown: an endpoint did not close, so the worker is never destroyed
  std::vector<HeldSend*> free_sends_;  // guarded by worker_mu_
  int progress_depth_ = 0;             // guarded by worker_mu_: Progress() calls running
  size_t held_replies_ = 0;  // guarded by worker_mu_: UCX buffers kept for replies, until really given back
  std::vector<void*> to_release_;                     // guarded by worker_mu_: see ReleaseHeld
  std::unordered_map<uint64_t, OrderQueue> ordered_;  // guarded by worker_mu_: by connection id
  uint64_t next_conn_id_ = 1;                         // guarded by worker_mu_
  uint64_t salt_state_ = 0;                           // guarded by worker_mu_: splitmix64 state for NewIdSalt
  std::atomic<uint64_t> conns_closed_{0};             // bumped whenever a connection leaves conns_

  Mutex pending_mu_;
  PendingTable<PendingCall> pending_ GUARDED_BY(pending_mu_);
  std::atomic<uint64_t> next_request_id_{1};
  int64_t next_sweep_ns_ = 0;  // CLOCK_MONOTONIC_COARSE; progress thread only

  std::unordered_map<uint16_t, Handler> handlers_;  // read-only after Start()
  std::unordered_set<uint16_t> may_overtake_;       // read-only after Start(): Order::kMayOvertake
  std::function<std::vector<proto::StatsEntry>()> stats_provider_;  // any.get_stats: the metrics' Snapshot

  std::mutex idle_mu_;
  std::condition_variable idle_cv_;
  std::atomic<int> spinning_callers_{0};  // callers driving the worker themselves (idle_cv_ wakes on Kick)

  // FS requests (0x04xx) wait for disks and for other daemons: their replies take hundreds of microseconds
  // and a chain pmon -> mmon -> smon crosses three processes. Spinning for them (a caller for its reply, or
  // the progress thread for the next message after one) only steals the CPU the daemon with the work needs
  // on a small machine: measured on 2 vCPUs, 4 KB reads through a vNode went from 2500 to 4500 per second
  // with no spinning (decision 007). Page traffic keeps spinning: its replies come in microseconds.
  static bool NoSpin(uint16_t opcode) { return (opcode >> 8) == 0x04; }
  // Which FS calls wait in poll() on the worker's fd beside the progress thread (WaitFsCall) rather than on
  // their condition variable: those with small requests and small replies. Measured (decision 007): fsync'ed
  // 4 KB writes +55-70%, but 1 MiB writes and reads (rendezvous transfers) 20-40% slower, so requests over
  // 64 KiB, and READ and READDIR (whose replies may be large) unless the caller says the reply is small,
  // keep the condition variable.
  static bool PollForReply(uint16_t opcode, size_t request_bytes, bool small_reply) {
    return NoSpin(opcode) && request_bytes <= 64 * 1024 &&
           (small_reply || (opcode != proto::kFsRead && opcode != proto::kFsReaddir));
  }
  std::atomic<bool> last_no_spin_{false};  // the last message delivered was an FS message
  std::atomic<bool> fs_poller_{false};     // a caller is in WaitFsCall

  std::thread progress_thread_;
  std::atomic<bool> stop_{false};
  bool started_ = false;
  bool shut_down_ = false;

  // Counters (no-ops when options_.metrics is null: they point at private dummies).
  Metrics own_metrics_;
  prometheus::Counter* c_requests_sent_;
  prometheus::Counter* c_requests_served_;
  prometheus::Counter* c_bad_messages_;
  prometheus::Counter* c_timeouts_;
  prometheus::Counter* c_peer_failures_;  // connections we opened
  prometheus::Counter* c_clients_gone_;   // connections we accepted
  prometheus::Counter* c_conns_accepted_;
  prometheus::Counter* c_held_;  // messages that waited in an OrderQueue behind a rendezvous transfer
  prometheus::Counter* c_order_refused_;  // messages refused: their OrderQueue held max_held_bytes
  prometheus::Gauge* g_conns_;            // open connections, both ways (conns_.size())
};

}  // namespace lego::msg
