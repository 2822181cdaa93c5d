// A real lego-mmon serving pages over UCX: write-back, read, absent pages, a full pool, free and destroy,
// and malformed P2M requests.
#include <thread>

#include <gtest/gtest.h>

#include "common/log.h"
#include "messaging/messenger.h"
#include "protocol/any.h"
#include "protocol/membership.h"
#include "protocol/p2m.h"
#include "support/test_support.h"

namespace lego {
namespace {

using namespace std::chrono_literals;
using proto::kPageBytes;

class MmonTest : public ::testing::Test {
 protected:
  void SetUp() override {
    gm_ = std::make_unique<test::Daemon>(
        test::StartDaemon("gm", dir_.path(), "gm", {"--heartbeat-interval-ms", "100"}));
    // 64 pages of pool.
    mmon_ = std::make_unique<test::Daemon>(
        test::StartDaemon("mmon", dir_.path(), "mmon-0",
                          {"--gm", gm_->addr.ToString(), "--capacity", "256K", "--name", "mmon-0"}));
    msg::MessengerOptions o;
    o.name = "test-pmon";
    client_ = std::move(msg::Messenger::Create(o).value());
    ASSERT_TRUE(client_->Start().ok());
    auto ch = client_->Connect(mmon_->addr, 5s);
    ASSERT_TRUE(ch.ok()) << ch.status().ToString();
    ch_ = ch.value();
  }
  void TearDown() override { client_->Shutdown(); }

  Status Write(uint64_t space, std::vector<uint64_t> vaddrs, uint8_t seed) {
    proto::Bytes data(vaddrs.size() * kPageBytes);
    for (size_t i = 0; i < data.size(); ++i) data[i] = uint8_t(seed + i / kPageBytes * 31 + i % 251);
    auto r = ch_->Call(proto::kWritePages, proto::EncodeWritePages(space, vaddrs, data), 5s);
    return r.ok() ? Status::Ok() : r.status();
  }
  double Stat(const std::string& name) {
    auto r = ch_->Call(proto::kGetStats, {}, 5s);
    for (auto& e : proto::DecodeStats(r.value()).value())
      if (e.name == name) return e.value;
    return -1;
  }
  uint64_t GmUsedBytes() {
    auto gm = client_->Connect(gm_->addr, 5s);
    auto r = gm.value()->Call(proto::kListMembers, {}, 5s);
    for (auto& m : proto::DecodeMemberList(r.value()).value())
      if (m.name == "mmon-0") return m.fixed.used_bytes;
    return UINT64_MAX;
  }

  test::TempDir dir_;
  std::unique_ptr<test::Daemon> gm_, mmon_;
  std::unique_ptr<msg::Messenger> client_;
  std::shared_ptr<msg::Channel> ch_;
};

TEST_F(MmonTest, PagesWrittenBackReadBackByteIdentical) {
  std::vector<uint64_t> vaddrs = {0x10000, 0x11000, 0x7f0000001000};
  ASSERT_TRUE(Write(5, vaddrs, 17).ok());
  std::vector<uint64_t> ask = {0x11000, 0x12000, 0x10000, 0x7f0000001000};
  auto r = ch_->Call(proto::kReadPages, proto::EncodeReadPages(5, ask), 5s);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  auto resp = proto::DecodeReadPagesResp(r.value());
  ASSERT_TRUE(resp.ok()) << resp.status().ToString();
  EXPECT_EQ(resp->present, (std::vector<uint8_t>{1, 0, 1, 1}));
  // Expected bytes: page k of the write had seed pattern with index k.
  auto expect = [](size_t k, size_t i) { return uint8_t(17 + k * 31 + (k * kPageBytes + i) % 251); };
  size_t order[] = {1, 0, 2};  // written index of each present page, in reply order
  for (size_t p = 0; p < 3; ++p)
    for (size_t i = 0; i < kPageBytes; i += 97)
      ASSERT_EQ(resp->data[p * kPageBytes + i], expect(order[p], i)) << p << " " << i;
  EXPECT_EQ(Stat("lego_mmon_pages_written_total"), 3);
  EXPECT_EQ(Stat("lego_mmon_pages_absent_total"), 1);
  // The gm learns the used bytes from heartbeats.
  EXPECT_TRUE(test::WaitFor([&] { return GmUsedBytes() == 3 * kPageBytes; }, 5s));
}

TEST_F(MmonTest, FullPoolRefusesWithOutOfMemoryAndKeepsServing) {
  std::vector<uint64_t> batch;
  for (uint64_t i = 0; i < 60; ++i) batch.push_back(i * kPageBytes);
  ASSERT_TRUE(Write(1, batch, 1).ok());
  std::vector<uint64_t> more;
  for (uint64_t i = 0; i < 8; ++i) more.push_back((100 + i) * kPageBytes);
  Status st = Write(2, more, 2);
  EXPECT_EQ(st.code(), StatusCode::kOutOfMemory) << st.ToString();
  EXPECT_NE(st.message().find("full"), std::string::npos);
  EXPECT_EQ(Stat("lego_mmon_out_of_memory_total"), 1);
  // Destroying the first space frees everything; the refused batch now fits.
  auto r = ch_->Call(proto::kDestroySpace, proto::EncodeFixed(proto::DestroySpaceReq{1}), 5s);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(proto::DecodeFixed<proto::FreedResp>(r.value(), "freed")->pages_freed, 60u);
  EXPECT_TRUE(Write(2, more, 2).ok());
  // Free part of a range (munmap).
  proto::FreeRangeReq fr{2, 100 * kPageBytes, 4 * kPageBytes};
  r = ch_->Call(proto::kFreeRange, proto::EncodeFixed(fr), 5s);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(proto::DecodeFixed<proto::FreedResp>(r.value(), "freed")->pages_freed, 4u);
  EXPECT_TRUE(test::WaitFor([&] { return GmUsedBytes() == 4 * kPageBytes; }, 5s));
  EXPECT_TRUE(mmon_->proc.Running());
}

// A write that arrives after its space was destroyed (sent before the destroy; its transfer finished late)
// is refused: applied, it would bring the space back with nobody left to free it.
TEST_F(MmonTest, WriteAfterDestroyIsRefusedAndLeavesNothing) {
  ASSERT_TRUE(Write(9, {0x1000, 0x2000}, 3).ok());
  auto r = ch_->Call(proto::kDestroySpace, proto::EncodeFixed(proto::DestroySpaceReq{9}), 5s);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  Status late = Write(9, {0x3000}, 4);
  EXPECT_EQ(late.code(), StatusCode::kNotFound) << late.ToString();
  EXPECT_EQ(Stat("lego_mmon_late_writes_total"), 1);
  EXPECT_TRUE(Write(10, {0x3000}, 4).ok());  // other spaces are unaffected
  EXPECT_TRUE(test::WaitFor([&] { return GmUsedBytes() == kPageBytes; }, 5s)) << GmUsedBytes();
}

TEST_F(MmonTest, MalformedPageRequestsAreRejected) {
  std::vector<uint64_t> one = {0x1000};
  auto enc = proto::EncodeWritePages(1, one, proto::Bytes(kPageBytes, 1));
  auto r = ch_->Call(proto::kWritePages, std::span(enc.data(), enc.size() - 1), 5s);
  EXPECT_EQ(r.status().code(), StatusCode::kBadMessage);
  std::vector<uint64_t> unaligned = {0x1234};
  r = ch_->Call(proto::kReadPages, proto::EncodeReadPages(1, unaligned), 5s);
  EXPECT_EQ(r.status().code(), StatusCode::kBadMessage);
  r = ch_->Call(proto::kReadPages, proto::EncodeReadPages(1, {}), 5s);
  EXPECT_EQ(r.status().code(), StatusCode::kBadMessage);
  std::vector<uint64_t> too_many(proto::kMaxPagesPerRequest + 1, 0);
  r = ch_->Call(proto::kReadPages, proto::EncodeReadPages(1, too_many), 5s);
  EXPECT_EQ(r.status().code(), StatusCode::kBadMessage);
  r = ch_->Call(proto::kDestroySpace, proto::Bytes(3), 5s);
  EXPECT_EQ(r.status().code(), StatusCode::kBadMessage);
  EXPECT_TRUE(Write(1, one, 3).ok());
  EXPECT_GE(Stat("lego_msg_requests_served_total"), 6);
}

// An mmon that frees 1 MiB or more (a space, an unmapped range) tells the gm at once, not at its next
// heartbeat: the gm places the next program's vRegions by the free room it last heard, and a program started
// right after another got both its regions on the mmon that looked emptier a second earlier (and filled it).
TEST(GmmTest, FreedRoomReachesTheGmBeforeTheNextHeartbeat) {
  test::TempDir dir;
  // 4 s between heartbeats: a report within 2 s of a free, twice in a row, can only be the early one.
  auto gm =
      test::StartDaemon("gm", dir.path(), "gm", {"--heartbeat-interval-ms", "4000", "--metrics", "off"});
  auto mmon = test::StartDaemon("mmon", dir.path(), "mmon-0",
                                {"--gm", gm.addr.ToString(), "--capacity", "8M", "--name", "mmon-0"});
  msg::MessengerOptions o;
  o.name = "test-pmon";
  auto client = std::move(msg::Messenger::Create(o).value());
  ASSERT_TRUE(client->Start().ok());
  auto gmch = client->Connect(gm.addr, 5s).value();
  auto used = [&]() -> uint64_t {
    auto r = gmch->Call(proto::kListMembers, {}, 5s);
    auto list = r.ok() ? proto::DecodeMemberList(*r) : Result<std::vector<proto::MemberRecord>>(r.status());
    if (list.ok())
      for (auto& m : *list)
        if (m.name == "mmon-0") return m.fixed.used_bytes;
    return UINT64_MAX;
  };
  auto mch = client->Connect(mmon.addr, 5s).value();
  for (uint64_t batch = 0; batch < 8; ++batch) {  // 1024 pages, at most 256 a request
    std::vector<uint64_t> vaddrs;
    for (uint64_t i = 0; i < 128; ++i) vaddrs.push_back((batch * 128 + i) * kPageBytes);
    ASSERT_TRUE(mch->Call(proto::kWritePages,
                          proto::EncodeWritePages(7, vaddrs, proto::Bytes(128 * kPageBytes, 1)), 5s)
                    .ok());
  }
  ASSERT_TRUE(test::WaitFor([&] { return used() == 1024 * kPageBytes; }, 10s)) << used();
  // Half of it unmapped (p2m.free_range), then the rest with the space (p2m.destroy_space).
  ASSERT_TRUE(
      mch->Call(proto::kFreeRange, proto::EncodeFixed(proto::FreeRangeReq{7, 0, 512 * kPageBytes}), 5s).ok());
  EXPECT_TRUE(test::WaitFor([&] { return used() == 512 * kPageBytes; }, 2s)) << used();
  ASSERT_TRUE(mch->Call(proto::kDestroySpace, proto::EncodeFixed(proto::DestroySpaceReq{7}), 5s).ok());
  EXPECT_TRUE(test::WaitFor([&] { return used() == 0; }, 2s)) << used();
  client->Shutdown();
}

// GMM: the gm places vRegions on the mmon with the most free memory, never on a full or dead one.
TEST(GmmTest, RegionsGoToTheMostFreeMmonAndNeverToAFullOne) {
  test::TempDir dir;
  auto gm = test::StartDaemon("gm", dir.path(), "gm", {"--heartbeat-interval-ms", "100", "--metrics", "off"});
  auto small = std::make_unique<test::Daemon>(test::StartDaemon(
      "mmon", dir.path(), "mmon-0", {"--gm", gm.addr.ToString(), "--capacity", "4M", "--name", "mmon-0"}));
  auto big = test::StartDaemon("mmon", dir.path(), "mmon-1",
                               {"--gm", gm.addr.ToString(), "--capacity", "8M", "--name", "mmon-1"});
  msg::MessengerOptions o;
  o.name = "test-pmon";
  auto client = std::move(msg::Messenger::Create(o).value());
  ASSERT_TRUE(client->Start().ok());
  auto gmch = client->Connect(gm.addr, 5s).value();
  auto members = [&] {
    return proto::DecodeMemberList(gmch->Call(proto::kListMembers, {}, 5s).value()).value();
  };
  ASSERT_TRUE(test::WaitFor([&] { return members().size() == 3; }, 10s));
  auto assign = [&](uint64_t region) -> Result<proto::AssignRegionResp> {
    auto r = gmch->Call(proto::kAssignRegion, proto::EncodeFixed(proto::AssignRegionReq{1, region}), 5s);
    if (!r.ok()) return r.status();
    return proto::DecodeAssignRegionResp(r.value());
  };
  auto r0 = assign(0);
  ASSERT_TRUE(r0.ok()) << r0.status().ToString();
  EXPECT_EQ(r0->mmon_addr, big.addr.ToString());  // 8M free beats 4M free

  // Fill the big one until less than 1 MiB is free; once the gm hears of it, it is full.
  auto bigch = client->Connect(big.addr, 5s).value();
  for (uint64_t batch = 0; batch < 8; ++batch) {
    std::vector<uint64_t> vaddrs;
    for (uint64_t i = 0; i < (batch < 7 ? 256 : 60); ++i) vaddrs.push_back((batch * 256 + i) * kPageBytes);
    ASSERT_TRUE(bigch
                    ->Call(proto::kWritePages,
                           proto::EncodeWritePages(1, vaddrs, proto::Bytes(vaddrs.size() * kPageBytes, 1)),
                           5s)
                    .ok());
  }
  ASSERT_TRUE(test::WaitFor(
      [&] {
        for (auto& m : members())
          if (m.name == "mmon-1") return m.fixed.used_bytes == 1852ull * kPageBytes;
        return false;
      },
      5s));
  auto r1 = assign(1);
  ASSERT_TRUE(r1.ok());
  EXPECT_EQ(r1->mmon_addr, small->addr.ToString());
  EXPECT_EQ(assign(0)->mmon_addr, big.addr.ToString());  // existing assignments stay

  // The only mmon with room dies: the next region is refused with OutOfMemory, not placed on the full one.
  small->proc.Kill9();
  ASSERT_TRUE(test::WaitFor(
      [&] {
        for (auto& m : members())
          if (m.name == "mmon-0") return m.fixed.state == static_cast<uint8_t>(proto::MemberState::kDead);
        return false;
      },
      5s));
  auto r2 = assign(2);
  ASSERT_FALSE(r2.ok());
  EXPECT_EQ(r2.status().code(), StatusCode::kOutOfMemory) << r2.status().ToString();
  EXPECT_TRUE(gmch->Call(proto::kReleaseSpace, proto::EncodeFixed(proto::ReleaseSpaceReq{1}), 5s).ok());
  EXPECT_EQ(gmch->Call(proto::kAssignRegion, proto::Bytes(3), 5s).status().code(), StatusCode::kBadMessage);
  client->Shutdown();
}

}  // namespace
}  // namespace lego

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  lego::InitLogging("test", "warn");
  return RUN_ALL_TESTS();
}
