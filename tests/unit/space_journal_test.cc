// SpaceJournal: the pmon's record of the spaces it has not freed yet, across restarts.
#include "pmon/space_journal.h"

#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include <gtest/gtest.h>

namespace lego::pmon {
namespace {

class SpaceJournalTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/lego-space-journal-XXXXXX";
    dir_ = mkdtemp(tmpl);
    path_ = dir_ + "/spaces";
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::string Contents() const {
    std::ifstream f(path_);
    std::stringstream s;
    s << f.rdbuf();
    return s.str();
  }
  std::string dir_, path_;
};

TEST_F(SpaceJournalTest, SpacesNotRemovedAreLeftoversOfTheNextOpen) {
  {
    auto j = SpaceJournal::Open(path_);  // no file yet: created, empty
    ASSERT_TRUE(j.ok()) << j.status().ToString();
    EXPECT_TRUE((*j)->leftovers().empty());
    (*j)->Added(0xa);
    (*j)->Added(0xffffffffffffffffull);
    (*j)->Added(0xc);
    (*j)->Removed(0xa);
  }
  {
    auto j = SpaceJournal::Open(path_);
    ASSERT_TRUE(j.ok());
    EXPECT_EQ((*j)->leftovers(), (std::set<uint64_t>{0xc, 0xffffffffffffffffull}));
    // Compacted: only what is left, one line each.
    EXPECT_EQ(Contents(), "+000000000000000c\n+ffffffffffffffff\n");
    (*j)->Removed(0xc);
    (*j)->Removed(0xffffffffffffffffull);
  }
  auto j = SpaceJournal::Open(path_);
  ASSERT_TRUE(j.ok());
  EXPECT_TRUE((*j)->leftovers().empty());
  EXPECT_EQ(Contents(), "");
}

TEST_F(SpaceJournalTest, ALongLifeKeepsTheFileSmall) {
  auto j = SpaceJournal::Open(path_);
  ASSERT_TRUE(j.ok());
  (*j)->Added(0x77);                                                 // one process that stays
  for (uint64_t s = 1; s <= 5 * SpaceJournal::kCompactAfter; ++s) {  // thousands that come and go
    (*j)->Added(0x1000 + s);
    (*j)->Removed(0x1000 + s);
  }
  EXPECT_LE((*j)->lines(), SpaceJournal::kCompactAfter + 2);
  EXPECT_LE(std::filesystem::file_size(path_), 18 * (SpaceJournal::kCompactAfter + 2));
  (*j)->Added(0x99);
  j = SpaceJournal::Open(path_);  // what the file says after all that
  ASSERT_TRUE(j.ok());
  EXPECT_EQ((*j)->leftovers(), (std::set<uint64_t>{0x77, 0x99}));
}

TEST_F(SpaceJournalTest, TornAndForeignLinesAreSkipped) {
  std::ofstream(path_) << "+0000000000000001\n"
                          "garbage\n"
                          "+00000000000000zz\n"
                          "-\n"
                          "+0000000000000000\n"   // space 0 is never a space
                          "+00000000000000020\n"  // too long
                          "+0000000000000003\n"
                          "+00000000000";  // torn last line of a crash
  auto j = SpaceJournal::Open(path_);
  ASSERT_TRUE(j.ok()) << j.status().ToString();
  EXPECT_EQ((*j)->leftovers(), (std::set<uint64_t>{1, 3}));
  EXPECT_EQ(Contents(), "+0000000000000001\n+0000000000000003\n");
}

TEST_F(SpaceJournalTest, UnwritableDirectoryIsAnError) {
  auto j = SpaceJournal::Open(dir_ + "/missing/spaces");
  EXPECT_FALSE(j.ok());
}

}  // namespace
}  // namespace lego::pmon
