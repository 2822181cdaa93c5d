// C2P and the local program <-> pmon messages: codecs and their refusals.
#include "protocol/c2p.h"

#include <gtest/gtest.h>

#include "protocol/local_codec.h"

namespace lego::proto {
namespace {

TEST(C2pTest, ProcessListRoundTrips) {
  ProcessRecord a;
  a.fixed.pid = 42;
  a.fixed.flags = kProcessEnded;
  a.fixed.faults = 7;
  a.fixed.fault_p99_ns = 123456;
  a.comm = "python3";
  a.job = "abc";
  a.killed_why = "mmon gone";
  ProcessRecord b;
  b.fixed.pid = 43;
  auto bytes = EncodeProcessList({a, b});
  EXPECT_EQ(bytes.size(), 4 + 2 * (sizeof(ProcessFixed) + 6) + 7 + 3 + 9);  // strings: u16 length + bytes
  auto got = DecodeProcessList(bytes).value();
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(got[0].fixed.pid, 42u);
  EXPECT_EQ(got[0].fixed.flags, kProcessEnded);
  EXPECT_EQ(got[0].fixed.fault_p99_ns, 123456u);
  EXPECT_EQ(got[0].comm, "python3");
  EXPECT_EQ(got[0].job, "abc");
  EXPECT_EQ(got[0].killed_why, "mmon gone");
  EXPECT_EQ(got[1].comm, "");
  EXPECT_EQ(got[1].killed_why, "");
}

TEST(C2pTest, ProcessListRefusesAnOverlongKillReason) {
  ProcessRecord a;
  a.killed_why = std::string(kMaxKilledWhy + 100, 'x');
  auto bytes = EncodeProcessList({a});  // the encoder cuts it to the limit
  auto got = DecodeProcessList(bytes);
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  EXPECT_EQ(got.value()[0].killed_why.size(), kMaxKilledWhy);
  // A peer that sends more is refused.
  const size_t len_at = bytes.size() - kMaxKilledWhy - 2;
  uint16_t longer = kMaxKilledWhy + 1;
  std::memcpy(bytes.data() + len_at, &longer, 2);
  bytes.push_back('x');
  EXPECT_EQ(DecodeProcessList(bytes).status().code(), StatusCode::kBadMessage);
}

TEST(C2pTest, ProcessListRejectsTruncationAndHugeCounts) {
  ProcessRecord a;
  a.comm = "x";
  auto bytes = EncodeProcessList({a});
  for (size_t n = 0; n < bytes.size(); ++n)
    EXPECT_FALSE(DecodeProcessList(std::span(bytes.data(), n)).ok()) << "truncated to " << n;
  uint32_t huge = 1u << 30;
  std::memcpy(bytes.data(), &huge, 4);
  EXPECT_EQ(DecodeProcessList(bytes).status().code(), StatusCode::kBadMessage);
}

std::vector<uint8_t> Hello(uint32_t magic, uint16_t version, uint16_t type, size_t size) {
  std::vector<uint8_t> b(size, 'A');  // strings without their NUL
  lego_local_hdr h{magic, version, type};
  std::memcpy(b.data(), &h, std::min(sizeof h, size));
  return b;
}

TEST(LocalCodecTest, HelloIsCheckedAndItsStringsTerminated) {
  const size_t full = sizeof(lego_local_hdr) + sizeof(lego_local_hello);
  auto ok = DecodeLocalHello(Hello(LEGO_LOCAL_MAGIC, LEGO_LOCAL_VERSION, LEGO_LOCAL_HELLO, full));
  EXPECT_EQ(ok.error, 0) << ok.why;
  EXPECT_EQ(std::strlen(ok.body.comm), sizeof ok.body.comm - 1);
  EXPECT_EQ(DecodeLocalHello(Hello(LEGO_LOCAL_MAGIC, LEGO_LOCAL_VERSION, LEGO_LOCAL_HELLO, full - 1)).error,
            EPROTO);
  EXPECT_EQ(DecodeLocalHello(Hello(0x12345678, LEGO_LOCAL_VERSION, LEGO_LOCAL_HELLO, full)).error, EPROTO);
  EXPECT_EQ(DecodeLocalHello(Hello(LEGO_LOCAL_MAGIC, LEGO_LOCAL_VERSION, LEGO_LOCAL_DROP, full)).error,
            EPROTO);
  auto v2 = DecodeLocalHello(Hello(LEGO_LOCAL_MAGIC, 2, LEGO_LOCAL_HELLO, full));
  EXPECT_EQ(v2.error, EPROTONOSUPPORT);
  EXPECT_NE(v2.why.find("v2"), std::string::npos);
}

TEST(LocalCodecTest, DropAckMatchesOnlyItsSequence) {
  std::vector<uint8_t> b(sizeof(lego_local_hdr) + sizeof(lego_local_drop_ack));
  lego_local_hdr h{LEGO_LOCAL_MAGIC, LEGO_LOCAL_VERSION, LEGO_LOCAL_DROP_ACK};
  lego_local_drop_ack a{9, ENOMEM, 0};
  std::memcpy(b.data(), &h, sizeof h);
  std::memcpy(b.data() + sizeof h, &a, sizeof a);
  int32_t st = 0;
  EXPECT_TRUE(DecodeDropAck(b, 9, &st));
  EXPECT_EQ(st, ENOMEM);
  EXPECT_FALSE(DecodeDropAck(b, 10, &st));
  EXPECT_FALSE(DecodeDropAck(std::span(b.data(), b.size() - 1), 9, &st));
}

}  // namespace
}  // namespace lego::proto
