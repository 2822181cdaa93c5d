// MembershipTable logic with explicit time: registration, rejoin, liveness, incarnations.
#include "gm/membership.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "support/test_support.h"

namespace lego::gm {
namespace {

using proto::ComponentKind;
using proto::MemberState;

proto::RegisterReq Req(ComponentKind kind, const std::string& addr, const std::string& name) {
  proto::RegisterReq r;
  r.fixed.kind = static_cast<uint8_t>(kind);
  r.fixed.pid = 42;
  r.fixed.capacity_bytes = 1 << 20;
  r.listen_addr = addr;
  r.name = name;
  return r;
}

MembershipOptions Opts(uint32_t interval_ms, uint32_t misses, std::optional<uint32_t> base = std::nullopt) {
  MembershipOptions o;
  o.heartbeat_interval_ms = interval_ms;
  o.heartbeat_misses = misses;
  o.incarnation_base = base;
  return o;
}

uint8_t State(MembershipTable& t, uint32_t id, int64_t now) {
  for (auto& m : t.List(now))
    if (m.fixed.id == id) return m.fixed.state;
  return 0;
}

TEST(MembershipTable, AssignsDistinctIdsAndListsMembers) {
  MembershipTable t(Opts(1000, 3, 0));
  auto a = t.Register(Req(ComponentKind::kMmon, "h:1", "mmon-0"), 0, 0);
  auto b = t.Register(Req(ComponentKind::kMmon, "h:2", "mmon-1"), 0, 0);
  auto c = t.Register(Req(ComponentKind::kPmon, "h:3", "pmon-0"), 0, 0);
  EXPECT_NE(a.id, b.id);
  EXPECT_NE(b.id, c.id);
  EXPECT_EQ(a.incarnation, 1u);
  EXPECT_EQ(a.heartbeat_interval_ms, 1000u);
  auto list = t.List(0);
  ASSERT_EQ(list.size(), 3u);
  EXPECT_EQ(list[0].name, "mmon-0");
  EXPECT_EQ(list[0].fixed.capacity_bytes, 1u << 20);
  EXPECT_EQ(t.CountAlive(), 3u);
}

TEST(MembershipTable, DeadOnlyAfterIntervalTimesMisses) {
  MembershipTable t(Opts(1000, 3));
  auto a = t.Register(Req(ComponentKind::kMmon, "h:1", "mmon-0"), 0, 0);
  EXPECT_TRUE(t.CheckLiveness(3000).empty());
  EXPECT_TRUE(t.Heartbeat({a.id, a.incarnation, 0, 0}, 2500).ok());
  EXPECT_TRUE(t.CheckLiveness(5400).empty());
  auto died = t.CheckLiveness(5501);
  ASSERT_EQ(died.size(), 1u);
  EXPECT_EQ(died[0].id, a.id);
  EXPECT_EQ(State(t, a.id, 5501), uint8_t(MemberState::kDead));
  EXPECT_TRUE(t.CheckLiveness(9000).empty());  // reported once
}

TEST(MembershipTable, RestartedMemberRejoinsWithSameIdNewIncarnation) {
  MembershipTable t(Opts(1000, 3));
  auto a = t.Register(Req(ComponentKind::kMmon, "h:1", "mmon-0"), 0, 0);
  t.CheckLiveness(10000);
  auto again = t.Register(Req(ComponentKind::kMmon, "h:9", "mmon-0"), 10000, 0);  // new port, same name
  EXPECT_EQ(again.id, a.id);
  EXPECT_EQ(again.incarnation, a.incarnation + 1);
  EXPECT_EQ(State(t, a.id, 10000), uint8_t(MemberState::kAlive));
  EXPECT_EQ(t.List(10000)[0].listen_addr, "h:9");
  // The old incarnation's heartbeats are refused: that process must not pass for the new one.
  EXPECT_EQ(t.Heartbeat({a.id, a.incarnation, 0, 0}, 10001).code(), StatusCode::kUnknownMember);
  EXPECT_TRUE(t.Heartbeat({a.id, again.incarnation, 0, 0}, 10001).ok());
}

TEST(MembershipTable, UnnamedMembersMatchByKindAndAddress) {
  MembershipTable t(Opts(1000, 3));
  auto a = t.Register(Req(ComponentKind::kSmon, "h:1", ""), 0, 0);
  auto b = t.Register(Req(ComponentKind::kSmon, "h:1", ""), 0, 0);
  auto c = t.Register(Req(ComponentKind::kMmon, "h:1", ""), 0, 0);
  EXPECT_EQ(a.id, b.id);
  EXPECT_NE(a.id, c.id);
}

TEST(MembershipTable, HeartbeatOfUnknownOrLeftMemberAsksToRegister) {
  MembershipTable t(Opts(1000, 3));
  EXPECT_EQ(t.Heartbeat({77, 1, 0, 0}, 0).code(), StatusCode::kUnknownMember);
  auto a = t.Register(Req(ComponentKind::kPmon, "h:1", "p"), 0, 0);
  EXPECT_TRUE(t.Deregister({a.id, a.incarnation}).ok());
  EXPECT_EQ(State(t, a.id, 0), uint8_t(MemberState::kLeft));
  EXPECT_EQ(t.Heartbeat({a.id, a.incarnation, 0, 0}, 1).code(), StatusCode::kUnknownMember);
  EXPECT_EQ(t.Deregister({a.id, a.incarnation + 5}).code(), StatusCode::kUnknownMember);
  EXPECT_TRUE(t.CheckLiveness(100000).empty());  // left members never die
}

TEST(MembershipTable, DeadMemberThatHeartbeatsAgainIsRevived) {
  MembershipTable t(Opts(100, 2));
  auto a = t.Register(Req(ComponentKind::kMmon, "h:1", "m"), 0, 0);
  t.CheckLiveness(1000);
  EXPECT_EQ(State(t, a.id, 1000), uint8_t(MemberState::kDead));
  EXPECT_TRUE(t.Heartbeat({a.id, a.incarnation, 5, 7}, 1001).ok());
  EXPECT_EQ(State(t, a.id, 1001), uint8_t(MemberState::kAlive));
  EXPECT_EQ(t.List(1001)[0].fixed.used_bytes, 7u);
}

// Regression: after a gm restart, a monitor's heartbeats (its old id and incarnation) were accepted as those
// of another monitor that had re-registered first and been given the same id, so it never re-registered.
TEST(MembershipTable, HeartbeatFromPreviousGmLifeIsRefusedEvenIfIdCollides) {
  MembershipTable old_gm(Opts(1000, 3));
  auto mmon = old_gm.Register(Req(ComponentKind::kMmon, "h:1", "mmon-0"), 0, 0);
  MembershipTable new_gm(Opts(1000, 3));  // restarted, without its data dir: forgot everything
  auto pmon = new_gm.Register(Req(ComponentKind::kPmon, "h:2", "pmon-0"), 0, 0);
  ASSERT_EQ(pmon.id, mmon.id);  // ids restart at 1
  ASSERT_NE(pmon.incarnation, mmon.incarnation);
  EXPECT_EQ(new_gm.Heartbeat({mmon.id, mmon.incarnation, 0, 0}, 1).code(), StatusCode::kUnknownMember);
  EXPECT_EQ(new_gm.Deregister({mmon.id, mmon.incarnation}).code(), StatusCode::kUnknownMember);
}

// A restarted gm gives each named monitor the id it had, whatever order they register in; a new monitor
// gets an id none of them had; unnamed monitors are not kept.
TEST(MembershipTable, NamedMembersKeepTheirIdsAcrossRestartsOfTheGm) {
  test::TempDir dir;
  const std::string path = dir.path() + "/members.json";
  uint32_t mmon0, mmon1, smon0;
  {
    auto o = Opts(1000, 3);
    o.ids_path = path;
    MembershipTable t(o);
    mmon0 = t.Register(Req(ComponentKind::kMmon, "h:1", "mmon-0"), 0, 0).id;
    mmon1 = t.Register(Req(ComponentKind::kMmon, "h:2", "mmon-1"), 0, 0).id;
    (void)t.Register(Req(ComponentKind::kMmon, "h:9", ""), 0, 0);
    smon0 = t.Register(Req(ComponentKind::kSmon, "h:3", "smon-0"), 0, 0).id;
  }
  auto ids = LoadMemberIds(path);
  ASSERT_TRUE(ids.ok()) << ids.status().ToString();
  EXPECT_EQ(ids->by_identity.size(), 3u);
  auto o = Opts(1000, 3);
  o.ids_path = path;
  o.known_ids = *ids;
  MembershipTable t(o);
  const uint32_t fresh = t.Register(Req(ComponentKind::kPmon, "h:4", "pmon-0"), 0, 0).id;
  EXPECT_EQ(t.Register(Req(ComponentKind::kSmon, "h:30", "smon-0"), 0, 0).id, smon0);  // at a new address
  EXPECT_EQ(t.Register(Req(ComponentKind::kMmon, "h:2", "mmon-1"), 0, 0).id, mmon1);
  EXPECT_EQ(t.Register(Req(ComponentKind::kMmon, "h:1", "mmon-0"), 0, 0).id, mmon0);
  EXPECT_FALSE(fresh == mmon0 || fresh == mmon1 || fresh == smon0);
  const uint32_t unnamed = t.Register(Req(ComponentKind::kMmon, "h:9", ""), 0, 0).id;
  EXPECT_FALSE(unnamed == mmon0 || unnamed == mmon1 || unnamed == smon0 || unnamed == fresh);
  // The same name of another kind is another member.
  EXPECT_NE(t.Register(Req(ComponentKind::kPmon, "h:5", "mmon-0"), 0, 0).id, mmon0);
}

TEST(MembershipTable, AnUnreadableIdsFileIsAnErrorNamingIt) {
  test::TempDir dir;
  const std::string path = dir.path() + "/members.json";
  EXPECT_TRUE(LoadMemberIds(path).ok());  // none yet: an empty table
  for (const char* bad :
       {"{", "{\"version\": 2}",
        "{\"version\": 1, \"next_id\": 2, \"members\": "
        "[{\"identity\": \"mmon:a\", \"id\": 7}]}",
        "{\"version\": 1, \"next_id\": 0, \"members\": []}",
        "{\"version\": 1, \"next_id\": 4294967296, \"members\": []}",
        "{\"version\": 1, \"next_id\": 9, \"members\": [{\"identity\": \"mmon:a\", \"id\": 3}, "
        "{\"identity\": \"mmon:b\", \"id\": 3}]}",
        "{\"version\": 1, \"next_id\": 9, \"members\": [{\"identity\": \"mmon:a\", \"id\": 3}, "
        "{\"identity\": \"mmon:a\", \"id\": 4}]}"}) {
    std::ofstream(path) << bad;
    auto ids = LoadMemberIds(path);
    ASSERT_FALSE(ids.ok()) << bad;
    EXPECT_NE(ids.status().message().find(path), std::string::npos) << ids.status().ToString();
  }
  // One that exists but cannot be read is not taken for none (the gm would number members anew and then
  // write over it).
  std::filesystem::remove(path);
  std::filesystem::create_directory(path);
  EXPECT_FALSE(LoadMemberIds(path).ok());
}

}  // namespace
}  // namespace lego::gm
