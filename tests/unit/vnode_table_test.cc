// VnodeTable (the gm's durable vNode records): survives reopen, never reuses ids, refuses a corrupt file.
#include "gm/vnode_table.h"

#include <filesystem>
#include <fstream>

#include <gtest/gtest.h>

namespace lego::gm {
namespace {

class VnodeTableTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/lego-vnode-table-XXXXXX";
    dir_ = mkdtemp(tmpl);
    path_ = dir_ + "/vnodes.json";
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::string dir_, path_;
};

TEST_F(VnodeTableTest, ChangesSurviveReopenAndIdsAreNeverReused) {
  {
    auto t = VnodeTable::Open(path_);
    ASSERT_TRUE(t.ok());
    auto a = (*t)->Add("a", "smon-0", "mmon-0", 1);
    auto b = (*t)->Add("b", "smon-1", "", 2);
    ASSERT_TRUE(a.ok() && b.ok());
    EXPECT_EQ(a->id, 1u);
    EXPECT_EQ(b->id, 2u);
    EXPECT_EQ((*t)->Add("a", "smon-0", "", 3).status().code(), StatusCode::kAlreadyExists);
    EXPECT_TRUE((*t)->Remove("b").ok());
    EXPECT_EQ((*t)->Remove("b").code(), StatusCode::kNotFound);
    EXPECT_TRUE((*t)->SetCacheMmon(1, "mmon-1").ok());
  }
  auto t = VnodeTable::Open(path_);
  ASSERT_TRUE(t.ok()) << t.status().ToString();
  auto list = (*t)->List();
  ASSERT_EQ(list.size(), 1u);
  EXPECT_EQ(list[0].name, "a");
  EXPECT_EQ(list[0].cache_mmon_name, "mmon-1");
  EXPECT_EQ((*t)->CountOnSmon("smon-0"), 1u);
  EXPECT_EQ((*t)->FindId(1)->name, "a");
  EXPECT_FALSE((*t)->FindName("b"));
  auto c = (*t)->Add("c", "smon-0", "", 4);
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->id, 3u);  // 2 was removed, never handed out again
}

TEST_F(VnodeTableTest, CorruptFileIsRefusedNotReplaced) {
  std::ofstream(path_) << "{ this is not json";
  auto t = VnodeTable::Open(path_);
  ASSERT_FALSE(t.ok());
  EXPECT_NE(t.status().message().find("cannot parse"), std::string::npos);
  std::ofstream(path_) << R"({"version": 1, "next_id": 2, "vnodes": [{"id": 5, "name": "x", "smon": "s"}]})";
  EXPECT_FALSE(VnodeTable::Open(path_).ok());  // id beyond next_id
}

}  // namespace
}  // namespace lego::gm
