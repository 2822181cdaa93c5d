// Transport tests: real UCX Messengers talking over loopback (in one process, and to real daemons).
#include "messaging/messenger.h"

#include <signal.h>

#include <algorithm>
#include <atomic>
#include <thread>

#include <gtest/gtest.h>

#include "common/log.h"
#include "protocol/any.h"
#include "support/test_support.h"
#include "transport/messenger_test_peer.h"

namespace lego::msg {
namespace {

using namespace std::chrono_literals;
constexpr uint16_t kSlowOp = 0x7f01;     // test-only opcode: replies after the delay in its payload (ms)
constexpr uint16_t kNotifyOp = 0x7f02;   // test-only one-way opcode
constexpr uint16_t kSlowBigOp = 0x7f03;  // test-only opcode: u32 delay (ms), u32 n: replies n bytes after it

std::unique_ptr<Messenger> Make(const std::string& name, uint32_t max_payload = proto::kDefaultMaxPayload,
                                size_t max_held_bytes = MessengerOptions{}.max_held_bytes) {
  MessengerOptions o;
  o.name = name;
  o.max_payload = max_payload;
  o.max_held_bytes = max_held_bytes;
  auto m = Messenger::Create(o);
  EXPECT_TRUE(m.ok()) << m.status().ToString();
  return std::move(m.value());
}

class MessengerTest : public ::testing::Test {
 protected:
  // Starts srv listening on a loopback port and connects the client to it.
  Result<std::shared_ptr<Channel>> ServeAndConnect(Messenger& srv) {
    if (Status st = srv.Listen({"127.0.0.1", 0}); !st.ok()) return st;
    if (Status st = srv.Start(); !st.ok()) return st;
    return client_->Connect(srv.listen_address(), 5s);
  }
  void SetUp() override {
    server_ = Make("server", 64 * 1024);
    server_->Handle(kSlowOp, [this](const Incoming& in, Responder r) {
      uint32_t ms = 0;
      std::memcpy(&ms, in.payload.data(), std::min<size_t>(4, in.payload.size()));
      slow_threads_.emplace_back([r = std::move(r), ms]() mutable {
        std::this_thread::sleep_for(std::chrono::milliseconds(ms));
        r.Reply();
      });
    });
    server_->Handle(kSlowBigOp, [this](const Incoming& in, Responder r) {
      uint32_t arg[2] = {0, 0};
      std::memcpy(arg, in.payload.data(), std::min<size_t>(sizeof(arg), in.payload.size()));
      slow_threads_.emplace_back([r = std::move(r), ms = arg[0], n = arg[1]]() mutable {
        std::this_thread::sleep_for(std::chrono::milliseconds(ms));
        r.Reply(proto::Bytes(n, 0x5a));
      });
    });
    server_->Handle(kNotifyOp,
                    [this](const Incoming& in, Responder) { notified_.fetch_add(in.payload.size()); });
    ASSERT_TRUE(server_->Listen({"127.0.0.1", 0}).ok());
    ASSERT_TRUE(server_->Start().ok());
    client_ = Make("client");
    ASSERT_TRUE(client_->Start().ok());
    auto ch = client_->Connect(server_->listen_address(), 5s);
    ASSERT_TRUE(ch.ok()) << ch.status().ToString();
    ch_ = ch.value();
  }
  void TearDown() override {
    client_->Shutdown();
    for (auto& t : slow_threads_) t.join();
    server_->Shutdown();
  }
  double ServerCounter(const std::string& name) {
    auto ch = client_->Connect(server_->listen_address(), 5s);
    auto r = ch.value()->Call(proto::kGetStats, {}, 5s);
    EXPECT_TRUE(r.ok());
    for (auto& e : proto::DecodeStats(r.value()).value()) {
      if (e.name == name) return e.value;
    }
    return -1;
  }
  void ExpectServerAlive() {
    auto r = ch_->Call(proto::kPing, {}, 5s);
    EXPECT_TRUE(r.ok()) << r.status().ToString();
  }

  std::unique_ptr<Messenger> server_, client_;
  std::shared_ptr<Channel> ch_;
  std::vector<std::thread> slow_threads_;
  std::atomic<size_t> notified_{0};
};

TEST_F(MessengerTest, EchoRoundTripsPayloadOfEverySize) {
  for (size_t n : {0ul, 1ul, 64ul, 4096ul, 60000ul}) {
    proto::Bytes p(n);
    for (size_t i = 0; i < n; ++i) p[i] = static_cast<uint8_t>(i * 7);
    auto r = ch_->Call(proto::kEcho, p, 5s);
    ASSERT_TRUE(r.ok()) << n << ": " << r.status().ToString();
    EXPECT_EQ(r.value(), p) << n;
  }
}

TEST_F(MessengerTest, LargeReplyTakesRendezvousPath) {
  proto::EchoSizedReq req{60000, 0};
  auto r = ch_->Call(proto::kEchoSized, proto::EncodeFixed(req), 5s);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->size(), 60000u);
  // The client accepts up to 8 MiB: a 2 MiB request to a client-side echo works.
  auto c2 = Make("c2");
  ASSERT_TRUE(c2->Listen({"127.0.0.1", 0}).ok());
  ASSERT_TRUE(c2->Start().ok());
  auto ch = client_->Connect(c2->listen_address(), 5s);
  ASSERT_TRUE(ch.ok());
  proto::Bytes big(2 << 20, 0xab);
  auto r2 = ch.value()->Call(proto::kEcho, big, 10s);
  ASSERT_TRUE(r2.ok()) << r2.status().ToString();
  EXPECT_EQ(r2.value(), big);
  c2->Shutdown();
}

// CallAsync with a buffer for the reply: the reply lands in that buffer (same storage, so no allocation),
// for a small reply and for a rendezvous-sized one, and is the same as without a buffer.
TEST_F(MessengerTest, ReplyLandsInTheBufferTheCallerGave) {
  proto::Bytes small(64, 7);
  proto::Bytes buf(100000, 0x11);
  const uint8_t* storage = buf.data();
  auto r = ch_->CallAsync(proto::kEcho, proto::Bytes(small), 5s, std::move(buf))->Wait();
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(*r, small);
  EXPECT_EQ(r->data(), storage);
  proto::EchoSizedReq req{60000, 0};
  auto big = ch_->CallAsync(proto::kEchoSized, proto::EncodeFixed(req), 5s, std::move(*r))->Wait();
  ASSERT_TRUE(big.ok()) << big.status().ToString();
  EXPECT_EQ(*big, proto::Bytes(60000, 0x5a));
  EXPECT_EQ(big->data(), storage);
  // A buffer smaller than the reply grows to fit it.
  auto grown = ch_->CallAsync(proto::kEchoSized, proto::EncodeFixed(req), 5s, proto::Bytes(10, 1))->Wait();
  ASSERT_TRUE(grown.ok()) << grown.status().ToString();
  EXPECT_EQ(*grown, proto::Bytes(60000, 0x5a));
}

// Channel::CallView and Receive::kInPlace: a reply that arrived whole in a UCX receive buffer (larger than an
// inline message, smaller than a rendezvous) is read there, not copied; every size gives the right bytes,
// views may be kept across later calls, and every buffer goes back to UCX: when its view is destroyed, when a
// caller reads the call with Wait() instead, or when a finished call nobody read is dropped.
TEST_F(MessengerTest, RepliesAreReadInPlaceAndTheirBuffersGoBack) {
  auto pattern = [](size_t n, uint8_t salt) {
    proto::Bytes p(n);
    for (size_t i = 0; i < n; ++i) p[i] = static_cast<uint8_t>(i * 7 + salt);
    return p;
  };
  bool any_in_place = false;
  for (size_t n : {0ul, 64ul, 1500ul, 4096ul, 8000ul, 60000ul}) {
    auto p = pattern(n, 1);
    auto v = ch_->CallView(proto::kEcho, p, 5s);
    ASSERT_TRUE(v.ok()) << n << ": " << v.status().ToString();
    EXPECT_TRUE(std::ranges::equal(v->bytes(), p)) << n;
    if (n <= 1024) EXPECT_FALSE(MessengerTestPeer::InPlace(*v)) << n;  // inline: always a copy
    any_in_place |= MessengerTestPeer::InPlace(*v);
  }
  // Over shared memory (the default here) a 1500-60000 byte eager reply lands in a buffer UCX can lend.
  if (getenv("UCX_TLS") == nullptr) EXPECT_TRUE(any_in_place) << "no reply size was read in place";
  EXPECT_EQ(MessengerTestPeer::HeldReplies(*client_), 0u);

  // 16 views alive at once, then more calls: each still shows its own reply.
  std::vector<ReplyView> views;
  for (uint8_t k = 0; k < 16; ++k) {
    auto v = ch_->CallAsync(proto::kEcho, pattern(4096, k), 5s, proto::Bytes(), Channel::Receive::kInPlace)
                 ->WaitView();
    ASSERT_TRUE(v.ok()) << v.status().ToString();
    views.push_back(std::move(*v));
  }
  for (int i = 0; i < 50; ++i) ASSERT_TRUE(ch_->Call(proto::kEcho, pattern(4096, 99), 5s).ok());
  for (uint8_t k = 0; k < 16; ++k)
    EXPECT_TRUE(std::ranges::equal(views[k].bytes(), pattern(4096, k))) << int(k);
  (void)views[0].TakeBuffer();  // gives its UCX buffer back, if it had one
  EXPECT_TRUE(views[0].bytes().empty());
  views.clear();
  EXPECT_EQ(MessengerTestPeer::HeldReplies(*client_), 0u);

  // Started in place, read by copy; and finished but never read.
  auto copied =
      ch_->CallAsync(proto::kEcho, pattern(4096, 5), 5s, proto::Bytes(), Channel::Receive::kInPlace)->Wait();
  ASSERT_TRUE(copied.ok()) << copied.status().ToString();
  EXPECT_EQ(*copied, pattern(4096, 5));
  {
    auto unread =
        ch_->CallAsync(proto::kEcho, pattern(4096, 6), 5s, proto::Bytes(), Channel::Receive::kInPlace);
    while (!unread->done()) std::this_thread::sleep_for(1ms);
  }
  EXPECT_EQ(MessengerTestPeer::HeldReplies(*client_), 0u);
  // Dropped before their replies come: each call's last reference then goes inside UCX's callback, before
  // UCX has taken the buffer's ownership back, so it is given back after the callback (ReleaseHeld defers).
  for (uint8_t k = 0; k < 20; ++k)
    (void)ch_->CallAsync(proto::kEcho, pattern(4096, k), 5s, proto::Bytes(), Channel::Receive::kInPlace);
  EXPECT_TRUE(test::WaitFor([&] { return MessengerTestPeer::PendingCalls(*client_) == 0; }, 5s));
  EXPECT_EQ(MessengerTestPeer::HeldReplies(*client_), 0u);
  // An error reply, and an abandoned call, read in place.
  auto bad = ch_->CallAsync(0x7ffe, proto::Bytes(4096, 1), 5s, proto::Bytes(), Channel::Receive::kInPlace)
                 ->WaitView();
  EXPECT_EQ(bad.status().code(), StatusCode::kUnknownOpcode);
  auto gone = ch_->CallAsync(proto::kEcho, pattern(4096, 3), 5s, proto::Bytes(), Channel::Receive::kInPlace);
  gone->Abandon();
  EXPECT_FALSE(gone->WaitView().ok());
  gone.reset();
  EXPECT_TRUE(test::WaitFor([&] { return MessengerTestPeer::PendingCalls(*client_) == 0; }, 5s));
  EXPECT_EQ(MessengerTestPeer::HeldReplies(*client_), 0u);
  ExpectServerAlive();
}

// A rendezvous-sized request offers its buffer to the handler (Incoming::owned): taken, it keeps the
// payload's bytes where they are, so a handler can queue work on them without a copy. A small one does not.
TEST_F(MessengerTest, HandlerMayTakeALargeRequestsBuffer) {
  constexpr uint16_t kTake = 0x7e01;
  auto srv = Make("take");
  std::vector<std::pair<bool, bool>> seen;  // (owned offered, payload intact after the move)
  std::mutex mu;
  srv->Handle(kTake, [&](const Incoming& in, Responder r) {
    bool offered = in.owned != nullptr, intact = false;
    if (offered) {
      const uint8_t* where = in.payload.data();
      const size_t len = in.payload.size();
      proto::Bytes kept = std::move(*in.owned);
      intact = kept.data() == where && kept.size() == len &&
               std::all_of(kept.begin(), kept.end(), [](uint8_t b) { return b == 0x5a; });
    }
    {
      std::lock_guard lk(mu);
      seen.emplace_back(offered, intact);
    }
    r.Reply();
  });
  auto ch = ServeAndConnect(*srv);
  ASSERT_TRUE(ch.ok()) << ch.status().ToString();
  ASSERT_TRUE(ch.value()->Call(kTake, proto::Bytes(64, 0x5a), 5s).ok());
  ASSERT_TRUE(ch.value()->Call(kTake, proto::Bytes(1 << 20, 0x5a), 5s).ok());
  srv->Shutdown();
  ASSERT_EQ(seen.size(), 2u);
  EXPECT_FALSE(seen[0].first);  // 64 B arrives inline: nothing to take
  EXPECT_TRUE(seen[1].first);
  EXPECT_TRUE(seen[1].second);
}

TEST_F(MessengerTest, ManyOutstandingCallsFromManyThreads) {
  constexpr int kThreads = 4, kPerThread = 64, kRounds = 5;
  std::atomic<int> ok{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int round = 0; round < kRounds; ++round) {
        std::vector<std::pair<std::shared_ptr<PendingCall>, proto::Bytes>> calls;
        for (int i = 0; i < kPerThread; ++i) {
          proto::Bytes p(16 + i, static_cast<uint8_t>(t * 31 + i));
          calls.emplace_back(ch_->CallAsync(proto::kEcho, p, 10s), p);
        }
        for (auto& [c, p] : calls) {
          auto r = c->Wait();
          if (r.ok() && r.value() == p) ok++;
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(ok.load(), kThreads * kPerThread * kRounds);
}

TEST_F(MessengerTest, CallTimesOutWithTypedErrorAndLateReplyIsDropped) {
  uint32_t delay_ms = 600;
  auto t0 = std::chrono::steady_clock::now();
  auto r = ch_->Call(kSlowOp, std::span(reinterpret_cast<uint8_t*>(&delay_ms), 4), 150ms);
  auto took = std::chrono::steady_clock::now() - t0;
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kTimeout) << r.status().ToString();
  EXPECT_GE(took, 140ms);
  EXPECT_LT(took, 500ms);
  std::this_thread::sleep_for(700ms);  // the late reply arrives and must be ignored
  ExpectServerAlive();
  uint32_t fast = 1;
  auto r2 = ch_->Call(kSlowOp, std::span(reinterpret_cast<uint8_t*>(&fast), 4), 2s);
  EXPECT_TRUE(r2.ok()) << r2.status().ToString();
}

TEST_F(MessengerTest, CallNobodyWaitsForStillTimesOutAndLeavesNoPendingEntry) {
  uint32_t delay_ms = 2500;  // the reply comes long after the deadline (TearDown joins the server thread)
  auto call = ch_->CallAsync(kSlowOp, std::span(reinterpret_cast<uint8_t*>(&delay_ms), 4), 100ms);
  EXPECT_EQ(MessengerTestPeer::PendingCalls(*client_), 1u);
  // Nobody calls Wait(): the progress thread's sweep fails it at its deadline (within about a second).
  for (int i = 0; i < 200 && !call->done(); ++i) std::this_thread::sleep_for(10ms);
  ASSERT_TRUE(call->done());
  EXPECT_EQ(MessengerTestPeer::PendingCalls(*client_), 0u);
  EXPECT_EQ(call->Wait().status().code(), StatusCode::kTimeout);
  ExpectServerAlive();
}

TEST_F(MessengerTest, AbandonedCallLeavesAtOnceAndItsLateReplyIsDropped) {
  // A large reply (rendezvous: dropped without being transferred) and a small one (eager: dropped unread).
  for (uint32_t n : {60000u, 16u}) {
    uint32_t arg[2] = {300, n};
    auto call = ch_->CallAsync(kSlowBigOp, std::span(reinterpret_cast<uint8_t*>(arg), sizeof(arg)), 5s);
    EXPECT_FALSE(call->done());
    auto t0 = std::chrono::steady_clock::now();
    call->Abandon();
    EXPECT_LT(std::chrono::steady_clock::now() - t0, 50ms);  // no waiting for the reply
    EXPECT_TRUE(call->done());
    EXPECT_EQ(MessengerTestPeer::PendingCalls(*client_), 0u);
    EXPECT_EQ(call->Wait().status().code(), StatusCode::kInternal);
    call->Abandon();                     // twice is harmless
    std::this_thread::sleep_for(500ms);  // the late reply arrives and is dropped
    // The connection still works, and a reply of the same size still reaches a caller who waits.
    arg[0] = 1;
    auto r = ch_->Call(kSlowBigOp, std::span(reinterpret_cast<uint8_t*>(arg), sizeof(arg)), 5s);
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    EXPECT_EQ(r->size(), n);
  }
  // Abandoning a finished call changes nothing.
  auto done = ch_->CallAsync(proto::kPing, {}, 5s);
  ASSERT_TRUE(done->Wait().ok());
  done->Abandon();
  EXPECT_TRUE(done->Wait().ok());
}

TEST_F(MessengerTest, OneWayMessageIsDelivered) {
  ASSERT_TRUE(ch_->Send(kNotifyOp, proto::Bytes(10, 1)).ok());
  ASSERT_TRUE(ch_->Send(kNotifyOp, proto::Bytes(5, 1)).ok());
  EXPECT_TRUE(test::WaitFor([&] { return notified_.load() == 15; }, 5s));
}

// Requests and one-way messages on one connection reach their handlers in the order they were sent, even
// when a large one (a rendezvous transfer: its data comes after its header) is followed by small ones that
// UCX delivers at once. Without that, a small free_range could overtake a large write_pages sent before it.
TEST_F(MessengerTest, MessagesOnAConnectionAreHandledInTheOrderSent) {
  constexpr uint16_t kOrdered = 0x7e02;
  // Room for all 100 MiB of large messages below (sent at once) to wait: this test is about order, not about
  // the bound (MessagesHeldForOrderAreBounded, LargeMessagesHeldForOrderAreBoundedToo).
  auto srv = Make("ordered", 4 << 20, /*max_held_bytes=*/256u << 20);
  std::mutex mu;
  std::vector<uint32_t> seen;
  auto record = [&](const Incoming& in) {
    uint32_t seq = ~0u;
    if (in.payload.size() >= 4) std::memcpy(&seq, in.payload.data(), 4);
    std::lock_guard lk(mu);
    seen.push_back(seq);
  };
  srv->Handle(kOrdered, [&](const Incoming& in, Responder r) {
    record(in);
    if (!in.one_way) r.Reply();
  });
  auto ch = ServeAndConnect(*srv);
  ASSERT_TRUE(ch.ok()) << ch.status().ToString();
  constexpr uint32_t kMessages = 300;
  std::vector<std::shared_ptr<PendingCall>> calls;
  for (uint32_t i = 0; i < kMessages; ++i) {
    // Every third message is large (1 MiB: rendezvous); every fifth is one-way.
    proto::Bytes p(i % 3 == 0 ? (1u << 20) : 64u, 0x5a);
    std::memcpy(p.data(), &i, 4);
    if (i % 5 == 0)
      ASSERT_TRUE(ch.value()->Send(kOrdered, p).ok());
    else
      calls.push_back(ch.value()->CallAsync(kOrdered, std::move(p), 10s));
  }
  for (auto& c : calls) ASSERT_TRUE(c->Wait().ok());
  ASSERT_TRUE(test::WaitFor(
      [&] {
        std::lock_guard lk(mu);
        return seen.size() == kMessages;
      },
      10s));
  srv->Shutdown();
  std::vector<uint32_t> want(kMessages);
  for (uint32_t i = 0; i < kMessages; ++i) want[i] = i;
  EXPECT_EQ(seen, want);
}

// A burst of kBurstOp requests numbered 0..n-1 (the first 4 bytes of each payload), sent at once to a fresh
// server whose max_held_bytes is `max_held`: how many were refused (each must be kBusy), the sequence numbers
// the server handled in the order it handled them, and its lego_msg_refused_order_full_total.
struct Burst {
  size_t refused = 0;
  std::vector<uint32_t> seen;
  double counted = -1;
};
Burst SendBurst(Messenger& client, const std::string& name, size_t max_held,
                std::vector<proto::Bytes> payloads) {
  constexpr uint16_t kBurstOp = 0x7e05;
  Burst out;
  auto srv = Make(name, 4 << 20, max_held);
  std::mutex mu;
  srv->Handle(kBurstOp, [&](const Incoming& in, Responder r) {
    uint32_t seq = ~0u;
    if (in.payload.size() >= 4) std::memcpy(&seq, in.payload.data(), 4);
    {
      std::lock_guard lk(mu);
      out.seen.push_back(seq);
    }
    r.Reply();
  });
  EXPECT_TRUE(srv->Listen({"127.0.0.1", 0}).ok());
  EXPECT_TRUE(srv->Start().ok());
  auto ch = client.Connect(srv->listen_address(), 5s);
  EXPECT_TRUE(ch.ok()) << ch.status().ToString();
  if (!ch.ok()) return out;
  for (uint32_t i = 0; i < payloads.size(); ++i) std::memcpy(payloads[i].data(), &i, 4);
  std::vector<std::shared_ptr<PendingCall>>
      calls;  // payloads made first: the sends follow each other closely
  for (auto& p : payloads) calls.push_back(ch.value()->CallAsync(kBurstOp, std::move(p), 20s));
  for (auto& c : calls) {
    auto r = c->Wait();
    if (r.ok()) continue;
    EXPECT_EQ(r.status().code(), StatusCode::kBusy) << r.status().ToString();
    ++out.refused;
  }
  auto stats = ch.value()->Call(proto::kGetStats, {}, 5s);
  EXPECT_TRUE(stats.ok());
  if (stats.ok())
    for (auto& e : proto::DecodeStats(stats.value()).value())
      if (e.name == "lego_msg_refused_order_full_total") out.counted = e.value;
  srv->Shutdown();
  return out;
}

// What waits behind a large message is bounded: past max_held_bytes a request is refused with kBusy (and
// counted), never handled out of order; what is handled stays in the order sent.
TEST_F(MessengerTest, MessagesHeldForOrderAreBounded) {
  std::vector<proto::Bytes> payloads;
  for (uint32_t i = 0; i < 300; ++i) payloads.emplace_back(i % 10 == 0 ? (2u << 20) : 64u, 0x5a);  // 1 + 9
  Burst b = SendBurst(*client_, "bounded", /*max_held=*/256, std::move(payloads));
  EXPECT_EQ(b.seen.size() + b.refused, 300u);
  EXPECT_TRUE(std::is_sorted(b.seen.begin(), b.seen.end()));
  EXPECT_EQ(b.counted, static_cast<double>(b.refused));
  EXPECT_GT(b.refused, 0u);  // the 2 MiB message at a queue's head already exceeds the 256 bytes
}

// Large messages queued behind a large one still arriving count against the bound too: each gets a buffer of
// its full size when its header arrives, so a peer that stalls transfers must not make the receiver allocate
// without end. With room for one 2 MiB message behind another, most of a burst of them are refused, the first
// of the queue always gets through, and the rest are handled in order.
TEST_F(MessengerTest, LargeMessagesHeldForOrderAreBoundedToo) {
  Burst b = SendBurst(*client_, "bounded-large", /*max_held=*/5u << 20,
                      std::vector<proto::Bytes>(60, proto::Bytes(2u << 20, 0x5a)));
  EXPECT_EQ(b.seen.size() + b.refused, 60u);
  EXPECT_TRUE(std::is_sorted(b.seen.begin(), b.seen.end()));
  ASSERT_FALSE(b.seen.empty());
  EXPECT_EQ(b.seen.front(), 0u);  // the first message of a queue is always taken
  EXPECT_EQ(b.counted, static_cast<double>(b.refused));
  EXPECT_GT(b.refused, 0u);  // 60 x 2 MiB sent at once: never more than 2 waiting at a time
}

// A request whose handler was registered with Order::kMayOvertake (p2m.read_pages) is not held behind a
// large one still arriving: over many pairs sent back to back, some small ones are handled first.
TEST_F(MessengerTest, ARequestThatMayOvertakeIsNotHeldBehindALargeOne) {
  constexpr uint16_t kWrite = 0x7e03, kRead = 0x7e04;
  auto srv = Make("overtake", 4 << 20);
  std::mutex mu;
  std::vector<uint16_t> seen;
  auto record = [&](uint16_t op) {
    std::lock_guard lk(mu);
    seen.push_back(op);
  };
  srv->Handle(kWrite, [&](const Incoming&, Responder r) {
    record(kWrite);
    r.Reply();
  });
  srv->Handle(
      kRead,
      [&](const Incoming&, Responder r) {
        record(kRead);
        r.Reply();
      },
      Messenger::Order::kMayOvertake);
  auto ch = ServeAndConnect(*srv);
  ASSERT_TRUE(ch.ok()) << ch.status().ToString();
  constexpr int kPairs = 100;
  int overtaken = 0;
  for (int i = 0; i < kPairs; ++i) {
    {
      std::lock_guard lk(mu);
      seen.clear();
    }
    auto w = ch.value()->CallAsync(kWrite, proto::Bytes(1u << 20, 0x5a), 10s);
    auto r = ch.value()->CallAsync(kRead, proto::Bytes(64, 1), 10s);
    ASSERT_TRUE(w->Wait().ok());
    ASSERT_TRUE(r->Wait().ok());
    std::lock_guard lk(mu);
    ASSERT_EQ(seen.size(), 2u);
    if (seen[0] == kRead) ++overtaken;
  }
  srv->Shutdown();
  EXPECT_GT(overtaken, 0) << "no read overtook a write in " << kPairs << " pairs";
}

TEST_F(MessengerTest, UnknownOpcodeGetsTypedError) {
  auto r = ch_->Call(0x7777, {}, 5s);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kUnknownOpcode);
}

TEST_F(MessengerTest, OversizedRequestIsRefusedBySenderAndReceiver) {
  // The client's own limit (8 MiB) refuses before sending.
  proto::Bytes huge(proto::kDefaultMaxPayload + 1);
  auto r = ch_->Call(proto::kEcho, huge, 5s);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
  // The server's limit (64 KiB) rejects what the client was willing to send.
  proto::Bytes big(256 * 1024, 3);
  r = ch_->Call(proto::kEcho, big, 5s);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kBadMessage) << r.status().ToString();
  ExpectServerAlive();
  EXPECT_GE(ServerCounter("lego_msg_bad_messages_total"), 1);
}

TEST_F(MessengerTest, MalformedMessagesAreRejectedAndServerKeepsServing) {
  proto::Bytes payload(32, 9);
  // Truncated: the header claims more payload than arrived.
  auto hdr = MessengerTestPeer::RequestHeader(proto::kEcho, 64);
  auto r = MessengerTestPeer::CallRaw(*client_, *ch_, hdr, sizeof(hdr), payload, 5s)->Wait();
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kBadMessage) << r.status().ToString();
  // Unknown message kind.
  hdr = MessengerTestPeer::RequestHeader(proto::kEcho, payload.size());
  hdr.kind = 77;
  auto c = MessengerTestPeer::CallRaw(*client_, *ch_, hdr, sizeof(hdr), payload, 300ms);
  EXPECT_EQ(c->Wait().status().code(), StatusCode::kTimeout);  // not a request: dropped, logged
  // Bad magic and a short header: not Lego messages at all; dropped and counted.
  hdr = MessengerTestPeer::RequestHeader(proto::kEcho, payload.size());
  hdr.magic = 0xdeadbeef;
  c = MessengerTestPeer::CallRaw(*client_, *ch_, hdr, sizeof(hdr), payload, 300ms);
  EXPECT_EQ(c->Wait().status().code(), StatusCode::kTimeout);
  hdr = MessengerTestPeer::RequestHeader(proto::kEcho, payload.size());
  c = MessengerTestPeer::CallRaw(*client_, *ch_, hdr, 10, payload, 300ms);
  EXPECT_EQ(c->Wait().status().code(), StatusCode::kTimeout);
  // A valid opcode with a garbage payload: the handler's decoder rejects it.
  hdr = MessengerTestPeer::RequestHeader(proto::kEchoSized, 3);
  r = MessengerTestPeer::CallRaw(*client_, *ch_, hdr, sizeof(hdr), std::span(payload.data(), 3), 5s)->Wait();
  EXPECT_EQ(r.status().code(), StatusCode::kBadMessage);
  ExpectServerAlive();
  EXPECT_GE(ServerCounter("lego_msg_bad_messages_total"), 4);
}

TEST_F(MessengerTest, RequestsTravelByRouteAndAnUnknownRouteIsDropped) {
  // The hello gave the client's connection a route, which its requests carry instead of UCX's reply flag.
  const uint32_t route = MessengerTestPeer::Route(*client_, ch_->conn_id());
  ASSERT_NE(route, 0u);
  EXPECT_EQ(MessengerTestPeer::RoutesGiven(*server_), 1u);
  proto::Bytes payload(16, 7);
  auto hdr = MessengerTestPeer::RequestHeader(proto::kEcho, payload.size());
  hdr.status = static_cast<int32_t>(route);  // a raw send with a route goes without the reply flag
  auto r = MessengerTestPeer::CallRaw(*client_, *ch_, hdr, sizeof(hdr), payload, 5s)->Wait();
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(*r, payload);
  // A route the server never gave: it cannot know where to answer, so it drops the request and counts it.
  const double bad_before = ServerCounter("lego_msg_bad_messages_total");
  hdr.status = static_cast<int32_t>(route ^ 0x5a5a5a5a);
  auto c = MessengerTestPeer::CallRaw(*client_, *ch_, hdr, sizeof(hdr), payload, 300ms);
  EXPECT_EQ(c->Wait().status().code(), StatusCode::kTimeout);
  EXPECT_EQ(ServerCounter("lego_msg_bad_messages_total"), bad_before + 1);
  ExpectServerAlive();
  // A new connection gets a new route.
  ch_->Reset();
  ASSERT_TRUE(ch_->Call(proto::kPing, {}, 5s).ok());
  const uint32_t route2 = MessengerTestPeer::Route(*client_, ch_->conn_id());
  EXPECT_NE(route2, 0u);
  EXPECT_NE(route2, route);
}

TEST_F(MessengerTest, ResetChannelLeavesNoConnectionOnTheServer) {
  // On loopback UCX runs without peer error handling, so only a real disconnect tells the server that a
  // client closed: a channel reset (after a timeout, say) must not leave its connection and route there.
  ASSERT_TRUE(ch_->Call(proto::kPing, {}, 5s).ok());
  const size_t before = server_->connection_count();
  for (int i = 0; i < 20; ++i) {
    ch_->Reset();
    ASSERT_TRUE(ch_->Call(proto::kPing, {}, 5s).ok());
  }
  // The close is not waited for: give the server a moment to see the last one.
  for (int i = 0; i < 500 && server_->connection_count() > before; ++i) std::this_thread::sleep_for(10ms);
  EXPECT_EQ(server_->connection_count(), before);
  EXPECT_EQ(MessengerTestPeer::RoutesGiven(*server_), before);
  EXPECT_EQ(ServerCounter("lego_msg_connections"), static_cast<double>(before + 1));  // + ServerCounter's own
  ExpectServerAlive();
}

TEST_F(MessengerTest, WrongProtocolVersionIsRejected) {
  // In the header of any message.
  auto hdr = MessengerTestPeer::RequestHeader(proto::kPing, 0);
  hdr.version = proto::kProtocolVersion + 1;
  auto r = MessengerTestPeer::CallRaw(*client_, *ch_, hdr, sizeof(hdr), {}, 5s)->Wait();
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kVersionMismatch) << r.status().ToString();
  // In the hello handshake.
  proto::HelloMsg hello{static_cast<uint8_t>(proto::kProtocolVersion + 1), 0, 0, 1, 0, 0};
  r = ch_->Call(proto::kHello, proto::EncodeFixed(hello), 5s);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kVersionMismatch);
  ExpectServerAlive();
}

TEST_F(MessengerTest, HandlerThatForgetsToReplyAnswersInternalNotTimeout) {
  server_.reset();  // rebuild the server with a forgetful handler
  server_ = Make("server2");
  server_->Handle(0x7f03, [](const Incoming&, Responder) {});
  ASSERT_TRUE(server_->Listen({"127.0.0.1", 0}).ok());
  ASSERT_TRUE(server_->Start().ok());
  auto ch = client_->Connect(server_->listen_address(), 5s);
  ASSERT_TRUE(ch.ok());
  auto r = ch.value()->Call(0x7f03, {}, 5s);
  EXPECT_EQ(r.status().code(), StatusCode::kInternal);
}

TEST(MessengerTrust, PeerCannotCompleteACallPendingOnAnotherConnection) {
  // Replies are matched by request id alone (protocol.md). A peer that learns the id of a call made to it
  // and forges replies to the ids around it must not complete a call the client has pending elsewhere.
  constexpr uint16_t kSpyOp = 0x7f04;
  auto a = Make("a"), b = Make("b"), c = Make("c");
  std::atomic<uint64_t> seen_id{0}, seen_conn{0};
  a->Handle(kSpyOp, [&](const Incoming& in, Responder r) {
    seen_id = in.request_id;
    seen_conn = in.conn_id;
    r.Reply();
  });
  std::vector<std::thread> slow;
  b->Handle(kSlowOp, [&](const Incoming&, Responder r) {
    slow.emplace_back([r = std::move(r)]() mutable {
      std::this_thread::sleep_for(300ms);
      r.Reply();
    });
  });
  for (auto* m : {a.get(), b.get()}) {
    ASSERT_TRUE(m->Listen({"127.0.0.1", 0}).ok());
    ASSERT_TRUE(m->Start().ok());
  }
  ASSERT_TRUE(c->Start().ok());
  auto cha = c->Connect(a->listen_address(), 5s), chb = c->Connect(b->listen_address(), 5s);
  ASSERT_TRUE(cha.ok() && chb.ok());
  ASSERT_TRUE(cha.value()->Call(kSpyOp, {}, 5s).ok());
  const uint64_t id = seen_id.load();
  ASSERT_NE(id, 0u);
  auto victim = chb.value()->CallAsync(kSlowOp, {}, 5s);
  const std::string forged = "forged";
  const auto bytes = std::span(reinterpret_cast<const uint8_t*>(forged.data()), forged.size());
  for (uint64_t k = 1; k <= 8; ++k) {
    for (uint64_t guess : {id + k, (id & uint64_t{0xFFFFFFFF}) + k}) {
      EXPECT_TRUE(MessengerTestPeer::SendReply(*a, seen_conn.load(), kSlowOp, guess, bytes).ok());
    }
  }
  std::this_thread::sleep_for(100ms);
  EXPECT_FALSE(victim->done()) << "a forged reply completed a call pending on another connection";
  auto r = victim->Wait();
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_TRUE(r->empty());  // b's real reply, not the forged payload
  c->Shutdown();
  for (auto& t : slow) t.join();
  a->Shutdown();
  b->Shutdown();
}

TEST(MessengerConnect, UnreachablePeerFailsFastWithTypedError) {
  auto m = Make("c");
  ASSERT_TRUE(m->Start().ok());
  auto t0 = std::chrono::steady_clock::now();
  auto ch = m->Connect({"127.0.0.1", test::FreePort()}, 3s);
  ASSERT_FALSE(ch.ok());
  EXPECT_TRUE(ch.status().code() == StatusCode::kPeerUnreachable ||
              ch.status().code() == StatusCode::kTimeout)
      << ch.status().ToString();
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 3500ms);
}

// Peer failure and reconnect against a real daemon process (lego-gm serves the built-in opcodes).
TEST(MessengerPeerFailure, KilledPeerFailsPendingCallsAndChannelReconnectsAfterRestart) {
  test::TempDir dir;
  uint16_t port = test::FreePort();
  auto listen = fmt::format("127.0.0.1:{}", port);
  auto gm = std::make_unique<test::Daemon>(
      test::StartDaemon("gm", dir.path(), "gm", {"--listen", listen, "--metrics", "off"}));
  auto m = Make("c");
  ASSERT_TRUE(m->Start().ok());
  auto ch = m->Connect(gm->addr, 5s);
  ASSERT_TRUE(ch.ok()) << ch.status().ToString();
  ASSERT_TRUE(ch.value()->Call(proto::kPing, {}, 5s).ok());

  // A call in flight when the peer dies fails with kPeerUnreachable well before its 20 s timeout.
  gm->proc.Stop();
  auto pending = ch.value()->CallAsync(proto::kPing, {}, 20s);
  std::this_thread::sleep_for(100ms);
  auto t0 = std::chrono::steady_clock::now();
  gm->proc.Kill9();
  auto r = pending->Wait();
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kPeerUnreachable) << r.status().ToString();
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 10s);

  // While it is down, calls fail fast.
  auto down = ch.value()->Call(proto::kPing, {}, 2s);
  EXPECT_FALSE(down.ok());

  // Restart on the same port: the same channel reconnects on its next call.
  gm = std::make_unique<test::Daemon>(
      test::StartDaemon("gm", dir.path(), "gm", {"--listen", listen, "--metrics", "off"}));
  bool reconnected = test::WaitFor([&] { return ch.value()->Call(proto::kPing, {}, 2s).ok(); }, 15s);
  EXPECT_TRUE(reconnected);
  m->Shutdown();
}

TEST(MessengerPeerFailure, StoppedPeerGivesTimeoutNotHang) {
  test::TempDir dir;
  auto gm = test::StartDaemon("gm", dir.path(), "gm", {"--metrics", "off"});
  auto m = Make("c");
  ASSERT_TRUE(m->Start().ok());
  auto ch = m->Connect(gm.addr, 5s);
  ASSERT_TRUE(ch.ok());
  gm.proc.Stop();
  auto t0 = std::chrono::steady_clock::now();
  auto r = ch.value()->Call(proto::kPing, {}, 300ms);
  EXPECT_EQ(r.status().code(), StatusCode::kTimeout) << r.status().ToString();
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 2s);
  gm.proc.Signal(SIGCONT);
  EXPECT_TRUE(ch.value()->Call(proto::kPing, {}, 5s).ok());
  m->Shutdown();
}

}  // namespace
}  // namespace lego::msg

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  lego::InitLogging("test", "warn");
  return RUN_ALL_TESTS();
}
