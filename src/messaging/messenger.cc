#include "messaging/messenger.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <poll.h>
#include <sched.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <cstring>
#include <ctime>
#include <random>

#include <fmt/format.h>

#include "common/log.h"
#include "protocol/any.h"

namespace lego::msg {
namespace {

constexpr unsigned kAmId = 0;  // every Lego message uses one AM id; the header's opcode demultiplexes
constexpr int kIdleEpollTimeoutMs = 1000;
// How long the progress thread spins idle before it starts yielding the CPU (decision 002).
constexpr auto kYieldAfterIdle = std::chrono::microseconds(5);
// How often the progress thread looks for pending calls past their deadline that nobody waits for.
constexpr auto kSweepEvery = std::chrono::milliseconds(50);

inline void CpuRelax() { __builtin_ia32_pause(); }

std::string SockaddrToString(const sockaddr_storage& ss) {
  char host[INET6_ADDRSTRLEN] = "?";
  uint16_t port = 0;
  if (ss.ss_family == AF_INET) {
    auto* a = reinterpret_cast<const sockaddr_in*>(&ss);
    inet_ntop(AF_INET, &a->sin_addr, host, sizeof(host));
    port = ntohs(a->sin_port);
  } else if (ss.ss_family == AF_INET6) {
    auto* a = reinterpret_cast<const sockaddr_in6*>(&ss);
    inet_ntop(AF_INET6, &a->sin6_addr, host, sizeof(host));
    port = ntohs(a->sin6_port);
  }
  return HostPort{host, port}.ToString();
}

bool IsLoopback(const sockaddr_storage& ss) {
  if (ss.ss_family == AF_INET)
    return (ntohl(reinterpret_cast<const sockaddr_in*>(&ss)->sin_addr.s_addr) >> 24) == 127;
  if (ss.ss_family == AF_INET6) {
    const auto* a = &reinterpret_cast<const sockaddr_in6*>(&ss)->sin6_addr;
    if (IN6_IS_ADDR_LOOPBACK(a)) return true;
    return IN6_IS_ADDR_V4MAPPED(a) && a->s6_addr[12] == 127;
  }
  return false;
}

Result<sockaddr_storage> Resolve(const HostPort& hp) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICSERV;
  addrinfo* res = nullptr;
  std::string port = std::to_string(hp.port);
  int rc = getaddrinfo(hp.host.c_str(), port.c_str(), &hints, &res);
  if (rc != 0 || res == nullptr)
    return Status(StatusCode::kInvalidArgument,
                  fmt::format("cannot resolve '{}': {}", hp.host, gai_strerror(rc)));
  sockaddr_storage ss{};
  std::memcpy(&ss, res->ai_addr, res->ai_addrlen);
  freeaddrinfo(res);
  return ss;
}

}  // namespace

struct Messenger::RndvRecv {
  Messenger* m;
  proto::MsgHeader hdr;
  uint64_t conn_id;
  Bytes buf;
  Ordered* ordered = nullptr;  // a request or one-way message: received into ordered->buf instead
};

// ---------------------------------------------------------------------------------------------------------
// Responder

Responder& Responder::operator=(Responder&& o) noexcept {
  if (this != &o) {
    if (pending_) Error(Internal("handler did not reply"));
    m_ = o.m_;
    conn_id_ = o.conn_id_;
    request_id_ = o.request_id_;
    opcode_ = o.opcode_;
    pending_ = o.pending_;
    o.pending_ = false;
  }
  return *this;
}

Responder::~Responder() {
  if (pending_) Error(Internal("handler did not reply"));
}

void Responder::Reply(std::span<const uint8_t> payload) {
  if (!pending_) return;
  pending_ = false;
  Status st = m_->SendMsg(conn_id_, proto::MsgKind::kReply, opcode_, request_id_, 0, payload);
  if (!st.ok())
    LEGO_LOG_DEBUG("reply_dropped conn={} op={} why=\"{}\"", conn_id_, proto::OpcodeName(opcode_),
                   st.ToString());
}

void Responder::ReplyOwned(Bytes&& payload) {
  if (!pending_) return;
  pending_ = false;
  Status st = m_->SendMsg(conn_id_, proto::MsgKind::kReply, opcode_, request_id_, 0, payload, &payload);
  if (!st.ok())
    LEGO_LOG_DEBUG("reply_dropped conn={} op={} why=\"{}\"", conn_id_, proto::OpcodeName(opcode_),
                   st.ToString());
}

void Responder::Error(const Status& status) {
  if (!pending_) return;
  pending_ = false;
  const std::string& msg = status.message();
  auto bytes =
      std::span(reinterpret_cast<const uint8_t*>(msg.data()), std::min(msg.size(), proto::kMaxStringLen));
  Status st = m_->SendMsg(conn_id_, proto::MsgKind::kReply, opcode_, request_id_,
                          static_cast<int32_t>(status.code()), bytes);
  if (!st.ok())
    LEGO_LOG_DEBUG("reply_dropped conn={} op={} why=\"{}\"", conn_id_, proto::OpcodeName(opcode_),
                   st.ToString());
}

// ---------------------------------------------------------------------------------------------------------
// PendingCall and Channel

namespace {
// This thread's buffer for the next CallView's reply: a copied reply's buffer comes back here when its view
// is destroyed, so that a thread making synchronous calls allocates nothing per call. Small ones only.
thread_local Bytes tl_spare_reply;
constexpr size_t kMaxSpareReply = 64 * 1024;

int64_t CoarseNanos() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
  return int64_t{ts.tv_sec} * 1'000'000'000 + ts.tv_nsec;
}
int64_t CoarseTickNanos() {
  static const int64_t tick = [] {
    timespec res{};
    clock_getres(CLOCK_MONOTONIC_COARSE, &res);
    return int64_t{res.tv_sec} * 1'000'000'000 + res.tv_nsec;
  }();
  return tick;
}
}  // namespace

void PendingCall::SetTimeout(Millis timeout) {
  coarse_deadline_ns_ = CoarseNanos() + std::chrono::nanoseconds(timeout).count() + CoarseTickNanos();
}

std::chrono::steady_clock::time_point PendingCall::Deadline() const {
  return std::chrono::steady_clock::now() + std::chrono::nanoseconds(coarse_deadline_ns_ - CoarseNanos());
}

void PendingCall::Abandon() {
  if (done()) return;
  {
    MutexLock pl(m_->pending_mu_);
    if (!m_->pending_.Take(request_id_)) return;  // completing or timing out right now
  }
  std::lock_guard lk(mu_);
  status_ = Status(StatusCode::kInternal, "call abandoned by its caller");
  done_.store(true, std::memory_order_release);
  WakeWaiterLocked();
}

PendingCall::~PendingCall() {
  if (!held_.empty()) m_->ReleaseHeld(const_cast<uint8_t*>(held_.data()));
}

void PendingCall::Reset(Messenger* m) {
  if (!held_.empty()) m_->ReleaseHeld(const_cast<uint8_t*>(held_.data()));  // never: Wait, WaitView take it
  held_ = {};
  in_place_ = false;
  m_ = m;
  request_id_ = conn_id_ = 0;
  opcode_ = 0;
  request_bytes_ = 0;
  small_reply_ = false;
  coarse_deadline_ns_ = 0;
  waker_fd_ = -1;
  sleepers_ = 0;
  done_.store(false, std::memory_order_relaxed);
  status_ = Status::Ok();
  reply_.clear();
}

void PendingCall::WakeWaiterLocked() {
  if (sleepers_ > 0) cv_.notify_all();
  if (waker_fd_ >= 0) {
    uint64_t one = 1;
    (void)!write(waker_fd_, &one, sizeof one);
  }
}

Result<Bytes> PendingCall::Wait() {
  if (!done()) m_->WaitCall(this);
  std::span<const uint8_t> held;
  Result<Bytes> r = [&]() -> Result<Bytes> {
    std::lock_guard lk(mu_);
    if (!status_.ok()) return status_;
    if (!held_.empty()) {  // started in place but read by copy after all
      reply_.assign(held_.begin(), held_.end());
      held = std::exchange(held_, {});
    }
    return std::move(reply_);
  }();
  // Outside mu_: ReleaseHeld takes worker_mu_, which comes first.
  if (!held.empty()) m_->ReleaseHeld(const_cast<uint8_t*>(held.data()));
  return r;
}

Result<ReplyView> PendingCall::WaitView() {
  if (!done()) m_->WaitCall(this);
  std::lock_guard lk(mu_);
  if (!status_.ok()) return status_;
  ReplyView v;
  v.m_ = m_;
  // Held: buf_ is the unused reply buffer the caller gave, which TakeBuffer hands back.
  v.buf_ = std::move(reply_);
  if (!held_.empty()) {
    v.view_ = std::exchange(held_, {});
    v.held_ = const_cast<uint8_t*>(v.view_.data());
  } else {
    v.view_ = v.buf_;
  }
  return v;
}

ReplyView& ReplyView::operator=(ReplyView&& o) noexcept {
  if (this != &o) {
    Release();
    m_ = o.m_;
    held_ = std::exchange(o.held_, nullptr);
    buf_ = std::move(o.buf_);
    view_ = std::exchange(o.view_, {});  // a moved vector keeps its storage: view_ stays valid
  }
  return *this;
}

void ReplyView::Release() {
  if (held_) m_->ReleaseHeld(std::exchange(held_, nullptr));
  view_ = {};
}

ReplyView::~ReplyView() {
  Release();
  if (buf_.capacity() > 0 && buf_.capacity() <= kMaxSpareReply && tl_spare_reply.capacity() == 0)
    tl_spare_reply = std::move(buf_);
}

Bytes ReplyView::TakeBuffer() {
  Release();
  return std::move(buf_);
}

Result<uint64_t> Channel::EnsureConnected(Millis timeout) {
  uint64_t id = conn_id_.load();
  if (id != 0) {
    // Fast path: no connection of this messenger was closed since this channel last saw its own alive.
    const uint64_t closed = m_->conns_closed_.load(std::memory_order_acquire);
    if (closed == checked_closed_.load(std::memory_order_relaxed)) return id;
    std::lock_guard wl(m_->worker_mu_);
    if (m_->conns_.count(id)) {  // a failed connection is erased from conns_ at once
      checked_closed_.store(closed, std::memory_order_relaxed);
      return id;
    }
  }
  std::lock_guard lk(connect_mu_);
  id = conn_id_.load();
  uint64_t salt = 0;
  {
    std::lock_guard wl(m_->worker_mu_);
    if (id != 0 && m_->conns_.count(id)) return id;  // another thread reconnected meanwhile
    auto created = m_->CreateClientConn(addr_);
    if (!created.ok()) return created.status();
    id = created.value();
    salt = m_->NewIdSalt();
  }
  // Handshake: proves the peer is a Lego endpoint of our protocol version.
  proto::HelloMsg hello{proto::kProtocolVersion,
                        static_cast<uint8_t>(m_->options_.kind),
                        0,
                        static_cast<uint32_t>(getpid()),
                        0,
                        0};
  auto payload = proto::EncodeFixed(hello);
  auto reply = m_->StartCall(id, salt, proto::kHello, payload, timeout)->Wait();
  if (!reply.ok()) {
    std::lock_guard wl(m_->worker_mu_);
    m_->CloseConn(id);  // a hello that timed out is answered later: the peer must learn it was dropped
    Status st = reply.status();
    return Status(st.code(), fmt::format("connect to {}: {}", addr_.ToString(), st.message()));
  }
  auto peer = proto::DecodeFixed<proto::HelloMsg>(reply.value(), "any.hello reply");
  if (!peer.ok() || peer->version != proto::kProtocolVersion) {
    std::lock_guard wl(m_->worker_mu_);
    m_->CloseConn(id);
    if (!peer.ok()) return peer.status();
    return Status(StatusCode::kVersionMismatch,
                  fmt::format("{} speaks protocol v{}, this is v{}", addr_.ToString(), peer->version,
                              proto::kProtocolVersion));
  }
  {
    std::lock_guard wl(m_->worker_mu_);
    auto it = m_->conns_.find(id);
    if (it == m_->conns_.end())
      return Status(StatusCode::kPeerUnreachable, fmt::format("connection to {} closed", addr_.ToString()));
    it->second.route = peer->route;
  }
  id_salt_.store(salt);
  conn_id_.store(id);
  return id;
}

std::shared_ptr<PendingCall> Channel::CallAsync(uint16_t opcode, std::span<const uint8_t> payload,
                                                Millis timeout) {
  return Begin(opcode, payload, timeout, {});
}

std::shared_ptr<PendingCall> Channel::CallAsync(uint16_t opcode, Bytes&& payload, Millis timeout,
                                                Bytes&& reply_buffer, Receive receive) {
  return Begin(opcode, payload, timeout,
               {.owned = &payload, .in_place = receive == Receive::kInPlace, .reply_buffer = &reply_buffer});
}

std::shared_ptr<PendingCall> Channel::CallOwned(uint16_t opcode, Bytes&& payload, Millis timeout) {
  return Begin(opcode, payload, timeout, {.owned = &payload});
}

std::shared_ptr<PendingCall> Channel::Begin(uint16_t opcode, std::span<const uint8_t> payload, Millis timeout,
                                            const CallOptions& opts) {
  auto id = EnsureConnected(std::min(timeout, connect_timeout_));
  if (!id.ok()) {
    auto call = std::make_shared<PendingCall>();
    call->m_ = m_;
    call->status_ = id.status();
    call->done_.store(true);
    return call;
  }
  return m_->StartCall(id.value(), id_salt_.load(std::memory_order_relaxed), opcode, payload, timeout, opts);
}

// A synchronous call waits in this thread until its call is out of the pending table and done, so the call
// object can be this thread's own, reused from call to call: no allocation per round trip. A call made
// while the thread's object is in use (a handler that calls out from inside another call's wait, which
// handlers must not do but may) gets a fresh one.
template <class R>
R Channel::CallSync(uint16_t opcode, std::span<const uint8_t> payload, Millis timeout, CallOptions opts) {
  auto wait = [](PendingCall& call) {
    if constexpr (std::is_same_v<R, Result<ReplyView>>)
      return call.WaitView();
    else
      return call.Wait();
  };
  thread_local std::unique_ptr<PendingCall> slot = std::make_unique<PendingCall>();
  thread_local bool slot_busy = false;
  if (slot_busy || !slot) return wait(*Begin(opcode, payload, timeout, opts));
  slot_busy = true;
  try {
    opts.reuse = slot.get();
    R reply = wait(*Begin(opcode, payload, timeout, opts));
    slot_busy = false;
    return reply;
  } catch (...) {
    // Thrown between entering the pending table and completion (bad_alloc): the object may still be in the
    // table, so it is leaked rather than freed under a completer, and this thread allocates from now on.
    (void)slot.release();
    slot_busy = false;
    throw;
  }
}

Result<Bytes> Channel::Call(uint16_t opcode, std::span<const uint8_t> payload, Millis timeout) {
  return CallSync<Result<Bytes>>(opcode, payload, timeout, {});
}

Result<Bytes> Channel::Call(uint16_t opcode, std::span<const uint8_t> payload, Millis timeout, Reply reply) {
  return CallSync<Result<Bytes>>(opcode, payload, timeout, {.small_reply = reply == Reply::kSmall});
}

Result<ReplyView> Channel::CallView(uint16_t opcode, std::span<const uint8_t> payload, Millis timeout) {
  return CallSync<Result<ReplyView>>(opcode, payload, timeout,
                                     {.in_place = true, .reply_buffer = &tl_spare_reply});
}

Result<Bytes> Channel::CallOwnedSync(uint16_t opcode, Bytes&& payload, Millis timeout) {
  return CallSync<Result<Bytes>>(opcode, payload, timeout, {.owned = &payload});
}

void Channel::Reset() {
  std::lock_guard lk(connect_mu_);
  uint64_t id = conn_id_.exchange(0);
  if (id == 0) return;
  std::lock_guard wl(m_->worker_mu_);
  m_->CloseConn(id);
}

Status Channel::Send(uint16_t opcode, std::span<const uint8_t> payload) {
  auto id = EnsureConnected(connect_timeout_);
  if (!id.ok()) return id.status();
  return m_->SendMsg(id.value(), proto::MsgKind::kOneWay, opcode, 0, 0, payload);
}

// ---------------------------------------------------------------------------------------------------------
// Messenger: setup and teardown

Messenger::Messenger(const MessengerOptions& options) : options_(options) {
  Metrics* m = options_.metrics ? options_.metrics : &own_metrics_;
  c_requests_sent_ = &m->Counter("lego_msg_requests_sent_total", "Requests sent");
  c_requests_served_ = &m->Counter("lego_msg_requests_served_total", "Requests and one-way messages handled");
  c_bad_messages_ = &m->Counter("lego_msg_bad_messages_total", "Malformed, truncated or oversized messages");
  c_timeouts_ = &m->Counter("lego_msg_timeouts_total", "Calls that timed out");
  c_peer_failures_ = &m->Counter("lego_msg_peer_failures_total", "Connections we opened that failed");
  c_clients_gone_ = &m->Counter("lego_msg_clients_gone_total",
                                "Accepted connections whose client went away (closed it, exited or died)");
  c_conns_accepted_ = &m->Counter("lego_msg_connections_accepted_total", "Connections accepted");
  c_held_ = &m->Counter("lego_msg_held_for_order_total",
                        "Messages that waited for a large message ahead of them on their connection");
  c_order_refused_ =
      &m->Counter("lego_msg_refused_order_full_total",
                  "Messages refused because too many bytes already waited behind a large message "
                  "on their connection (MessengerOptions::max_held_bytes)");
  g_conns_ = &m->Gauge("lego_msg_connections", "Open connections (opened and accepted)");
  stats_provider_ = [m] { return m->Snapshot(); };
}

Result<std::unique_ptr<Messenger>> Messenger::Create(const MessengerOptions& options) {
  std::unique_ptr<Messenger> m(new Messenger(options));
  LEGO_RETURN_IF_ERROR(m->Init());
  m->InstallBuiltinHandlers();
  return m;
}

Status Messenger::Init() {
  // A restarted daemon must be able to listen on its old port while connections of its previous life sit
  // in TIME_WAIT (UCX's default is not to reuse). An explicit UCX_TCP_CM_REUSEADDR in the environment wins.
  setenv("UCX_TCP_CM_REUSEADDR", "y", /*overwrite=*/0);
  ucp_config_t* config = nullptr;
  ucs_status_t st = ucp_config_read(nullptr, nullptr, &config);
  if (st != UCS_OK) return Internal(fmt::format("ucp_config_read: {}", ucs_status_string(st)));
  if (!options_.ucx_transports.empty()) ucp_config_modify(config, "TLS", options_.ucx_transports.c_str());
  ucp_params_t params{};
  params.field_mask = UCP_PARAM_FIELD_FEATURES | UCP_PARAM_FIELD_NAME;
  params.features = UCP_FEATURE_AM | UCP_FEATURE_WAKEUP;
  params.name = options_.name.c_str();
  st = ucp_init(&params, config, &context_);
  ucp_config_release(config);
  if (st != UCS_OK) return Internal(fmt::format("ucp_init: {}", ucs_status_string(st)));

  ucp_worker_params_t wp{};
  wp.field_mask = UCP_WORKER_PARAM_FIELD_THREAD_MODE;
  wp.thread_mode = UCS_THREAD_MODE_SERIALIZED;  // we serialize with worker_mu_
  st = ucp_worker_create(context_, &wp, &worker_);
  if (st != UCS_OK) return Internal(fmt::format("ucp_worker_create: {}", ucs_status_string(st)));
  st = ucp_worker_get_efd(worker_, &worker_efd_);
  if (st != UCS_OK) return Internal(fmt::format("ucp_worker_get_efd: {}", ucs_status_string(st)));

  ucp_am_handler_param_t ap{};
  ap.field_mask = UCP_AM_HANDLER_PARAM_FIELD_ID | UCP_AM_HANDLER_PARAM_FIELD_CB |
                  UCP_AM_HANDLER_PARAM_FIELD_ARG | UCP_AM_HANDLER_PARAM_FIELD_FLAGS;
  ap.id = kAmId;
  ap.cb = &Messenger::OnAm;
  ap.arg = this;
  ap.flags = UCP_AM_FLAG_WHOLE_MSG;
  st = ucp_worker_set_am_recv_handler(worker_, &ap);
  if (st != UCS_OK) return Internal(fmt::format("ucp_worker_set_am_recv_handler: {}", ucs_status_string(st)));

  std::random_device rd;
  salt_state_ = (uint64_t{rd()} << 32) ^ rd();

  kick_fd_ = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  epoll_fd_ = epoll_create1(EPOLL_CLOEXEC);
  if (kick_fd_ < 0 || epoll_fd_ < 0) return ErrnoError("eventfd/epoll_create1", errno);
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.fd = worker_efd_;
  if (epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, worker_efd_, &ev) != 0) return ErrnoError("epoll_ctl", errno);
  ev.data.fd = kick_fd_;
  if (epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, kick_fd_, &ev) != 0) return ErrnoError("epoll_ctl", errno);
  return Status::Ok();
}

void Messenger::InstallBuiltinHandlers() {
  handlers_[proto::kHello] = [this](const Incoming& in, Responder r) {
    auto hello = proto::DecodeFixed<proto::HelloMsg>(in.payload, "any.hello");
    if (!hello.ok()) return r.Error(hello.status());
    if (hello->version != proto::kProtocolVersion) {
      LEGO_LOG_WARN("version_mismatch conn={} peer_version={} our_version={}", in.conn_id, hello->version,
                    proto::kProtocolVersion);
      return r.Error(
          Status(StatusCode::kVersionMismatch, fmt::format("peer speaks v{}, {} speaks v{}", hello->version,
                                                           options_.name, proto::kProtocolVersion)));
    }
    proto::HelloMsg ours{proto::kProtocolVersion,
                         static_cast<uint8_t>(options_.kind),
                         0,
                         static_cast<uint32_t>(getpid()),
                         0,
                         0};
    ours.route = AssignRoute(in.conn_id);  // handlers run with worker_mu_ held
    r.Reply(proto::EncodeFixed(ours));
  };
  handlers_[proto::kPing] = [](const Incoming&, Responder r) { r.Reply(); };
  handlers_[proto::kEcho] = [](const Incoming& in, Responder r) { r.Reply(in.payload); };
  handlers_[proto::kEchoSized] = [this](const Incoming& in, Responder r) {
    auto req = proto::DecodeFixed<proto::EchoSizedReq>(in.payload, "any.echo_sized");
    if (!req.ok()) return r.Error(req.status());
    if (req->reply_bytes > options_.max_payload)
      return r.Error(InvalidArgument("reply_bytes exceeds max payload"));
    thread_local Bytes buf;
    buf.resize(req->reply_bytes, 0x5a);
    r.Reply(std::span(buf.data(), req->reply_bytes));
  };
  handlers_[proto::kGetStats] = [this](const Incoming&, Responder r) {
    r.Reply(proto::EncodeStats(stats_provider_()));
  };
}

void Messenger::Handle(uint16_t opcode, Handler handler, Order order) {
  handlers_[opcode] = std::move(handler);
  if (order == Order::kMayOvertake)
    may_overtake_.insert(opcode);
  else
    may_overtake_.erase(opcode);
}

Status Messenger::Listen(const HostPort& addr) {
  auto ss = Resolve(addr);
  if (!ss.ok()) return ss.status();
  ucp_listener_params_t lp{};
  lp.field_mask = UCP_LISTENER_PARAM_FIELD_SOCK_ADDR | UCP_LISTENER_PARAM_FIELD_CONN_HANDLER;
  lp.sockaddr.addr = reinterpret_cast<const sockaddr*>(&ss.value());
  lp.sockaddr.addrlen = ss->ss_family == AF_INET ? sizeof(sockaddr_in) : sizeof(sockaddr_in6);
  lp.conn_handler.cb = &Messenger::OnConnRequest;
  lp.conn_handler.arg = this;
  std::lock_guard wl(worker_mu_);
  ucs_status_t st = ucp_listener_create(worker_, &lp, &listener_);
  if (st != UCS_OK)
    return Status(StatusCode::kIoError,
                  fmt::format("listen on {}: {}", addr.ToString(), ucs_status_string(st)));
  ucp_listener_attr_t attr{};
  attr.field_mask = UCP_LISTENER_ATTR_FIELD_SOCKADDR;
  st = ucp_listener_query(listener_, &attr);
  if (st != UCS_OK) return Internal(fmt::format("ucp_listener_query: {}", ucs_status_string(st)));
  auto bound = ParseHostPort(SockaddrToString(attr.sockaddr), /*allow_zero=*/false);
  if (!bound.ok()) return bound.status();
  listen_addr_ = bound.value();
  listen_addr_.host = addr.host;  // keep the name the user gave (e.g. "localhost")
  LEGO_LOG_INFO("listening name={} addr={}", options_.name, listen_addr_.ToString());
  return Status::Ok();
}

Status Messenger::Start() {
  if (started_) return Status::Ok();
  started_ = true;
  progress_thread_ = std::thread([this] { ProgressLoop(); });
  return Status::Ok();
}

void Messenger::Shutdown() {
  if (shut_down_) return;
  shut_down_ = true;
  stop_.store(true);
  Kick();
  if (progress_thread_.joinable()) progress_thread_.join();
  {
    MutexLock lk(pending_mu_);
    pending_.TakeIf([](const PendingCall&) { return true; },
                    [](std::shared_ptr<PendingCall> call) {
                      std::lock_guard cl(call->mu_);
                      call->status_ = Status(StatusCode::kShuttingDown, "messenger shutting down");
                      call->done_.store(true, std::memory_order_release);
                      call->WakeWaiterLocked();
                    });
  }
  std::lock_guard wl(worker_mu_);
  if (listener_) {
    ucp_listener_destroy(listener_);
    listener_ = nullptr;
  }
  // Close every endpoint, flushing where the peer is alive, with a bounded wait.
  std::vector<ucs_status_ptr_t> closing;
  auto close = [&](ucp_ep_h ep, bool force) {
    ucs_status_ptr_t r = CloseEp(ep, force);
    if (UCS_PTR_IS_PTR(r)) closing.push_back(r);
  };
  for (auto& [id, c] : conns_) close(c.ep, /*force=*/false);
  for (ucp_ep_h ep : to_close_) close(ep, /*force=*/true);
  closing.insert(closing.end(), closing_.begin(), closing_.end());  // closes started earlier (CloseConn)
  closing_.clear();
  conns_.clear();
  g_conns_->Set(0);
  conns_closed_.fetch_add(1, std::memory_order_release);
  ep_conn_.clear();
  route_conn_.clear();
  to_close_.clear();
  int64_t deadline = MonoMillis() + 1000;
  size_t unclosed = 0;
  for (auto r : closing) {
    while (ucp_request_check_status(r) == UCS_INPROGRESS && MonoMillis() < deadline) Progress();
    if (ucp_request_check_status(r) == UCS_INPROGRESS) {
      ucp_request_cancel(worker_, r);
      ++unclosed;
    }
    ucp_request_free(r);
  }
  for (int i = 0; i < 100; ++i) Progress();
  if (held_replies_ > 0) {
    // A ReplyView or finished call still holds a UCX receive buffer: a caller broke the rule that views do
    // not outlive their messenger. Destroying the worker under it would free the buffer it still reads.
    keep_worker_ = true;
    LEGO_LOG_ERROR("ucx_worker_kept replies_still_held={} (a ReplyView outlives its messenger: a bug)",
                   held_replies_);
  }
  if (unclosed > 0) {
    // A peer that does not answer (stopped, or gone without UCX noticing: loopback has no peer error
    // handling) leaves its endpoint with requests pending, and UCX aborts the process if the worker is
    // destroyed then ("pending request ... should have been flushed"). Leaving the worker to the process's
    // exit is the lesser evil.
    keep_worker_ = true;
    LEGO_LOG_WARN("ucx_worker_kept endpoints_not_closed={} (peers that did not answer within 1 s)", unclosed);
  }
}

Messenger::~Messenger() {
  Shutdown();
  if (!keep_worker_) {
    if (worker_) ucp_worker_destroy(worker_);
    if (context_) ucp_cleanup(context_);
  }
  for (HeldSend* held : free_sends_) delete held;
  if (kick_fd_ >= 0) close(kick_fd_);
  if (epoll_fd_ >= 0) close(epoll_fd_);
}

Result<std::shared_ptr<Channel>> Messenger::Connect(const HostPort& addr, Millis timeout) {
  auto ch = ChannelTo(addr, timeout);
  auto id = ch->EnsureConnected(timeout);
  if (!id.ok()) return id.status();
  return ch;
}

std::shared_ptr<Channel> Messenger::ChannelTo(const HostPort& addr, Millis connect_timeout) {
  return std::shared_ptr<Channel>(new Channel(this, addr, connect_timeout));
}

size_t Messenger::connection_count() {
  std::lock_guard wl(worker_mu_);
  return conns_.size();
}

// ---------------------------------------------------------------------------------------------------------
// Progress

void Messenger::Kick() {
  uint64_t one = 1;
  ssize_t n = write(kick_fd_, &one, sizeof(one));
  (void)n;
  std::lock_guard lk(idle_mu_);
  idle_cv_.notify_all();
}

void Messenger::ProgressLoop() {
  using Clock = std::chrono::steady_clock;
  const auto spin = std::chrono::microseconds(options_.spin_us);
  auto last_active = Clock::now();
  bool active = false;  // something happened since last_active was stamped
  unsigned empty_polls = 0;
  unsigned loops = 0;
  while (!stop_.load(std::memory_order_relaxed)) {
    if ((++loops & 255) == 0) SweepExpiredCalls();
    // While callers drive the worker themselves, stay out of their way (they also run inbound handlers).
    if (spinning_callers_.load(std::memory_order_relaxed) > 0) {
      while (spinning_callers_.load(std::memory_order_relaxed) > 0 && !stop_.load()) {
        {
          std::unique_lock lk(idle_mu_);
          if (spinning_callers_.load(std::memory_order_relaxed) > 0 && !stop_.load())
            idle_cv_.wait_for(lk, Millis(1));
        }
        SweepExpiredCalls();  // callers may spin for a long time under steady traffic
      }
      active = true;
      continue;
    }
    if (lock_waiters_.load(std::memory_order_relaxed) > 0) {
      CpuRelax();
      continue;
    }
    unsigned n;
    {
      std::lock_guard wl(worker_mu_);
      n = Progress();
      if (!to_close_.empty()) {
        for (ucp_ep_h ep : to_close_) {
          ucs_status_ptr_t r = CloseEp(ep, /*force=*/true);
          if (UCS_PTR_IS_PTR(r)) ucp_request_free(r);
        }
        to_close_.clear();
      }
      if (!closing_.empty() && (empty_polls & 1023) == 0) {
        std::erase_if(closing_, [](ucs_status_ptr_t r) {
          if (ucp_request_check_status(r) == UCS_INPROGRESS) return false;
          ucp_request_free(r);
          return true;
        });
      }
    }
    if (n > 0) {
      active = true;
      continue;
    }
    // Reading the clock costs as much as an empty poll: do it every 32 empty polls.
    if ((++empty_polls & 31) != 0) {
      CpuRelax();
      continue;
    }
    auto now = Clock::now();
    if (active) {
      last_active = now;
      active = false;
    }
    if (now - last_active < spin && !last_no_spin_.load(std::memory_order_relaxed)) {
      // Idle for a while within the spin window: yield now and then, so that the spin does not keep a
      // thread on this CPU (a local peer that has to run before it can send us anything) waiting.
      if (now - last_active > kYieldAfterIdle) sched_yield();
      continue;
    }
    ucs_status_t st;
    {
      std::lock_guard wl(worker_mu_);
      st = ucp_worker_arm(worker_);
    }
    if (st == UCS_ERR_BUSY) {
      active = true;
      continue;
    }
    epoll_event evs[2];
    int k = epoll_wait(epoll_fd_, evs, 2, kIdleEpollTimeoutMs);
    for (int i = 0; i < k; ++i) {
      if (evs[i].data.fd == kick_fd_) {
        uint64_t v;
        ssize_t r = read(kick_fd_, &v, sizeof(v));
        (void)r;
      }
    }
    active = k > 0;  // a wake-up with work starts a spin window; an idle timeout does not
    SweepExpiredCalls();
  }
}

unsigned Messenger::Progress() {
  unsigned n;
  {
    ++progress_depth_;
    struct Leave {
      int& depth;
      ~Leave() { --depth; }
    } leave{progress_depth_};
    n = ucp_worker_progress(worker_);
  }
  if (progress_depth_ == 0 && !to_release_.empty()) {
    for (void* data : to_release_) ucp_am_data_release(worker_, data);
    held_replies_ -= to_release_.size();
    to_release_.clear();
  }
  return n;
}

void Messenger::ReleaseHeld(void* data) {
  LockWorker();
  std::lock_guard wl(worker_mu_, std::adopt_lock);
  if (progress_depth_ > 0) {
    to_release_.push_back(data);
    return;
  }
  ucp_am_data_release(worker_, data);
  --held_replies_;
}

void Messenger::LockWorker() {
  // Announce ourselves, so that the progress thread's poll loop steps aside instead of re-taking the lock.
  lock_waiters_.fetch_add(1, std::memory_order_relaxed);
  worker_mu_.lock();
  lock_waiters_.fetch_sub(1, std::memory_order_relaxed);
}

void Messenger::WaitCall(PendingCall* call) {
  using Clock = std::chrono::steady_clock;
  // A small FS call sleeps on UCX's wake-up fd itself (WaitFsCall), one such waiter at a time: every poller
  // wakes for every event, and a herd of them (a pmon's FUSE threads with several READs in flight) cost
  // more than the wake-up they save.
  if (PollForReply(call->opcode_, call->request_bytes_, call->small_reply_) &&
      !fs_poller_.exchange(true, std::memory_order_acquire)) {
    const bool waited = WaitFsCall(call);
    fs_poller_.store(false, std::memory_order_release);
    if (waited) return;
  }
  // Fast path: drive the worker ourselves for up to spin_us; no thread hand-off (not for FS calls: NoSpin).
  // The clock is read every 64 polls, starting after the first 64: replies over shared memory arrive
  // sooner, with no clock read at all. The worker lock is taken per poll, so that the daemon's other
  // threads (a pmon's evictor) can send in between (holding it across polls measured no faster).
  spinning_callers_.fetch_add(1, std::memory_order_relaxed);
  if (!NoSpin(call->opcode_) && !call->done()) {
    const auto spin = std::chrono::microseconds(options_.spin_us);
    Clock::time_point spin_until{}, yield_after{};
    for (unsigned i = 1; !call->done(); ++i) {
      // Not LockWorker: the progress thread stays out of the way while callers spin (spinning_callers_).
      worker_mu_.lock();
      Progress();
      worker_mu_.unlock();
      if ((i & 63) != 0) continue;
      auto now = Clock::now();
      if (i == 64) {
        spin_until = now + spin;
        yield_after = now + kYieldAfterIdle;
      }
      if (now >= spin_until) break;
      // No reply for a while: the peer may be waiting for this very CPU (a daemon on the same host placed
      // on our CPU), which a spin would keep from it for the whole spin window. Let it run.
      if (now >= yield_after) sched_yield();
    }
  }
  spinning_callers_.fetch_sub(1, std::memory_order_relaxed);
  if (call->done()) return;
  Kick();  // the progress thread takes over driving the worker
  std::unique_lock lk(call->mu_);
  ++call->sleepers_;
  const bool done = call->cv_.wait_until(lk, call->Deadline(), [&] { return call->done(); });
  --call->sleepers_;
  if (!done) ExpireWait(call, lk);
}

// The caller's deadline passed without a reply: whoever takes the call out of the pending table completes it.
void Messenger::ExpireWait(PendingCall* call, std::unique_lock<std::mutex>& lk) {
  lk.unlock();
  bool removed = false;
  {
    MutexLock pl(pending_mu_);
    removed = pending_.Take(call->request_id_) != nullptr;
  }
  lk.lock();
  if (removed)
    MarkTimedOut(call);
  else {
    ++call->sleepers_;
    call->cv_.wait(lk, [&] { return call->done(); });  // completion is racing us: it is imminent
    --call->sleepers_;
  }
}

namespace {
// This thread's eventfd for WaitFsCall (-1 if it could not be made); closed when the thread exits.
struct ThreadWaker {
  int fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  ~ThreadWaker() {
    if (fd >= 0) close(fd);
  }
};
}  // namespace

// An FS reply takes hundreds of microseconds, so the caller sleeps; but if it slept on its condition
// variable, the reply would wake the progress thread, which would then wake the caller: two wake-ups in a
// row, 10-30 us each on this VM. Instead the caller sleeps in poll() on the worker's wake-up fd itself, as
// the progress thread does in epoll: the reply wakes both at once, and whichever takes the worker first
// delivers it (if the progress thread does, it writes this thread's eventfd, and we are already awake).
bool Messenger::WaitFsCall(PendingCall* call) {
  thread_local ThreadWaker waker;
  if (waker.fd < 0) return false;
  {
    std::lock_guard lk(call->mu_);
    if (call->done()) return true;
    call->waker_fd_ = waker.fd;
  }
  const auto deadline = call->Deadline();
  while (!call->done()) {
    uint64_t drained;
    (void)!read(waker.fd, &drained, sizeof drained);  // stale wake-ups of earlier calls
    ucs_status_t st;
    LockWorker();
    Progress();
    st = call->done() ? UCS_OK : ucp_worker_arm(worker_);
    worker_mu_.unlock();
    if (call->done()) break;
    if (st == UCS_ERR_BUSY) continue;  // events came in between: progress again
    const auto left = std::chrono::duration_cast<Millis>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) break;
    pollfd fds[2] = {{worker_efd_, POLLIN, 0}, {waker.fd, POLLIN, 0}};
    // At most 100 ms per sleep: the worker's fd is shared with the progress thread, and an event it takes
    // before we poll leaves us to the eventfd (always written on completion) or to this bound.
    (void)poll(fds, 2, static_cast<int>(std::min<int64_t>(left.count() + 1, 100)));
  }
  std::unique_lock lk(call->mu_);
  call->waker_fd_ = -1;  // from here on nobody writes to this thread's eventfd for this call
  if (!call->done()) ExpireWait(call, lk);
  return true;
}

void Messenger::MarkTimedOut(PendingCall* call) {
  c_timeouts_->Increment();
  call->status_ = Status(StatusCode::kTimeout, fmt::format("{} timed out on connection {}",
                                                           proto::OpcodeName(call->opcode_), call->conn_id_));
  call->done_.store(true, std::memory_order_release);
  call->WakeWaiterLocked();
  LEGO_LOG_RATELIMITED("call_timeout op={} conn={}", proto::OpcodeName(call->opcode_), call->conn_id_);
}

void Messenger::SweepExpiredCalls() {
  const int64_t now = CoarseNanos();
  if (now < next_sweep_ns_) return;
  next_sweep_ns_ = now + std::chrono::nanoseconds(kSweepEvery).count();
  std::vector<std::shared_ptr<PendingCall>> expired;
  {
    MutexLock pl(pending_mu_);
    pending_.TakeIf([now](const PendingCall& call) { return call.coarse_deadline_ns_ <= now; },
                    [&expired](std::shared_ptr<PendingCall> call) { expired.push_back(std::move(call)); });
  }
  for (auto& call : expired) {
    std::lock_guard cl(call->mu_);
    MarkTimedOut(call.get());
  }
}

// ---------------------------------------------------------------------------------------------------------
// Connections

Result<uint64_t> Messenger::CreateClientConn(const HostPort& addr) {
  if (stop_.load()) return Status(StatusCode::kShuttingDown, "messenger shutting down");
  auto ss = Resolve(addr);
  if (!ss.ok()) return ss.status();
  ucp_ep_params_t ep{};
  ep.field_mask = UCP_EP_PARAM_FIELD_FLAGS | UCP_EP_PARAM_FIELD_SOCK_ADDR | UCP_EP_PARAM_FIELD_ERR_HANDLER |
                  UCP_EP_PARAM_FIELD_ERR_HANDLING_MODE;
  ep.flags = UCP_EP_PARAMS_FLAGS_CLIENT_SERVER;
  ep.sockaddr.addr = reinterpret_cast<const sockaddr*>(&ss.value());
  ep.sockaddr.addrlen = ss->ss_family == AF_INET ? sizeof(sockaddr_in) : sizeof(sockaddr_in6);
  ep.err_mode = ErrMode(IsLoopback(ss.value()));
  ep.err_handler.cb = &Messenger::OnEpError;
  ep.err_handler.arg = this;
  ucp_ep_h h = nullptr;
  ucs_status_t st = ucp_ep_create(worker_, &ep, &h);
  if (st != UCS_OK)
    return Status(StatusCode::kPeerUnreachable,
                  fmt::format("connect to {}: {}", addr.ToString(), ucs_status_string(st)));
  uint64_t id = next_conn_id_++;
  conns_[id] = Conn{id, h, true, addr.ToString()};
  ep_conn_[h] = id;
  g_conns_->Set(static_cast<double>(conns_.size()));
  LEGO_LOG_DEBUG("connecting conn={} peer={}", id, addr.ToString());
  return id;
}

void Messenger::OnConnRequest(ucp_conn_request_h req, void* arg) {
  auto* self = static_cast<Messenger*>(arg);
  ucp_conn_request_attr_t attr{};
  attr.field_mask = UCP_CONN_REQUEST_ATTR_FIELD_CLIENT_ADDR;
  std::string peer = "?";
  bool loopback = false;
  if (ucp_conn_request_query(req, &attr) == UCS_OK) {
    peer = SockaddrToString(attr.client_address);
    loopback = IsLoopback(attr.client_address);
  }
  if (self->stop_.load()) {
    ucp_listener_reject(self->listener_, req);
    return;
  }
  ucp_ep_params_t ep{};
  ep.field_mask =
      UCP_EP_PARAM_FIELD_CONN_REQUEST | UCP_EP_PARAM_FIELD_ERR_HANDLER | UCP_EP_PARAM_FIELD_ERR_HANDLING_MODE;
  ep.conn_request = req;
  ep.err_mode = self->ErrMode(loopback);
  ep.err_handler.cb = &Messenger::OnEpError;
  ep.err_handler.arg = self;
  ucp_ep_h h = nullptr;
  ucs_status_t st = ucp_ep_create(self->worker_, &ep, &h);
  if (st != UCS_OK) {
    LEGO_LOG_WARN("accept_failed peer={} error=\"{}\"", peer, ucs_status_string(st));
    return;
  }
  uint64_t id = self->next_conn_id_++;
  self->conns_[id] = Conn{id, h, false, peer};
  self->ep_conn_[h] = id;
  self->g_conns_->Set(static_cast<double>(self->conns_.size()));
  self->c_conns_accepted_->Increment();
  LEGO_LOG_DEBUG("accepted conn={} peer={}", id, peer);
}

ucp_err_handling_mode_t Messenger::ErrMode(bool loopback_peer) const {
  switch (options_.error_mode) {
    case MessengerOptions::ErrorMode::kPeer:
      return UCP_ERR_HANDLING_MODE_PEER;
    case MessengerOptions::ErrorMode::kNone:
      return UCP_ERR_HANDLING_MODE_NONE;
    case MessengerOptions::ErrorMode::kAuto:
      break;
  }
  return loopback_peer ? UCP_ERR_HANDLING_MODE_NONE : UCP_ERR_HANDLING_MODE_PEER;
}

void Messenger::OnEpError(void* arg, ucp_ep_h ep, ucs_status_t status) {
  static_cast<Messenger*>(arg)->FailConn(ep, status);
}

void Messenger::FailConn(ucp_ep_h ep, ucs_status_t status) {
  auto it = ep_conn_.find(ep);
  if (it == ep_conn_.end()) return;
  const uint64_t id = it->second;
  const Conn conn = conns_[id];  // a copy: the entry is erased below
  if (conn.client) {
    c_peer_failures_->Increment();
    LEGO_LOG_INFO("peer_failed conn={} peer={} error=\"{}\"", id, conn.peer, ucs_status_string(status));
  } else {
    // An accepted connection ends this way however its client left: a disconnect on purpose (the CLI after
    // each command, Channel::Reset), an exit, or a crash look the same to UCX here. Not a failure of ours.
    c_clients_gone_->Increment();
    LEGO_LOG_DEBUG("client_gone conn={} peer={} error=\"{}\"", id, conn.peer, ucs_status_string(status));
  }
  // UCX forbids closing the endpoint from inside its own error callback: the progress loop closes it.
  to_close_.push_back(ep);
  ForgetConn(conns_.find(id));
  conns_closed_.fetch_add(1, std::memory_order_release);
  FailCallsOnConn(
      id, Status(StatusCode::kPeerUnreachable,
                 fmt::format("connection {} to {} failed: {}", id, conn.peer, ucs_status_string(status))));
}

void Messenger::ForgetConn(std::unordered_map<uint64_t, Conn>::iterator it) {
  ep_conn_.erase(it->second.ep);
  if (!it->second.client && it->second.route != 0) route_conn_.erase(it->second.route);
  conns_.erase(it);
  g_conns_->Set(static_cast<double>(conns_.size()));
}

uint32_t Messenger::AssignRoute(uint64_t conn_id) {
  auto it = conns_.find(conn_id);
  if (it == conns_.end() || it->second.client) return 0;
  if (it->second.route != 0) return it->second.route;  // a repeated hello on the same connection
  uint32_t route;
  do {
    route = static_cast<uint32_t>(NewIdSalt() >> 32);  // random: a peer cannot guess another's route
  } while (route == 0 || route_conn_.count(route) > 0);
  it->second.route = route;
  route_conn_[route] = conn_id;
  return route;
}

ucs_status_ptr_t Messenger::CloseEp(ucp_ep_h ep, bool force) {
  ucp_request_param_t p{};
  p.op_attr_mask = UCP_OP_ATTR_FIELD_FLAGS;
  p.flags = force ? UCP_EP_CLOSE_FLAG_FORCE : 0;
  return ucp_ep_close_nbx(ep, &p);
}

// Closed with UCX's disconnect, not forced: a forced close tells the peer nothing, and over loopback (no
// peer error handling, ErrMode) the server kept its side of every reset connection until it stopped (a
// member heartbeating a SIGSTOPped gm left one per failed heartbeat). The close is not waited for: it
// completes when the peer answers, or fails when UCX finds the peer gone.
void Messenger::CloseConn(uint64_t conn_id) {
  auto it = conns_.find(conn_id);
  if (it == conns_.end()) return;
  ucs_status_ptr_t r = CloseEp(it->second.ep, /*force=*/false);
  if (UCS_PTR_IS_PTR(r)) closing_.push_back(r);  // freed once done (ProgressLoop), or at Shutdown
  ForgetConn(it);
  conns_closed_.fetch_add(1, std::memory_order_release);
  FailCallsOnConn(conn_id,
                  Status(StatusCode::kPeerUnreachable, fmt::format("connection {} closed", conn_id)));
}

// ---------------------------------------------------------------------------------------------------------
// Sending

Status Messenger::SendMsg(uint64_t conn_id, proto::MsgKind kind, uint16_t opcode, uint64_t request_id,
                          int32_t status, std::span<const uint8_t> payload, Bytes* owned) {
  if (payload.size() > options_.max_payload)
    return InvalidArgument(fmt::format("{} payload of {} bytes exceeds the {} byte limit",
                                       proto::OpcodeName(opcode), payload.size(), options_.max_payload));
  proto::MsgHeader hdr{proto::kMagic,
                       proto::kProtocolVersion,
                       static_cast<uint8_t>(kind),
                       opcode,
                       request_id,
                       static_cast<uint32_t>(payload.size()),
                       status};
  LockWorker();
  std::lock_guard wl(worker_mu_, std::adopt_lock);
  auto it = conns_.find(conn_id);
  if (it == conns_.end())
    return Status(StatusCode::kPeerUnreachable, fmt::format("connection {} is closed", conn_id));
  if (kind != proto::MsgKind::kReply) hdr.status = static_cast<int32_t>(it->second.route);
  if ((kind == proto::MsgKind::kReply || hdr.status != 0) && payload.size() <= kInlineBytes) {
    // A small message without UCX's reply flag usually goes out inline (AM short) at once, from the
    // caller's buffers: no copy.
    ucp_request_param_t p{};
    p.op_attr_mask = UCP_OP_ATTR_FIELD_FLAGS | UCP_OP_ATTR_FLAG_FORCE_IMM_CMPL;
    p.flags = 0;
    ucs_status_ptr_t r =
        ucp_am_send_nbx(it->second.ep, kAmId, &hdr, sizeof(hdr), payload.data(), payload.size(), &p);
    if (r == nullptr) return Status::Ok();
  }
  return SendRawLocked(it->second.ep, hdr, sizeof(hdr), payload, owned);
}

// A request or one-way message carries either its connection's route (in the header's status field) or,
// when it has none (any.hello, which asks for one), UCP_AM_SEND_FLAG_REPLY, so that the receiver learns the
// connection it came on; replies need neither. UCX 1.13 never sends a message with the reply flag inline
// (AM short), which is why routes exist (protocol.md). A message that did not go inline is copied into a
// held buffer (recycled from a small pool: no allocation on the fast path), or sent from the caller's
// handed-over buffer, and UCX completes the send at once or later (OnSendDone).
Status Messenger::SendRawLocked(ucp_ep_h ep, const proto::MsgHeader& hdr, size_t header_len,
                                std::span<const uint8_t> payload, Bytes* owned) {
  const bool take = owned && owned->data() == payload.data() && owned->size() == payload.size();
  HeldSend* held;
  if (!free_sends_.empty()) {
    held = free_sends_.back();
    free_sends_.pop_back();
  } else {
    held = new HeldSend;
    held->m = this;
  }
  held->hdr = hdr;
  held->header_len = header_len;
  if (take)
    held->data = std::move(*owned);
  else
    held->data.assign(payload.begin(), payload.end());
  ucp_request_param_t p{};
  p.op_attr_mask = UCP_OP_ATTR_FIELD_CALLBACK | UCP_OP_ATTR_FIELD_USER_DATA | UCP_OP_ATTR_FIELD_FLAGS;
  p.cb.send = &Messenger::OnSendDone;
  p.user_data = held;
  const bool routed = hdr.kind == static_cast<uint8_t>(proto::MsgKind::kReply) || hdr.status != 0;
  p.flags = routed ? 0 : UCP_AM_SEND_FLAG_REPLY;
  ucs_status_ptr_t r =
      ucp_am_send_nbx(ep, kAmId, &held->hdr, header_len, held->data.data(), held->data.size(), &p);
  if (UCS_PTR_IS_PTR(r)) return Status::Ok();  // in flight; OnSendDone recycles it
  RecycleSend(held);
  if (r == nullptr) return Status::Ok();
  return Status(StatusCode::kPeerUnreachable, fmt::format("send: {}", ucs_status_string(UCS_PTR_STATUS(r))));
}

void Messenger::RecycleSend(HeldSend* held) {
  // Keep small buffers for the next send; hand large ones (page windows, FS data) back to the allocator.
  if (held->data.capacity() > kPooledSendBytes || free_sends_.size() >= kMaxPooledSends) {
    delete held;
    return;
  }
  held->data.clear();
  free_sends_.push_back(held);
}

void Messenger::OnSendDone(void* request, ucs_status_t status, void* user_data) {
  auto* held = static_cast<HeldSend*>(user_data);
  held->m->RecycleSend(held);  // callbacks run inside ucp_worker_progress: worker_mu_ is held
  ucp_request_free(request);
}

uint64_t Messenger::NewIdSalt() {
  uint64_t z = (salt_state_ += 0x9E3779B97F4A7C15ull);  // splitmix64
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  z ^= z >> 31;
  return z & 0xFFFFFFFF00000000ull;
}

std::shared_ptr<PendingCall> Messenger::StartCall(uint64_t conn_id, uint64_t id_salt, uint16_t opcode,
                                                  std::span<const uint8_t> payload, Millis timeout,
                                                  const CallOptions& opts) {
  std::shared_ptr<PendingCall> call;
  if (opts.reuse) {
    opts.reuse->Reset(this);
    call = std::shared_ptr<PendingCall>(std::shared_ptr<void>(), opts.reuse);  // aliasing: owns nothing
  } else {
    call = std::make_shared<PendingCall>();
    call->m_ = this;
  }
  // Unique within this messenger while fewer than 2^32 calls separate two pending ones (the counter's low
  // half); unpredictable across connections (the salt).
  call->request_id_ = id_salt | (next_request_id_.fetch_add(1, std::memory_order_relaxed) & 0xFFFFFFFFull);
  call->conn_id_ = conn_id;
  call->opcode_ = opcode;
  call->request_bytes_ = payload.size();
  call->small_reply_ = opts.small_reply;
  call->in_place_ = opts.in_place;
  if (opts.reply_buffer) call->reply_ = std::move(*opts.reply_buffer);
  call->SetTimeout(timeout);
  {
    MutexLock pl(pending_mu_);
    pending_.Insert(call->request_id_, call);
  }
  c_requests_sent_->Increment();
  Status st = SendMsg(conn_id, proto::MsgKind::kRequest, opcode, call->request_id_, 0, payload, opts.owned);
  if (!st.ok()) {
    {
      MutexLock pl(pending_mu_);
      pending_.Take(call->request_id_);
    }
    std::lock_guard cl(call->mu_);
    call->status_ = st;
    call->done_.store(true, std::memory_order_release);
  }
  return call;
}

bool Messenger::CompleteCall(uint64_t request_id, Status status, std::span<const uint8_t> payload,
                             Bytes* owned, bool holdable) {
  std::shared_ptr<PendingCall> call;
  {
    MutexLock pl(pending_mu_);
    call = pending_.Take(request_id);
  }
  if (!call) {
    LEGO_LOG_DEBUG("late_reply request_id={}", request_id);  // it timed out already
    return false;
  }
  bool held = false;
  std::lock_guard cl(call->mu_);
  call->status_ = std::move(status);
  if (call->status_.ok()) {
    if (owned) {
      call->reply_ = std::move(*owned);  // a rendezvous reply: its buffer (exactly the payload), not a copy
    } else if (holdable && call->in_place_ && payload.size() >= kMinInPlaceBytes) {
      // Read in place: UCX keeps the buffer until the caller's ReplyView (or the call) gives it back.
      call->held_ = payload;
      held = true;
      ++held_replies_;  // CompleteCall runs inside Progress(): worker_mu_ is held
    } else {
      call->reply_.assign(payload.begin(), payload.end());
    }
  }
  call->done_.store(true, std::memory_order_release);
  call->WakeWaiterLocked();
  return held;
}

void Messenger::FailCallsOnConn(uint64_t conn_id, const Status& status) {
  std::vector<std::shared_ptr<PendingCall>> failed;
  {
    MutexLock pl(pending_mu_);
    pending_.TakeIf([conn_id](const PendingCall& call) { return call.conn_id_ == conn_id; },
                    [&failed](std::shared_ptr<PendingCall> call) { failed.push_back(std::move(call)); });
  }
  for (auto& call : failed) {
    std::lock_guard cl(call->mu_);
    call->status_ = status;
    call->done_.store(true, std::memory_order_release);
    call->WakeWaiterLocked();
  }
}

// ---------------------------------------------------------------------------------------------------------
// Receiving (runs on whichever thread drives the worker, with worker_mu_ held)

ucs_status_t Messenger::OnAm(void* arg, const void* header, size_t header_len, void* data, size_t len,
                             const ucp_am_recv_param_t* param) {
  return static_cast<Messenger*>(arg)->HandleAm(header, header_len, data, len, param) ? UCS_INPROGRESS
                                                                                      : UCS_OK;
}

void Messenger::Reject(uint64_t conn_id, const proto::MsgHeader& hdr, StatusCode code,
                       const std::string& why) {
  c_bad_messages_->Increment();
  LEGO_LOG_RATELIMITED("bad_message conn={} op={:#06x} code={} why=\"{}\"", conn_id, hdr.opcode,
                       StatusCodeName(code), why);
  ReplyError(conn_id, hdr, code, why);
}

void Messenger::ReplyError(uint64_t conn_id, const proto::MsgHeader& hdr, StatusCode code,
                           const std::string& why) {
  if (hdr.kind != static_cast<uint8_t>(proto::MsgKind::kRequest) || conn_id == 0) return;
  auto bytes = std::span(reinterpret_cast<const uint8_t*>(why.data()), why.size());
  Status st =
      SendMsg(conn_id, proto::MsgKind::kReply, hdr.opcode, hdr.request_id, static_cast<int32_t>(code), bytes);
  (void)st;
}

bool Messenger::HandleAm(const void* header, size_t header_len, void* data, size_t len,
                         const ucp_am_recv_param_t* param) {
  uint64_t conn_id = 0;
  if (param->recv_attr & UCP_AM_RECV_ATTR_FIELD_REPLY_EP) {
    auto it = ep_conn_.find(param->reply_ep);
    if (it != ep_conn_.end()) conn_id = it->second;
  }
  const bool rndv = param->recv_attr & UCP_AM_RECV_ATTR_FLAG_RNDV;
  // A rejected rendezvous descriptor is dropped by UCX when we return UCS_OK without receiving it.
  auto check = proto::ValidateHeader(std::span(static_cast<const uint8_t*>(header), header_len), len,
                                     options_.max_payload);
  const proto::MsgHeader& hdr = check.hdr;
  auto kind = static_cast<proto::MsgKind>(hdr.kind);
  if (check.verdict == proto::HeaderVerdict::kDrop) {
    c_bad_messages_->Increment();
    LEGO_LOG_RATELIMITED("bad_message conn={} why=\"{}\"", conn_id, check.problem);
    return false;
  }
  if (conn_id == 0 && kind != proto::MsgKind::kReply && hdr.status != 0) {
    // A routed request or one-way message (protocol.md, "Routes"): the route names the connection.
    auto it = route_conn_.find(static_cast<uint32_t>(hdr.status));
    if (it == route_conn_.end()) {
      c_bad_messages_->Increment();
      LEGO_LOG_RATELIMITED("unknown_route route={:#x} op={:#06x} kind={}", static_cast<uint32_t>(hdr.status),
                           hdr.opcode, hdr.kind);
      return false;  // no connection to answer on: the caller times out or sees its connection fail
    }
    conn_id = it->second;
  }
  if (check.verdict == proto::HeaderVerdict::kReject) {
    if (kind == proto::MsgKind::kReply) {
      c_bad_messages_->Increment();
      LEGO_LOG_RATELIMITED("bad_reply conn={} why=\"{}\"", conn_id, check.problem);
      CompleteCall(hdr.request_id, Status(check.code, "bad reply: " + check.problem), {});
      return false;
    }
    Reject(conn_id, hdr, check.code, check.problem);
    return false;
  }
  if (kind != proto::MsgKind::kReply && conn_id != 0 && (rndv || !ordered_.empty()) &&
      !may_overtake_.contains(hdr.opcode)) {
    auto q = ordered_.find(conn_id);
    if (rndv || q != ordered_.end()) {
      QueueOrdered(hdr, conn_id, data, len, rndv);
      return false;
    }
  }
  Bytes buf;  // for a rendezvous reply: the buffer its caller gave (CallAsync), if any
  if (rndv && kind == proto::MsgKind::kReply) {
    bool wanted = false;
    {
      MutexLock pl(pending_mu_);
      // While the call is in the table no completer touches its reply_, nor does its caller.
      if (PendingCall* call = pending_.Find(hdr.request_id)) {
        wanted = true;
        buf = std::move(call->reply_);
      }
    }
    if (!wanted) {  // timed out or abandoned: not worth the transfer
      LEGO_LOG_DEBUG("late_reply request_id={} bytes={}", hdr.request_id, len);
      return false;
    }
  }
  if (rndv) {
    // Large payload: fetch it, then dispatch from the completion callback. A given buffer is resized, which
    // zero-fills only what it grows by.
    buf.resize(len);
    auto* rr = new RndvRecv{this, hdr, conn_id, std::move(buf)};
    ucp_request_param_t p{};
    p.op_attr_mask = UCP_OP_ATTR_FIELD_CALLBACK | UCP_OP_ATTR_FIELD_USER_DATA;
    p.cb.recv_am = &Messenger::OnRndvDone;
    p.user_data = rr;
    ucs_status_ptr_t r = ucp_am_recv_data_nbx(worker_, data, rr->buf.data(), len, &p);
    if (r == nullptr) {
      OnRndvDone(nullptr, UCS_OK, len, rr);
    } else if (UCS_PTR_IS_ERR(r)) {
      LEGO_LOG_RATELIMITED("rndv_recv_failed conn={} error=\"{}\"", conn_id,
                           ucs_status_string(UCS_PTR_STATUS(r)));
      delete rr;
    }
    return false;
  }
  return Deliver(hdr, conn_id, std::span(static_cast<const uint8_t*>(data), len), nullptr,
                 param->recv_attr & UCP_AM_RECV_ATTR_FLAG_DATA);
}

bool Messenger::Deliver(const proto::MsgHeader& hdr, uint64_t conn_id, std::span<const uint8_t> payload,
                        Bytes* owned, bool holdable) {
  last_no_spin_.store(NoSpin(hdr.opcode), std::memory_order_relaxed);
  if (hdr.kind != static_cast<uint8_t>(proto::MsgKind::kReply)) {
    Dispatch(hdr, conn_id, payload, owned);
    return false;
  }
  Status st;
  if (hdr.status != 0)  // an error reply carries its message as the payload
    st = Status(proto::ReplyStatus(hdr.status), std::string(reinterpret_cast<const char*>(payload.data()),
                                                            std::min(payload.size(), proto::kMaxStringLen)));
  return CompleteCall(hdr.request_id, std::move(st), payload, owned, holdable);
}

void Messenger::OnRndvDone(void* request, ucs_status_t status, size_t length, void* user_data) {
  auto* rr = static_cast<RndvRecv*>(user_data);
  if (request) ucp_request_free(request);
  if (Ordered* e = rr->ordered) {
    if (status == UCS_OK) {
      e->buf.resize(std::min(length, e->buf.size()));
      e->state = Ordered::State::kReady;
    } else {
      LEGO_LOG_RATELIMITED("rndv_recv_failed conn={} op={:#06x} error=\"{}\"", rr->conn_id, rr->hdr.opcode,
                           ucs_status_string(status));
      e->state = Ordered::State::kFailed;
    }
    Messenger* m = rr->m;
    const uint64_t conn_id = rr->conn_id;
    delete rr;
    m->DeliverOrdered(conn_id);
    return;
  }
  if (status == UCS_OK) {
    rr->buf.resize(std::min(length, rr->buf.size()));
    rr->m->Deliver(rr->hdr, rr->conn_id, std::span<const uint8_t>(rr->buf.data(), rr->buf.size()), &rr->buf);
  } else {
    LEGO_LOG_RATELIMITED("rndv_recv_failed conn={} error=\"{}\"", rr->conn_id, ucs_status_string(status));
  }
  delete rr;
}

// A request or one-way message that must wait for a rendezvous transfer ahead of it on its connection (or is
// itself one): appended to the connection's queue, a small one as a copy, a large one as the buffer its
// transfer lands in. DeliverOrdered hands them to Deliver in arrival order, each once everything ahead of
// it has been delivered.
void Messenger::QueueOrdered(const proto::MsgHeader& hdr, uint64_t conn_id, void* data, size_t len,
                             bool rndv) {
  OrderQueue& q = ordered_[conn_id];
  // Both kinds count: a small message's copy and a rendezvous message's buffer (allocated now, filled as its
  // data arrives: a peer that sends headers and stalls their data must not make us allocate without end).
  // The first message of a queue is always taken, so that any message up to max_payload gets through.
  if (!q.entries.empty() && q.held_bytes + len > options_.max_held_bytes) {
    // Refused, not reordered: the sender learns at once, and what it sent later still waits its turn.
    c_order_refused_->Increment();
    LEGO_LOG_RATELIMITED("order_queue_full conn={} op={:#06x} kind={} held_bytes={} limit={}", conn_id,
                         hdr.opcode, hdr.kind, q.held_bytes, options_.max_held_bytes);
    return ReplyError(conn_id, hdr, StatusCode::kBusy,
                      fmt::format("{} bytes of messages already wait behind a large one on this connection "
                                  "(limit {}): refused rather than handled out of order",
                                  q.held_bytes, options_.max_held_bytes));
  }
  if (!q.entries.empty()) c_held_->Increment();
  auto owned = std::make_unique<Ordered>();
  Ordered* e = owned.get();
  e->hdr = hdr;
  q.entries.push_back(std::move(owned));
  e->counted = len;
  q.held_bytes += len;
  if (!rndv) {
    const auto* p = static_cast<const uint8_t*>(data);
    e->buf.assign(p, p + len);
    e->state = Ordered::State::kReady;
    return;  // something is ahead of it (else the queue would not exist): delivered when that completes
  }
  e->buf.resize(len);
  auto* rr = new RndvRecv{this, hdr, conn_id, {}, e};
  ucp_request_param_t p{};
  p.op_attr_mask = UCP_OP_ATTR_FIELD_CALLBACK | UCP_OP_ATTR_FIELD_USER_DATA;
  p.cb.recv_am = &Messenger::OnRndvDone;
  p.user_data = rr;
  ucs_status_ptr_t r = ucp_am_recv_data_nbx(worker_, data, e->buf.data(), len, &p);
  if (r == nullptr) return OnRndvDone(nullptr, UCS_OK, len, rr);
  if (UCS_PTR_IS_ERR(r)) OnRndvDone(nullptr, UCS_PTR_STATUS(r), 0, rr);
}

void Messenger::DeliverOrdered(uint64_t conn_id) {
  auto it = ordered_.find(conn_id);
  // A handler that makes the worker progress (a nested call) may complete a transfer of this connection:
  // the outer loop, still running, delivers it.
  if (it == ordered_.end() || it->second.draining) return;
  OrderQueue& q = it->second;  // stays valid: only this function erases, and not while draining
  q.draining = true;
  while (!q.entries.empty() && q.entries.front()->state != Ordered::State::kReceiving) {
    std::unique_ptr<Ordered> e = std::move(q.entries.front());
    q.entries.pop_front();
    q.held_bytes -= e->counted;
    // Not while shutting down (a transfer cancelled by the worker's teardown): nobody could be answered,
    // and the handlers' owners may be gone.
    if (e->state == Ordered::State::kReady && !stop_.load(std::memory_order_relaxed))
      Deliver(e->hdr, conn_id, std::span<const uint8_t>(e->buf.data(), e->buf.size()), &e->buf);
  }
  q.draining = false;
  if (q.entries.empty()) ordered_.erase(conn_id);
}

void Messenger::Dispatch(const proto::MsgHeader& hdr, uint64_t conn_id, std::span<const uint8_t> payload,
                         Bytes* owned) {
  const bool one_way = hdr.kind == static_cast<uint8_t>(proto::MsgKind::kOneWay);
  if (conn_id == 0 && !one_way) {
    LEGO_LOG_RATELIMITED("request_without_reply_ep op={:#06x}", hdr.opcode);
    return;
  }
  c_requests_served_->Increment();
  auto it = handlers_.find(hdr.opcode);
  if (it == handlers_.end()) {
    Reject(conn_id, hdr, StatusCode::kUnknownOpcode,
           fmt::format("opcode {:#06x} is not served by {}", hdr.opcode, options_.name));
    return;
  }
  Incoming in{hdr.opcode, payload, conn_id, one_way, hdr.request_id, owned};
  try {
    it->second(in, Responder(this, conn_id, hdr.request_id, hdr.opcode, one_way));
  } catch (const std::exception& e) {
    LEGO_LOG_ERROR("handler_threw op={} what=\"{}\"", proto::OpcodeName(hdr.opcode), e.what());
  }
}

}  // namespace lego::msg
