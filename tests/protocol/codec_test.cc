// Tests for protocol/codec.h (Writer, Reader, EncodeFixed/DecodeFixed) and the fixed layouts of wire.h,
// any.h and membership.h. The golden-byte tests pin the wire format: if one fails, the format changed, and
// docs/protocol.md, kProtocolVersion and every peer must change with it.
#include "protocol/codec.h"

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "protocol/any.h"
#include "protocol/membership.h"
#include "protocol/wire.h"

namespace lego::proto {
namespace {

// ---- Layouts (as documented next to each struct). Compile-time, and repeated at run time so that a
// reader of the test list sees them. ----

#define LEGO_EXPECT_OFFSET(T, field, off)     \
  static_assert(offsetof(T, field) == (off)); \
  EXPECT_EQ(offsetof(T, field), size_t{off}) << #T "::" #field

TEST(LayoutTest, MsgHeader) {
  EXPECT_EQ(sizeof(MsgHeader), 24u);
  LEGO_EXPECT_OFFSET(MsgHeader, magic, 0);
  LEGO_EXPECT_OFFSET(MsgHeader, version, 4);
  LEGO_EXPECT_OFFSET(MsgHeader, kind, 5);
  LEGO_EXPECT_OFFSET(MsgHeader, opcode, 6);
  LEGO_EXPECT_OFFSET(MsgHeader, request_id, 8);
  LEGO_EXPECT_OFFSET(MsgHeader, payload_len, 16);
  LEGO_EXPECT_OFFSET(MsgHeader, status, 20);
}

TEST(LayoutTest, AnyMessages) {
  EXPECT_EQ(sizeof(HelloMsg), 16u);
  LEGO_EXPECT_OFFSET(HelloMsg, version, 0);
  LEGO_EXPECT_OFFSET(HelloMsg, sender_kind, 1);
  LEGO_EXPECT_OFFSET(HelloMsg, reserved, 2);
  LEGO_EXPECT_OFFSET(HelloMsg, sender_pid, 4);
  LEGO_EXPECT_OFFSET(HelloMsg, route, 8);
  LEGO_EXPECT_OFFSET(HelloMsg, reserved2, 12);
  EXPECT_EQ(sizeof(EchoSizedReq), 8u);
  LEGO_EXPECT_OFFSET(EchoSizedReq, reply_bytes, 0);
  LEGO_EXPECT_OFFSET(EchoSizedReq, reserved, 4);
}

TEST(LayoutTest, MembershipMessages) {
  EXPECT_EQ(sizeof(RegisterFixed), 24u);
  LEGO_EXPECT_OFFSET(RegisterFixed, kind, 0);
  LEGO_EXPECT_OFFSET(RegisterFixed, reserved0, 1);
  LEGO_EXPECT_OFFSET(RegisterFixed, metrics_port, 2);
  LEGO_EXPECT_OFFSET(RegisterFixed, pid, 4);
  LEGO_EXPECT_OFFSET(RegisterFixed, capacity_bytes, 8);
  LEGO_EXPECT_OFFSET(RegisterFixed, used_bytes, 16);

  EXPECT_EQ(sizeof(RegisterResp), 16u);
  LEGO_EXPECT_OFFSET(RegisterResp, id, 0);
  LEGO_EXPECT_OFFSET(RegisterResp, incarnation, 4);
  LEGO_EXPECT_OFFSET(RegisterResp, heartbeat_interval_ms, 8);
  LEGO_EXPECT_OFFSET(RegisterResp, reserved, 12);

  EXPECT_EQ(sizeof(HeartbeatReq), 24u);
  LEGO_EXPECT_OFFSET(HeartbeatReq, id, 0);
  LEGO_EXPECT_OFFSET(HeartbeatReq, incarnation, 4);
  LEGO_EXPECT_OFFSET(HeartbeatReq, capacity_bytes, 8);
  LEGO_EXPECT_OFFSET(HeartbeatReq, used_bytes, 16);

  EXPECT_EQ(sizeof(DeregisterReq), 8u);
  LEGO_EXPECT_OFFSET(DeregisterReq, id, 0);
  LEGO_EXPECT_OFFSET(DeregisterReq, incarnation, 4);

  EXPECT_EQ(sizeof(MemberFixed), 48u);
  LEGO_EXPECT_OFFSET(MemberFixed, id, 0);
  LEGO_EXPECT_OFFSET(MemberFixed, kind, 4);
  LEGO_EXPECT_OFFSET(MemberFixed, state, 5);
  LEGO_EXPECT_OFFSET(MemberFixed, metrics_port, 6);
  LEGO_EXPECT_OFFSET(MemberFixed, pid, 8);
  LEGO_EXPECT_OFFSET(MemberFixed, incarnation, 12);
  LEGO_EXPECT_OFFSET(MemberFixed, capacity_bytes, 16);
  LEGO_EXPECT_OFFSET(MemberFixed, used_bytes, 24);
  LEGO_EXPECT_OFFSET(MemberFixed, joined_unix_ms, 32);
  LEGO_EXPECT_OFFSET(MemberFixed, last_heartbeat_age_ms, 40);
}

TEST(LayoutTest, ConstantsArePinned) {
  EXPECT_EQ(kMagic, 0x4F47454Cu);
  EXPECT_EQ(kProtocolVersion, 4);
  EXPECT_EQ(kDefaultMaxPayload, 8u << 20);
  EXPECT_EQ(kMaxStringLen, 4096u);
  EXPECT_EQ(kMaxMembers, 65536u);
  EXPECT_EQ(static_cast<int>(MsgKind::kRequest), 1);
  EXPECT_EQ(static_cast<int>(MsgKind::kReply), 2);
  EXPECT_EQ(static_cast<int>(MsgKind::kOneWay), 3);
  EXPECT_EQ(kHello, 0x0001);
  EXPECT_EQ(kPing, 0x0002);
  EXPECT_EQ(kGetStats, 0x0003);
  EXPECT_EQ(kEcho, 0x0004);
  EXPECT_EQ(kEchoSized, 0x0005);
  EXPECT_EQ(kRegister, 0x0101);
  EXPECT_EQ(kHeartbeat, 0x0102);
  EXPECT_EQ(kDeregister, 0x0103);
  EXPECT_EQ(kListMembers, 0x0201);
}

TEST(OpcodeTest, NamesFollowThePrefixScheme) {
  EXPECT_EQ(OpcodeName(kHello), "any.hello");
  EXPECT_EQ(OpcodeName(kPing), "any.ping");
  EXPECT_EQ(OpcodeName(kGetStats), "any.get_stats");
  EXPECT_EQ(OpcodeName(kEcho), "any.echo");
  EXPECT_EQ(OpcodeName(kEchoSized), "any.echo_sized");
  EXPECT_EQ(OpcodeName(kRegister), "x2g.register");
  EXPECT_EQ(OpcodeName(kHeartbeat), "x2g.heartbeat");
  EXPECT_EQ(OpcodeName(kDeregister), "x2g.deregister");
  EXPECT_EQ(OpcodeName(kListMembers), "c2g.list_members");
  EXPECT_EQ(OpcodeName(0x0000), "unknown");
  EXPECT_EQ(OpcodeName(0xFFFF), "unknown");
}

// ---- Golden bytes ----

TEST(GoldenBytesTest, MsgHeader) {
  MsgHeader h{};
  h.magic = kMagic;
  h.version = kProtocolVersion;
  h.kind = static_cast<uint8_t>(MsgKind::kRequest);
  h.opcode = kRegister;
  h.request_id = 0x0102030405060708;
  h.payload_len = 40;
  h.status = 0;
  const Bytes want = {
      'L',  'E',  'G',  'O',                           // magic 0x4F47454C
      0x04,                                            // version
      0x01,                                            // kind: request
      0x01, 0x01,                                      // opcode 0x0101 x2g.register
      0x08, 0x07, 0x06, 0x05, 0x04, 0x03, 0x02, 0x01,  // request_id
      0x28, 0x00, 0x00, 0x00,                          // payload_len 40
      0x00, 0x00, 0x00, 0x00,                          // status 0
  };
  EXPECT_EQ(EncodeFixed(h), want);

  h.kind = static_cast<uint8_t>(MsgKind::kReply);
  h.status = static_cast<int32_t>(StatusCode::kUnknownMember);
  Bytes reply = EncodeFixed(h);
  EXPECT_EQ(reply[5], 0x02);
  EXPECT_EQ(Bytes(reply.begin() + 20, reply.end()), (Bytes{0x09, 0x00, 0x00, 0x00}));
}

TEST(GoldenBytesTest, HelloMsg) {
  HelloMsg m{2, static_cast<uint8_t>(ComponentKind::kPmon), 0, 0x01020304, 0xA1B2C3D4, 0};
  EXPECT_EQ(EncodeFixed(m), (Bytes{0x02, 0x02, 0x00, 0x00, 0x04, 0x03, 0x02, 0x01,  //
                                   0xD4, 0xC3, 0xB2, 0xA1, 0x00, 0x00, 0x00, 0x00}));
}

TEST(GoldenBytesTest, HeartbeatReq) {
  HeartbeatReq m{3, 4, 5u << 20, 6};
  const Bytes want = {
      0x03, 0x00, 0x00, 0x00,                          // id
      0x04, 0x00, 0x00, 0x00,                          // incarnation
      0x00, 0x00, 0x50, 0x00, 0x00, 0x00, 0x00, 0x00,  // capacity_bytes 5 MiB
      0x06, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,  // used_bytes
  };
  EXPECT_EQ(EncodeFixed(m), want);
}

// ---- Writer / Reader ----

TEST(WriterTest, PutIsLittleEndianAndPutStringIsLengthPrefixed) {
  Writer w;
  w.Put(uint16_t{0x0201});
  w.Put(uint32_t{0x06050403});
  w.PutString("ab");
  w.PutString("");
  const uint8_t raw[] = {0xEE, 0xFF};
  w.PutBytes(raw);
  EXPECT_EQ(w.size(), 14u);
  EXPECT_EQ(w.Take(),
            (Bytes{0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x02, 0x00, 'a', 'b', 0x00, 0x00, 0xEE, 0xFF}));
}

TEST(WriterTest, PutStringClampsToMaxStringLen) {
  Writer w;
  w.PutString(std::string(kMaxStringLen + 10, 'x'));
  Bytes b = w.Take();
  ASSERT_EQ(b.size(), 2 + kMaxStringLen);
  Reader r(b, "test");
  std::string s;
  ASSERT_TRUE(r.GetString(&s, "s").ok());
  EXPECT_EQ(s.size(), kMaxStringLen);
  EXPECT_TRUE(r.Finish().ok());
}

TEST(ReaderTest, ReadsWhatWriterWrote) {
  Writer w;
  w.Put(uint8_t{7});
  w.Put(int64_t{-2});
  w.PutString("hello");
  w.Put(3.25);
  Bytes b = w.Take();
  Reader r(b, "test");
  uint8_t u8 = 0;
  int64_t i64 = 0;
  std::string s;
  double d = 0;
  ASSERT_TRUE(r.Get(&u8, "u8").ok());
  ASSERT_TRUE(r.Get(&i64, "i64").ok());
  ASSERT_TRUE(r.GetString(&s, "s").ok());
  EXPECT_EQ(r.remaining(), 8u);
  ASSERT_TRUE(r.Get(&d, "d").ok());
  EXPECT_EQ(u8, 7);
  EXPECT_EQ(i64, -2);
  EXPECT_EQ(s, "hello");
  EXPECT_EQ(d, 3.25);
  EXPECT_EQ(r.remaining(), 0u);
  EXPECT_TRUE(r.Finish().ok());
}

TEST(ReaderTest, ShortReadIsBadMessageNamingTheField) {
  const Bytes b = {1, 2, 3};
  Reader r(b, "x2g.test");
  uint32_t v = 0xAAAAAAAA;
  Status st = r.Get(&v, "count");
  EXPECT_EQ(st.code(), StatusCode::kBadMessage);
  EXPECT_NE(st.message().find("x2g.test"), std::string::npos) << st.message();
  EXPECT_NE(st.message().find("count"), std::string::npos) << st.message();
  EXPECT_EQ(v, 0xAAAAAAAAu) << "a failed Get must not write";
  EXPECT_EQ(r.remaining(), 3u) << "a failed Get must not advance";
}

TEST(ReaderTest, EmptySpan) {
  Reader r(std::span<const uint8_t>(), "empty");
  uint8_t v;
  EXPECT_EQ(r.Get(&v, "v").code(), StatusCode::kBadMessage);
  std::string s;
  EXPECT_EQ(r.GetString(&s, "s").code(), StatusCode::kBadMessage);
  EXPECT_TRUE(r.Finish().ok());
}

TEST(ReaderTest, StringLengthBeyondDataIsRejected) {
  const Bytes b = {0x05, 0x00, 'a', 'b'};  // says 5, has 2
  Reader r(b, "test");
  std::string s;
  EXPECT_EQ(r.GetString(&s, "s").code(), StatusCode::kBadMessage);
  const Bytes huge = {0xFF, 0xFF, 'a'};
  Reader r2(huge, "test");
  EXPECT_EQ(r2.GetString(&s, "s").code(), StatusCode::kBadMessage);
}

TEST(ReaderTest, StringLongerThanLimitIsRejectedEvenIfPresent) {
  Writer w;
  w.PutString(std::string(300, 'a'));
  Bytes b = w.Take();
  std::string s;
  Reader r(b, "test");
  Status st = r.GetString(&s, "listen_addr", 256);
  EXPECT_EQ(st.code(), StatusCode::kBadMessage);
  EXPECT_NE(st.message().find("exceeds"), std::string::npos) << st.message();
  Reader ok(b, "test");
  EXPECT_TRUE(ok.GetString(&s, "listen_addr", 300).ok());

  // Default limit is kMaxStringLen: a hand-built 4097-byte string is refused.
  Bytes big = {0x01, 0x10};  // 4097
  big.resize(2 + 4097, 'z');
  Reader r3(big, "test");
  EXPECT_EQ(r3.GetString(&s, "s").code(), StatusCode::kBadMessage);
}

TEST(ReaderTest, FinishRejectsTrailingBytes) {
  const Bytes b = {1, 2, 3};
  Reader r(b, "test");
  uint16_t v;
  ASSERT_TRUE(r.Get(&v, "v").ok());
  Status st = r.Finish();
  EXPECT_EQ(st.code(), StatusCode::kBadMessage);
  EXPECT_NE(st.message().find("trailing"), std::string::npos) << st.message();
}

// ---- EncodeFixed / DecodeFixed ----

template <typename T>
void ExpectFixedExactSizeOnly(const T& msg, const char* what) {
  Bytes b = EncodeFixed(msg);
  ASSERT_EQ(b.size(), sizeof(T));
  auto back = DecodeFixed<T>(b, what);
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(EncodeFixed(back.value()), b);
  for (size_t n = 0; n < b.size(); ++n) {
    auto r = DecodeFixed<T>(std::span(b.data(), n), what);
    ASSERT_FALSE(r.ok()) << what << " prefix " << n;
    EXPECT_EQ(r.status().code(), StatusCode::kBadMessage);
  }
  Bytes longer = b;
  longer.push_back(0);
  auto r = DecodeFixed<T>(longer, what);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kBadMessage);
}

TEST(FixedTest, EveryFixedMessageDecodesOnlyAtExactSize) {
  ExpectFixedExactSizeOnly(MsgHeader{kMagic, 1, 1, kPing, 9, 0, 0}, "header");
  ExpectFixedExactSizeOnly(HelloMsg{1, 0, 0, 42, 7, 0}, "any.hello");
  ExpectFixedExactSizeOnly(EchoSizedReq{4096, 0}, "any.echo_sized");
  ExpectFixedExactSizeOnly(RegisterResp{1, 2, 500, 0}, "x2g.register reply");
  ExpectFixedExactSizeOnly(HeartbeatReq{1, 2, 3, 4}, "x2g.heartbeat");
  ExpectFixedExactSizeOnly(DeregisterReq{1, 2}, "x2g.deregister");
}

}  // namespace
}  // namespace lego::proto
