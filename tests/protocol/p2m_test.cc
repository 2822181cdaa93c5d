// P2M codecs: round trips, limits and every truncation.
#include "protocol/p2m.h"

#include <gtest/gtest.h>

#include "protocol/any.h"

namespace lego::proto {
namespace {

TEST(P2m, WritePagesRoundTripAndRejections) {
  std::vector<uint64_t> v = {0x1000, 0x3000};
  Bytes data(2 * kPageBytes);
  for (size_t i = 0; i < data.size(); ++i) data[i] = uint8_t(i * 13);
  auto enc = EncodeWritePages(42, v, data);
  auto dec = DecodeWritePages(enc);
  ASSERT_TRUE(dec.ok()) << dec.status().ToString();
  EXPECT_EQ(dec->space, 42u);
  EXPECT_EQ(dec->vaddrs, v);
  EXPECT_TRUE(std::equal(dec->data.begin(), dec->data.end(), data.begin(), data.end()));
  for (size_t cut = 0; cut < enc.size(); cut += (cut < 64 ? 1 : 1021))
    EXPECT_EQ(DecodeWritePages(std::span(enc.data(), cut)).status().code(), StatusCode::kBadMessage) << cut;
  auto extra = enc;
  extra.push_back(0);
  EXPECT_EQ(DecodeWritePages(extra).status().code(), StatusCode::kBadMessage);
  std::vector<uint64_t> unaligned = {0x1001};
  EXPECT_EQ(DecodeWritePages(EncodeWritePages(1, unaligned, Bytes(kPageBytes))).status().code(),
            StatusCode::kBadMessage);
  EXPECT_EQ(DecodeWritePages(EncodeWritePages(1, {}, {})).status().code(), StatusCode::kBadMessage);
  std::vector<uint64_t> many(kMaxPagesPerRequest + 1, 0);
  EXPECT_EQ(DecodeWritePages(EncodeWritePages(1, many, Bytes(many.size() * kPageBytes))).status().code(),
            StatusCode::kBadMessage);
}

TEST(P2m, ReadPagesRequestAndReply) {
  std::vector<uint64_t> v = {0, 0x2000, 0x5000};
  auto dec = DecodeReadPages(EncodeReadPages(9, v));
  ASSERT_TRUE(dec.ok());
  EXPECT_EQ(dec->space, 9u);
  EXPECT_EQ(dec->vaddrs, v);
  // Reply: 3 pages, the middle one absent.
  Writer w;
  w.Put(uint32_t{3});
  w.Put(uint32_t{0});
  for (uint8_t p : {1, 0, 1}) w.Put(p);
  w.PutBytes(Bytes(2 * kPageBytes, 7));
  auto reply = w.Take();
  auto r = DecodeReadPagesResp(reply);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->present, (std::vector<uint8_t>{1, 0, 1}));
  EXPECT_EQ(r->data.size(), 2 * kPageBytes);
  // Data not matching the present flags, a flag that is not 0/1, truncation.
  auto short_reply = reply;
  short_reply.resize(reply.size() - 1);
  EXPECT_EQ(DecodeReadPagesResp(short_reply).status().code(), StatusCode::kBadMessage);
  auto bad_flag = reply;
  bad_flag[9] = 2;
  EXPECT_EQ(DecodeReadPagesResp(bad_flag).status().code(), StatusCode::kBadMessage);
  for (size_t cut = 0; cut < 12; ++cut)
    EXPECT_EQ(DecodeReadPagesResp(std::span(reply.data(), cut)).status().code(), StatusCode::kBadMessage);
}

TEST(P2m, GoldenBytesOfReadPagesRequest) {
  std::vector<uint64_t> v = {0x1000};
  auto enc = EncodeReadPages(0x0102030405060708, v);
  const uint8_t want[] = {8, 7, 6, 5, 4, 3, 2, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0x10, 0, 0, 0, 0, 0, 0};
  ASSERT_EQ(enc.size(), sizeof(want));
  EXPECT_TRUE(std::equal(enc.begin(), enc.end(), want));
}

// Space ids carry their pmon's tag (a hash of its name) in the top 24 bits: `lego reclaim NAME` finds a gone
// pmon's spaces by it.
TEST(P2m, SpaceIdsCarryTheirPmonsTag) {
  EXPECT_EQ(MakeSpaceId(5, 0x1234), 0x0000050000001234ull);
  EXPECT_EQ(SpaceTag(MakeSpaceId(5, 0xFFFF'FFFF'FFFF'FFFFull)), 5u);
  EXPECT_EQ(MakeSpaceId(5, 0xFFFF'FFFF'FFFF'FFFFull) & 0xFF'FFFF'FFFFull, 0xFF'FFFF'FFFFull);
  EXPECT_NE(MakeSpaceId(5, 0), 0u);  // never 0 below the tag, even from a zero random
  // The tag is a pure function of the name (FNV-1a folded to 24 bits; golden values), never 0, and differs
  // between the local cluster's names.
  EXPECT_NE(PmonTag("pmon-0"), PmonTag("pmon-1"));
  for (const char* n : {"", "pmon-0", "pmon-1", "a"}) {
    EXPECT_NE(PmonTag(n), 0u) << n;
    EXPECT_LT(PmonTag(n), 1u << kSpaceTagBits) << n;
  }
  // Golden values: a tag must not change between versions (spaces made by one are reclaimed by another).
  static_assert(PmonTag("pmon-0") == 0x2e739f);
  static_assert(PmonTag("pmon-1") == 0x2e756b);
  static_assert(PmonTag("") == 0x1c9d44);
  // The golden bytes of the request both new opcodes take.
  Bytes b = EncodeFixed(TaggedSpacesReq{0x010203, 0});
  EXPECT_EQ(b, (Bytes{0x03, 0x02, 0x01, 0, 0, 0, 0, 0}));
  EXPECT_FALSE(DecodeFixed<TaggedSpacesReq>(std::span(b).first(7), "p2m.destroy_tagged_spaces").ok());
}

}  // namespace
}  // namespace lego::proto
