// Tests for every message codec in protocol/any.h and protocol/membership.h: round trips, golden bytes,
// and rejection of truncated, trailing, oversized and lying input (always kBadMessage, never a crash or a
// large allocation).
#include <atomic>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <functional>
#include <limits>
#include <new>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "protocol/any.h"
#include "protocol/membership.h"

#if defined(__GNUC__) && !defined(__clang__)
// gcc sees free() on a pointer from operator new once the replacements below are inlined; they match.
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
#endif

// ---- Allocation tracking: the test binary replaces global operator new to record the largest single
// allocation made while a ScopedAllocTracker is alive. ----
namespace {
std::atomic<bool> g_tracking{false};
std::atomic<size_t> g_largest_alloc{0};
}  // namespace

void* operator new(size_t n) {
  if (g_tracking.load(std::memory_order_relaxed)) {
    size_t prev = g_largest_alloc.load(std::memory_order_relaxed);
    while (n > prev && !g_largest_alloc.compare_exchange_weak(prev, n)) {
    }
  }
  void* p = std::malloc(n ? n : 1);
  if (!p) throw std::bad_alloc();
  return p;
}
void operator delete(void* p) noexcept { std::free(p); }
void operator delete(void* p, size_t) noexcept { std::free(p); }

namespace lego::proto {
namespace {

class ScopedAllocTracker {
 public:
  ScopedAllocTracker() {
    g_largest_alloc.store(0);
    g_tracking.store(true);
  }
  ~ScopedAllocTracker() { g_tracking.store(false); }
  size_t largest() const { return g_largest_alloc.load(); }
};

// Error messages and a few small vectors are fine; anything sized by an untrusted count is not.
constexpr size_t kSmallAlloc = 4096;

using Decoder = std::function<Status(std::span<const uint8_t>)>;

Decoder StatsDecoder() {
  return [](std::span<const uint8_t> b) { return DecodeStats(b).status(); };
}
Decoder RegisterDecoder() {
  return [](std::span<const uint8_t> b) { return DecodeRegisterReq(b).status(); };
}
Decoder MembersDecoder() {
  return [](std::span<const uint8_t> b) { return DecodeMemberList(b).status(); };
}
template <typename T>
Decoder FixedDecoder() {
  return [](std::span<const uint8_t> b) { return DecodeFixed<T>(b, "fixed").status(); };
}

// Every proper prefix of a valid encoding is rejected with kBadMessage, and so is any trailing byte.
void ExpectEveryTruncationAndTrailerRejected(const Bytes& valid, const Decoder& decode, const char* what) {
  ASSERT_TRUE(decode(valid).ok()) << what << ": the untruncated message must decode";
  for (size_t n = 0; n < valid.size(); ++n) {
    Status st = decode(std::span(valid.data(), n));
    EXPECT_EQ(st.code(), StatusCode::kBadMessage)
        << what << ": prefix of " << n << "/" << valid.size() << " bytes gave " << st.ToString();
  }
  for (size_t extra : {1, 2, 7, 64}) {
    Bytes longer = valid;
    longer.resize(valid.size() + extra, 0xAB);
    Status st = decode(longer);
    EXPECT_EQ(st.code(), StatusCode::kBadMessage)
        << what << ": " << extra << " trailing bytes gave " << st.ToString();
  }
}

uint64_t Bits(double d) { return std::bit_cast<uint64_t>(d); }

// ---- Sample messages ----

std::vector<StatsEntry> SampleStats() {
  return {{"lego_gm_members", 3},
          {"", 0},
          {"lego_messenger_bad_messages_total", 1e18},
          {"neg", -2.5},
          {"inf", std::numeric_limits<double>::infinity()},
          {"nan", std::numeric_limits<double>::quiet_NaN()},
          {std::string(kMaxStringLen, 'n'), 1}};
}

RegisterReq SampleRegister(ComponentKind kind = ComponentKind::kMmon) {
  RegisterReq m;
  m.fixed.kind = static_cast<uint8_t>(kind);
  m.fixed.metrics_port = 9100;
  m.fixed.pid = 4242;
  m.fixed.capacity_bytes = 16ull << 30;
  m.fixed.used_bytes = 1ull << 20;
  m.listen_addr = "127.0.0.1:4001";
  m.name = "mmon-0";
  return m;
}

std::vector<MemberRecord> SampleMembers() {
  std::vector<MemberRecord> v;
  MemberRecord gm;
  gm.fixed = {1,
              static_cast<uint8_t>(ComponentKind::kGm),
              static_cast<uint8_t>(MemberState::kAlive),
              9000,
              10,
              1,
              0,
              0,
              1700000000000,
              0};
  gm.listen_addr = "127.0.0.1:4000";
  gm.name = "gm";
  v.push_back(gm);
  MemberRecord mm;
  mm.fixed = {2,
              static_cast<uint8_t>(ComponentKind::kMmon),
              static_cast<uint8_t>(MemberState::kDead),
              0,
              11,
              7,
              16ull << 30,
              123,
              1700000000500,
              12000};
  mm.listen_addr = "[::1]:4001";
  mm.name = "";  // members registered without a name
  v.push_back(mm);
  MemberRecord left;
  left.fixed = {3,
                static_cast<uint8_t>(ComponentKind::kSmon),
                static_cast<uint8_t>(MemberState::kLeft),
                0,
                12,
                1,
                0,
                0,
                -1,
                INT64_MAX};
  left.listen_addr = std::string(256, 'h');
  left.name = std::string(256, 'n');
  v.push_back(left);
  return v;
}

// ---- Round trips ----

TEST(RoundTripTest, HelloMsg) {
  HelloMsg m{kProtocolVersion, static_cast<uint8_t>(ComponentKind::kPmon), 0, 31337, 0x1234, 0};
  auto back = DecodeFixed<HelloMsg>(EncodeFixed(m), "any.hello");
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(back->version, m.version);
  EXPECT_EQ(back->sender_kind, m.sender_kind);
  EXPECT_EQ(back->reserved, 0);
  EXPECT_EQ(back->sender_pid, 31337u);
  EXPECT_EQ(back->route, 0x1234u);
}

TEST(RoundTripTest, EchoSizedReq) {
  EchoSizedReq m{kDefaultMaxPayload, 0};
  auto back = DecodeFixed<EchoSizedReq>(EncodeFixed(m), "any.echo_sized");
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(back->reply_bytes, kDefaultMaxPayload);
  EXPECT_EQ(back->reserved, 0u);
}

TEST(RoundTripTest, StatsList) {
  auto in = SampleStats();
  Bytes b = EncodeStats(in);
  auto back = DecodeStats(b);
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  ASSERT_EQ(back->size(), in.size());
  for (size_t i = 0; i < in.size(); ++i) {
    EXPECT_EQ((*back)[i].name, in[i].name) << i;
    EXPECT_EQ(Bits((*back)[i].value), Bits(in[i].value)) << i << " " << in[i].name;  // NaN too, bit for bit
  }
  EXPECT_EQ(EncodeStats(back.value()), b);
}

TEST(RoundTripTest, EmptyStatsList) {
  Bytes b = EncodeStats({});
  EXPECT_EQ(b, (Bytes{0, 0, 0, 0}));
  auto back = DecodeStats(b);
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_TRUE(back->empty());
}

TEST(RoundTripTest, RegisterReqEveryRegisteringKind) {
  for (auto kind : {ComponentKind::kPmon, ComponentKind::kMmon, ComponentKind::kSmon}) {
    RegisterReq in = SampleRegister(kind);
    Bytes b = EncodeRegisterReq(in);
    EXPECT_EQ(b.size(), sizeof(RegisterFixed) + 2 + in.listen_addr.size() + 2 + in.name.size());
    auto back = DecodeRegisterReq(b);
    ASSERT_TRUE(back.ok()) << back.status().ToString();
    EXPECT_EQ(back->fixed.kind, in.fixed.kind);
    EXPECT_EQ(back->fixed.reserved0, 0);
    EXPECT_EQ(back->fixed.metrics_port, in.fixed.metrics_port);
    EXPECT_EQ(back->fixed.pid, in.fixed.pid);
    EXPECT_EQ(back->fixed.capacity_bytes, in.fixed.capacity_bytes);
    EXPECT_EQ(back->fixed.used_bytes, in.fixed.used_bytes);
    EXPECT_EQ(back->listen_addr, in.listen_addr);
    EXPECT_EQ(back->name, in.name);
    EXPECT_EQ(EncodeRegisterReq(back.value()), b);
  }
}

TEST(RoundTripTest, RegisterReqLongestStrings) {
  RegisterReq in = SampleRegister();
  in.listen_addr = std::string(256, 'a');
  in.name = std::string(256, 'b');
  auto back = DecodeRegisterReq(EncodeRegisterReq(in));
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(back->listen_addr, in.listen_addr);
  EXPECT_EQ(back->name, in.name);
}

TEST(RoundTripTest, RegisterReqEmptyNameIsAllowed) {
  RegisterReq in = SampleRegister();
  in.name.clear();
  auto back = DecodeRegisterReq(EncodeRegisterReq(in));
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(back->name, "");
}

TEST(RoundTripTest, RegisterResp) {
  RegisterResp m{17, 3, 500, 0};
  auto back = DecodeFixed<RegisterResp>(EncodeFixed(m), "x2g.register reply");
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(back->id, 17u);
  EXPECT_EQ(back->incarnation, 3u);
  EXPECT_EQ(back->heartbeat_interval_ms, 500u);
}

TEST(RoundTripTest, HeartbeatReq) {
  HeartbeatReq m{17, 3, UINT64_MAX, 12345};
  auto back = DecodeFixed<HeartbeatReq>(EncodeFixed(m), "x2g.heartbeat");
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(back->id, 17u);
  EXPECT_EQ(back->incarnation, 3u);
  EXPECT_EQ(back->capacity_bytes, UINT64_MAX);
  EXPECT_EQ(back->used_bytes, 12345u);
}

TEST(RoundTripTest, DeregisterReq) {
  DeregisterReq m{17, 3};
  auto back = DecodeFixed<DeregisterReq>(EncodeFixed(m), "x2g.deregister");
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(back->id, 17u);
  EXPECT_EQ(back->incarnation, 3u);
}

TEST(RoundTripTest, MemberList) {
  auto in = SampleMembers();
  Bytes b = EncodeMemberList(in);
  auto back = DecodeMemberList(b);
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  ASSERT_EQ(back->size(), in.size());
  for (size_t i = 0; i < in.size(); ++i) {
    const auto& x = in[i].fixed;
    const auto& y = (*back)[i].fixed;
    EXPECT_EQ(y.id, x.id);
    EXPECT_EQ(y.kind, x.kind);
    EXPECT_EQ(y.state, x.state);
    EXPECT_EQ(y.metrics_port, x.metrics_port);
    EXPECT_EQ(y.pid, x.pid);
    EXPECT_EQ(y.incarnation, x.incarnation);
    EXPECT_EQ(y.capacity_bytes, x.capacity_bytes);
    EXPECT_EQ(y.used_bytes, x.used_bytes);
    EXPECT_EQ(y.joined_unix_ms, x.joined_unix_ms);
    EXPECT_EQ(y.last_heartbeat_age_ms, x.last_heartbeat_age_ms);
    EXPECT_EQ((*back)[i].listen_addr, in[i].listen_addr);
    EXPECT_EQ((*back)[i].name, in[i].name);
  }
  EXPECT_EQ(EncodeMemberList(back.value()), b);
}

TEST(RoundTripTest, EmptyMemberList) {
  auto back = DecodeMemberList(EncodeMemberList({}));
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_TRUE(back->empty());
}

// ---- Golden bytes: the exact encoding of known messages ----

TEST(GoldenBytesTest, RegisterReq) {
  RegisterReq m;
  m.fixed.kind = static_cast<uint8_t>(ComponentKind::kPmon);
  m.fixed.metrics_port = 8080;
  m.fixed.pid = 0x12345678;
  m.fixed.capacity_bytes = 4ull << 30;
  m.fixed.used_bytes = 0x1000;
  m.listen_addr = "127.0.0.1:4001";
  m.name = "pmon-a";
  const Bytes want = {
      0x02,                                            // kind: pmon
      0x00,                                            // reserved0
      0x90, 0x1f,                                      // metrics_port 8080
      0x78, 0x56, 0x34, 0x12,                          // pid
      0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00,  // capacity_bytes 4 GiB
      0x00, 0x10, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,  // used_bytes 4096
      0x0e, 0x00,                                      // listen_addr length 14
      '1',  '2',  '7',  '.',  '0',  '.',  '0',  '.',
      '1',  ':',  '4',  '0',  '0',  '1',  0x06, 0x00,  // name length 6
      'p',  'm',  'o',  'n',  '-',  'a',
  };
  EXPECT_EQ(EncodeRegisterReq(m), want);
  auto back = DecodeRegisterReq(want);
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(back->fixed.pid, 0x12345678u);
}

TEST(GoldenBytesTest, StatsList) {
  const Bytes want = {
      0x02, 0x00, 0x00, 0x00,                          // count 2
      0x02, 0x00, 'u',  'p',                           // name "up"
      0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xf0, 0x3f,  // value 1.0
      0x00, 0x00,                                      // name ""
      0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x04, 0xc0,  // value -2.5
  };
  EXPECT_EQ(EncodeStats({{"up", 1.0}, {"", -2.5}}), want);
}

TEST(GoldenBytesTest, MemberList) {
  MemberRecord m;
  m.fixed = {7,
             static_cast<uint8_t>(ComponentKind::kMmon),
             static_cast<uint8_t>(MemberState::kAlive),
             9100,
             100,
             2,
             1ull << 30,
             512,
             1700000000000,
             -1};
  m.listen_addr = "h:1";
  m.name = "m1";
  const Bytes want = {
      0x01, 0x00, 0x00, 0x00,                          // count 1
      0x07, 0x00, 0x00, 0x00,                          // id
      0x03,                                            // kind: mmon
      0x01,                                            // state: alive
      0x8c, 0x23,                                      // metrics_port 9100
      0x64, 0x00, 0x00, 0x00,                          // pid 100
      0x02, 0x00, 0x00, 0x00,                          // incarnation
      0x00, 0x00, 0x00, 0x40, 0x00, 0x00, 0x00, 0x00,  // capacity_bytes 1 GiB
      0x00, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,  // used_bytes 512
      0x00, 0x68, 0xe5, 0xcf, 0x8b, 0x01, 0x00, 0x00,  // joined_unix_ms 1700000000000
      0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,  // last_heartbeat_age_ms -1
      0x03, 0x00, 'h',  ':',  '1',                     // listen_addr
      0x02, 0x00, 'm',  '1',                           // name
  };
  EXPECT_EQ(EncodeMemberList({m}), want);
}

// ---- Truncation and trailing bytes ----

TEST(TruncationTest, EveryPrefixOfEveryMessageIsRejected) {
  ExpectEveryTruncationAndTrailerRejected(EncodeFixed(HelloMsg{1, 2, 0, 3, 4, 0}), FixedDecoder<HelloMsg>(),
                                          "hello");
  ExpectEveryTruncationAndTrailerRejected(EncodeFixed(EchoSizedReq{100, 0}), FixedDecoder<EchoSizedReq>(),
                                          "echo_sized");
  ExpectEveryTruncationAndTrailerRejected(EncodeStats(SampleStats()), StatsDecoder(), "stats");
  ExpectEveryTruncationAndTrailerRejected(EncodeStats({}), StatsDecoder(), "empty stats");
  ExpectEveryTruncationAndTrailerRejected(EncodeRegisterReq(SampleRegister()), RegisterDecoder(), "register");
  ExpectEveryTruncationAndTrailerRejected(EncodeFixed(RegisterResp{1, 2, 3, 0}), FixedDecoder<RegisterResp>(),
                                          "register reply");
  ExpectEveryTruncationAndTrailerRejected(EncodeFixed(HeartbeatReq{1, 2, 3, 4}), FixedDecoder<HeartbeatReq>(),
                                          "heartbeat");
  ExpectEveryTruncationAndTrailerRejected(EncodeFixed(DeregisterReq{1, 2}), FixedDecoder<DeregisterReq>(),
                                          "deregister");
  ExpectEveryTruncationAndTrailerRejected(EncodeMemberList(SampleMembers()), MembersDecoder(), "members");
  ExpectEveryTruncationAndTrailerRejected(EncodeMemberList({}), MembersDecoder(), "empty members");
}

TEST(TruncationTest, TruncationNeverAllocatesMuch) {
  auto sample = SampleStats();
  sample.pop_back();  // the kMaxStringLen name is an honest 4 KiB allocation
  Bytes stats = EncodeStats(sample);
  Bytes members = EncodeMemberList(SampleMembers());
  ScopedAllocTracker t;
  for (size_t n = 0; n < stats.size(); ++n) (void)DecodeStats(std::span(stats.data(), n));
  for (size_t n = 0; n < members.size(); ++n) (void)DecodeMemberList(std::span(members.data(), n));
  // The decoded vectors are sized by the (honest) counts: 6 stats entries, 3 members.
  EXPECT_LT(t.largest(), kSmallAlloc);
}

// ---- Oversized string length fields ----

TEST(OversizedStringTest, RegisterListenAddrOver256) {
  RegisterReq m = SampleRegister();
  m.listen_addr = std::string(257, 'a');
  Bytes b = EncodeRegisterReq(m);  // the encoder does not enforce the decoder's 256 limit
  auto r = DecodeRegisterReq(b);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kBadMessage);
  EXPECT_NE(r.status().message().find("listen_addr"), std::string::npos) << r.status().message();
}

TEST(OversizedStringTest, RegisterNameOver256) {
  RegisterReq m = SampleRegister();
  m.name = std::string(257, 'a');
  auto r = DecodeRegisterReq(EncodeRegisterReq(m));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kBadMessage);
  EXPECT_NE(r.status().message().find("name"), std::string::npos) << r.status().message();
}

TEST(OversizedStringTest, MemberNameOver256) {
  auto members = SampleMembers();
  members[0].name = std::string(257, 'a');
  auto r = DecodeMemberList(EncodeMemberList(members));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kBadMessage);
}

TEST(OversizedStringTest, MemberListenAddrOver256) {
  auto members = SampleMembers();
  members[1].listen_addr = std::string(257, 'a');
  auto r = DecodeMemberList(EncodeMemberList(members));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kBadMessage);
}

TEST(OversizedStringTest, StatsNameOverMaxStringLen) {
  // Hand-built: the Writer clamps strings to kMaxStringLen, a hostile peer does not.
  Writer w;
  w.Put(uint32_t{1});
  w.Put(static_cast<uint16_t>(kMaxStringLen + 1));
  w.PutBytes(Bytes(kMaxStringLen + 1, 'n'));
  w.Put(1.0);
  auto r = DecodeStats(w.Take());
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kBadMessage);
}

TEST(OversizedStringTest, LengthFieldLargerThanPayload) {
  Bytes reg = EncodeRegisterReq(SampleRegister());
  reg[sizeof(RegisterFixed)] = 0xFF;  // length 0x00FF = 255 <= 256 but only 14 bytes follow
  EXPECT_EQ(DecodeRegisterReq(reg).status().code(), StatusCode::kBadMessage);

  Writer w;
  w.Put(uint32_t{1});
  w.Put(uint16_t{0xFFFF});
  w.PutBytes(Bytes(8, 0));
  EXPECT_EQ(DecodeStats(w.Take()).status().code(), StatusCode::kBadMessage);
}

// ---- Huge count fields ----

Bytes CountThen(uint32_t count, size_t filler) {
  Writer w;
  w.Put(count);
  w.PutBytes(Bytes(filler, 0));
  return w.Take();
}

TEST(HugeCountTest, StatsCountsAreRejectedWithoutAllocating) {
  for (uint32_t count : {UINT32_MAX, 0x80000000u, 1000000u, 1000u, 2u}) {
    for (size_t filler : {0, 10, 19}) {  // room for at most one minimal entry
      Bytes b = CountThen(count, filler);
      ScopedAllocTracker t;
      auto r = DecodeStats(b);
      size_t largest = t.largest();
      EXPECT_EQ(r.status().code(), StatusCode::kBadMessage) << count << "/" << filler;
      EXPECT_LT(largest, kSmallAlloc)
          << "count " << count << " with " << filler << " bytes allocated " << largest;
    }
  }
}

TEST(HugeCountTest, MemberCountsAreRejectedWithoutAllocating) {
  for (uint32_t count : {UINT32_MAX, kMaxMembers + 1, kMaxMembers, 1000u, 2u}) {
    for (size_t filler : {0, 52, 103}) {  // room for at most one minimal record (48 + 2 + 2 bytes)
      Bytes b = CountThen(count, filler);
      ScopedAllocTracker t;
      auto r = DecodeMemberList(b);
      size_t largest = t.largest();
      EXPECT_EQ(r.status().code(), StatusCode::kBadMessage) << count << "/" << filler;
      EXPECT_LT(largest, kSmallAlloc)
          << "count " << count << " with " << filler << " bytes allocated " << largest;
    }
  }
}

TEST(HugeCountTest, MemberCountAboveMaxIsRejectedEvenWithEnoughBytes) {
  std::vector<MemberRecord> many(kMaxMembers + 1);
  for (auto& m : many) {
    m.listen_addr = "";
    m.name = "";
  }
  Bytes b = EncodeMemberList(many);
  auto r = DecodeMemberList(b);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kBadMessage);

  many.pop_back();
  b = EncodeMemberList(many);
  auto ok = DecodeMemberList(b);
  ASSERT_TRUE(ok.ok()) << ok.status().ToString();
  EXPECT_EQ(ok->size(), kMaxMembers);
}

TEST(HugeCountTest, HonestLargeStatsListDecodes) {
  std::vector<StatsEntry> many(10000, StatsEntry{"x", 1});
  auto r = DecodeStats(EncodeStats(many));
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->size(), 10000u);
}

// ---- Semantic checks in RegisterReq ----

TEST(RegisterReqTest, OnlyMonitorsMayRegister) {
  for (int kind = 0; kind <= 255; ++kind) {
    RegisterReq m = SampleRegister();
    m.fixed.kind = static_cast<uint8_t>(kind);
    auto r = DecodeRegisterReq(EncodeRegisterReq(m));
    bool monitor = kind == static_cast<int>(ComponentKind::kPmon) ||
                   kind == static_cast<int>(ComponentKind::kMmon) ||
                   kind == static_cast<int>(ComponentKind::kSmon);
    if (monitor) {
      EXPECT_TRUE(r.ok()) << kind << ": " << r.status().ToString();
    } else {
      ASSERT_FALSE(r.ok()) << "kind " << kind << " registered";
      EXPECT_EQ(r.status().code(), StatusCode::kBadMessage);
    }
  }
}

TEST(RegisterReqTest, EmptyListenAddrRejected) {
  RegisterReq m = SampleRegister();
  m.listen_addr.clear();
  auto r = DecodeRegisterReq(EncodeRegisterReq(m));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kBadMessage);
}

// ---- Names used when printing decoded messages ----

TEST(NamesTest, ComponentKinds) {
  EXPECT_EQ(ComponentKindName(ComponentKind::kGm), "gm");
  EXPECT_EQ(ComponentKindName(ComponentKind::kPmon), "pmon");
  EXPECT_EQ(ComponentKindName(ComponentKind::kMmon), "mmon");
  EXPECT_EQ(ComponentKindName(ComponentKind::kSmon), "smon");
  EXPECT_EQ(ComponentKindName(ComponentKind::kUnknown), "unknown");
  EXPECT_EQ(ComponentKindName(static_cast<ComponentKind>(200)), "unknown");
  for (auto k : {ComponentKind::kGm, ComponentKind::kPmon, ComponentKind::kMmon, ComponentKind::kSmon}) {
    ComponentKind out = ComponentKind::kUnknown;
    ASSERT_TRUE(ParseComponentKind(ComponentKindName(k), &out));
    EXPECT_EQ(out, k);
  }
  ComponentKind out = ComponentKind::kGm;
  EXPECT_FALSE(ParseComponentKind("unknown", &out));
  EXPECT_FALSE(ParseComponentKind("", &out));
  EXPECT_FALSE(ParseComponentKind("PMON", &out));
  EXPECT_EQ(out, ComponentKind::kGm) << "a failed parse must not write";
}

TEST(NamesTest, MemberStates) {
  EXPECT_EQ(MemberStateName(MemberState::kAlive), "alive");
  EXPECT_EQ(MemberStateName(MemberState::kDead), "dead");
  EXPECT_EQ(MemberStateName(MemberState::kLeft), "left");
  EXPECT_EQ(MemberStateName(static_cast<MemberState>(0)), "unknown");
  EXPECT_EQ(MemberStateName(static_cast<MemberState>(255)), "unknown");
}

}  // namespace
}  // namespace lego::proto
