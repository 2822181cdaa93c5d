// Tests for common/status.h: Status, Result<T>, StatusCodeName, LEGO_RETURN_IF_ERROR.
#include "common/status.h"

#include <cerrno>
#include <memory>
#include <set>
#include <string>

#include <gtest/gtest.h>

namespace lego {
namespace {

constexpr int kFirstCode = static_cast<int>(StatusCode::kOk);
constexpr int kLastCode = static_cast<int>(StatusCode::kBusy);

TEST(StatusTest, DefaultIsOk) {
  Status s;
  EXPECT_TRUE(s.ok());
  EXPECT_EQ(s.code(), StatusCode::kOk);
  EXPECT_EQ(s.message(), "");
  EXPECT_EQ(s.ToString(), "OK");
  EXPECT_TRUE(Status::Ok().ok());
}

TEST(StatusTest, ErrorCarriesCodeAndMessage) {
  Status s(StatusCode::kTimeout, "call gm.list_members timed out after 2000 ms");
  EXPECT_FALSE(s.ok());
  EXPECT_EQ(s.code(), StatusCode::kTimeout);
  EXPECT_EQ(s.message(), "call gm.list_members timed out after 2000 ms");
  EXPECT_EQ(s.ToString(), "Timeout: call gm.list_members timed out after 2000 ms");
}

TEST(StatusTest, Helpers) {
  EXPECT_EQ(InvalidArgument("x").code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(NotFound("x").code(), StatusCode::kNotFound);
  EXPECT_EQ(BadMessage("x").code(), StatusCode::kBadMessage);
  EXPECT_EQ(IoError("x").code(), StatusCode::kIoError);
  EXPECT_EQ(Internal("x").code(), StatusCode::kInternal);
  EXPECT_EQ(BadMessage("short").message(), "short");
}

TEST(StatusTest, ErrnoErrorNamesCallAndErrno) {
  Status s = ErrnoError("open /nonexistent", ENOENT);
  EXPECT_EQ(s.code(), StatusCode::kIoError);
  EXPECT_EQ(s.message(), "open /nonexistent: No such file or directory");
}

// The numeric values are wire status codes (status.h): pin them.
TEST(StatusCodeTest, WireValuesArePinned) {
  EXPECT_EQ(static_cast<int>(StatusCode::kOk), 0);
  EXPECT_EQ(static_cast<int>(StatusCode::kInvalidArgument), 1);
  EXPECT_EQ(static_cast<int>(StatusCode::kNotFound), 2);
  EXPECT_EQ(static_cast<int>(StatusCode::kAlreadyExists), 3);
  EXPECT_EQ(static_cast<int>(StatusCode::kTimeout), 4);
  EXPECT_EQ(static_cast<int>(StatusCode::kPeerUnreachable), 5);
  EXPECT_EQ(static_cast<int>(StatusCode::kBadMessage), 6);
  EXPECT_EQ(static_cast<int>(StatusCode::kVersionMismatch), 7);
  EXPECT_EQ(static_cast<int>(StatusCode::kUnknownOpcode), 8);
  EXPECT_EQ(static_cast<int>(StatusCode::kUnknownMember), 9);
  EXPECT_EQ(static_cast<int>(StatusCode::kOutOfMemory), 10);
  EXPECT_EQ(static_cast<int>(StatusCode::kShuttingDown), 11);
  EXPECT_EQ(static_cast<int>(StatusCode::kIoError), 12);
  EXPECT_EQ(static_cast<int>(StatusCode::kInternal), 13);
  EXPECT_EQ(static_cast<int>(StatusCode::kBusy), 14);
}

TEST(StatusCodeTest, EveryCodeHasADistinctName) {
  std::set<std::string_view> names;
  for (int c = kFirstCode; c <= kLastCode; ++c) {
    std::string_view name = StatusCodeName(static_cast<StatusCode>(c));
    EXPECT_FALSE(name.empty()) << c;
    EXPECT_NE(name, "UnknownStatus") << "code " << c << " has no name";
    EXPECT_TRUE(names.insert(name).second) << "duplicate name " << name;
  }
  EXPECT_EQ(names.size(), static_cast<size_t>(kLastCode - kFirstCode + 1));
  EXPECT_EQ(StatusCodeName(StatusCode::kOk), "OK");
  EXPECT_EQ(StatusCodeName(StatusCode::kBadMessage), "BadMessage");
}

// A peer may put any int32 in MsgHeader::status; naming it must not crash.
TEST(StatusCodeTest, UnknownCodesHaveAFallbackName) {
  for (int c : {-1, kLastCode + 1, 1000, INT32_MIN, INT32_MAX})
    EXPECT_EQ(StatusCodeName(static_cast<StatusCode>(c)), "UnknownStatus") << c;
  EXPECT_EQ(Status(static_cast<StatusCode>(99), "m").ToString(), "UnknownStatus: m");
}

TEST(ResultTest, HoldsValue) {
  Result<int> r(42);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r.value(), 42);
  EXPECT_EQ(*r, 42);
  EXPECT_TRUE(r.status().ok());
  r.value() = 7;
  EXPECT_EQ(r.value(), 7);
}

TEST(ResultTest, HoldsError) {
  Result<int> r(NotFound("no member 7"));
  EXPECT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kNotFound);
  EXPECT_EQ(r.status().message(), "no member 7");
}

TEST(ResultTest, ArrowAndMoveOut) {
  Result<std::string> r(std::string("hello"));
  EXPECT_EQ(r->size(), 5u);
  const Result<std::string>& cr = r;
  EXPECT_EQ(cr->front(), 'h');
  std::string s = std::move(r).value();
  EXPECT_EQ(s, "hello");

  Result<std::unique_ptr<int>> p(std::make_unique<int>(3));
  std::unique_ptr<int> owned = std::move(p).value();
  EXPECT_EQ(*owned, 3);
}

Result<int> Half(int x) {
  if (x % 2) return InvalidArgument("odd");
  return x / 2;
}

Status Check(int x, int* out) {
  LEGO_RETURN_IF_ERROR(x >= 0 ? Status::Ok() : InvalidArgument("negative"));
  auto h = Half(x);
  if (!h.ok()) return h.status();
  *out = h.value();
  return Status::Ok();
}

TEST(ResultTest, ReturnIfErrorPropagates) {
  int out = -1;
  EXPECT_TRUE(Check(8, &out).ok());
  EXPECT_EQ(out, 4);
  Status s = Check(-2, &out);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(s.message(), "negative");
  EXPECT_EQ(Check(3, &out).message(), "odd");
}

}  // namespace
}  // namespace lego
