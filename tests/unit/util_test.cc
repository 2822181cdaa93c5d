// Tests for common/util.h: ParseSize, FormatBytes, HostPort / ParseHostPort.
#include "common/util.h"

#include <cstdint>
#include <string>

#include <gtest/gtest.h>

namespace lego {
namespace {

uint64_t SizeOk(std::string_view text) {
  auto r = ParseSize(text);
  EXPECT_TRUE(r.ok()) << "'" << text << "': " << r.status().ToString();
  return r.ok() ? r.value() : 0;
}

void SizeBad(std::string_view text) {
  auto r = ParseSize(text);
  EXPECT_FALSE(r.ok()) << "'" << text << "' parsed as " << (r.ok() ? r.value() : 0);
  if (!r.ok()) {
    EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument) << text;
  }
}

TEST(ParseSizeTest, PlainNumbers) {
  EXPECT_EQ(SizeOk("0"), 0u);
  EXPECT_EQ(SizeOk("1"), 1u);
  EXPECT_EQ(SizeOk("4096"), 4096u);
  EXPECT_EQ(SizeOk("18446744073709551615"), UINT64_MAX);
}

TEST(ParseSizeTest, BinaryUnits) {
  EXPECT_EQ(SizeOk("64K"), 64u << 10);
  EXPECT_EQ(SizeOk("512M"), 512u << 20);
  EXPECT_EQ(SizeOk("2G"), 2ull << 30);
  EXPECT_EQ(SizeOk("1T"), 1ull << 40);
}

TEST(ParseSizeTest, UnitSpellings) {
  EXPECT_EQ(SizeOk("4096B"), 4096u);
  EXPECT_EQ(SizeOk("4096b"), 4096u);
  EXPECT_EQ(SizeOk("64k"), 64u << 10);
  EXPECT_EQ(SizeOk("64KB"), 64u << 10);
  EXPECT_EQ(SizeOk("64Kb"), 64u << 10);
  EXPECT_EQ(SizeOk("64KiB"), 64u << 10);
  EXPECT_EQ(SizeOk("3MiB"), 3u << 20);
}

TEST(ParseSizeTest, TrailingWhitespaceIgnored) {
  EXPECT_EQ(SizeOk("64M \n"), 64u << 20);
  EXPECT_EQ(SizeOk("7\t"), 7u);
}

TEST(ParseSizeTest, Garbage) {
  for (const char* s : {"", " ", "K", "abc", "-1", "+1", "0x10", "1.5G", "64 K", "64X", "64KK", "64Ki",
                        "64KIB", "64KiBB", "64MBB", "12kb3", "2gib"})
    SizeBad(s);
}

// Regression: "iB" and "B" were stripped before the unit was checked, so a bare suffix parsed as bytes.
TEST(ParseSizeTest, BareSuffixWithoutUnitRejected) {
  for (const char* s : {"64iB", "64BB", "64Bb", "64bb", "64BiB", "64biB"}) SizeBad(s);
}

TEST(ParseSizeTest, Overflow) {
  SizeBad("18446744073709551616");  // UINT64_MAX + 1: from_chars out of range
  SizeBad("99999999999999999999999");
  // 2^24 T = 2^64: one past the largest.
  SizeBad("16777216T");
  EXPECT_EQ(SizeOk("16777215T"), 16777215ull << 40);
  // UINT64_MAX >> 10 is the largest K value.
  EXPECT_EQ(SizeOk("18014398509481983K"), 18014398509481983ull << 10);
  SizeBad("18014398509481984K");
  SizeBad("17179869184G");  // 2^34 G = 2^64
}

TEST(ParseSizeTest, ErrorNamesInput) {
  auto r = ParseSize("12Q");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("12Q"), std::string::npos) << r.status().message();
}

TEST(FormatBytesTest, Bytes) {
  EXPECT_EQ(FormatBytes(0), "0 B");
  EXPECT_EQ(FormatBytes(1), "1 B");
  EXPECT_EQ(FormatBytes(1023), "1023 B");
}

TEST(FormatBytesTest, Units) {
  EXPECT_EQ(FormatBytes(1024), "1.0 KiB");
  EXPECT_EQ(FormatBytes(1536), "1.5 KiB");
  EXPECT_EQ(FormatBytes(1u << 20), "1.0 MiB");
  EXPECT_EQ(FormatBytes(5ull << 29), "2.5 GiB");
  EXPECT_EQ(FormatBytes(1ull << 40), "1.0 TiB");
}

TEST(FormatBytesTest, LargestUnitIsTiB) {
  EXPECT_EQ(FormatBytes(1ull << 50), "1024.0 TiB");
  EXPECT_EQ(FormatBytes(UINT64_MAX), "16777216.0 TiB");
}

// Regression: values just below a unit boundary printed as "1024.0 KiB" instead of "1.0 MiB".
TEST(FormatBytesTest, RoundingNeverShows1024OfAUnit) {
  EXPECT_EQ(FormatBytes((1u << 20) - 1), "1.0 MiB");
  EXPECT_EQ(FormatBytes((1ull << 30) - 1), "1.0 GiB");
  EXPECT_EQ(FormatBytes((1ull << 40) - 1), "1.0 TiB");
  EXPECT_EQ(FormatBytes(1023 * 1024 + 972), "1023.9 KiB");
  for (uint64_t b : {(1ull << 20) - 1, (1ull << 20) - 50, (1ull << 30) - 1000, (1ull << 40) - 1})
    EXPECT_EQ(FormatBytes(b).find("1024.0"), std::string::npos) << b << " -> " << FormatBytes(b);
}

HostPort HpOk(std::string_view text, bool allow_zero = false) {
  auto r = ParseHostPort(text, allow_zero);
  EXPECT_TRUE(r.ok()) << "'" << text << "': " << r.status().ToString();
  return r.ok() ? r.value() : HostPort{};
}

void HpBad(std::string_view text, bool allow_zero = false) {
  auto r = ParseHostPort(text, allow_zero);
  EXPECT_FALSE(r.ok()) << "'" << text << "' parsed as " << (r.ok() ? r.value().ToString() : "");
  if (!r.ok()) {
    EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument) << text;
  }
}

TEST(ParseHostPortTest, Ipv4AndNames) {
  auto hp = HpOk("127.0.0.1:4000");
  EXPECT_EQ(hp.host, "127.0.0.1");
  EXPECT_EQ(hp.port, 4000);
  hp = HpOk("localhost:1");
  EXPECT_EQ(hp.host, "localhost");
  EXPECT_EQ(hp.port, 1);
  EXPECT_EQ(HpOk("h:65535").port, 65535);
}

TEST(ParseHostPortTest, Ipv6Brackets) {
  auto hp = HpOk("[::1]:4000");
  EXPECT_EQ(hp.host, "::1");
  EXPECT_EQ(hp.port, 4000);
  hp = HpOk("[fe80::1%eth0]:80");
  EXPECT_EQ(hp.host, "fe80::1%eth0");
  for (const char* s : {"[::1]", "[::1]4000", "[::1:4000", "[::1]:", "[::1]x4000", "[::1]:40a0"}) HpBad(s);
}

// Regression: "[]:4000" parsed as an empty host.
TEST(ParseHostPortTest, EmptyBracketsRejected) { HpBad("[]:4000"); }

// Regression: "::1:4000" parsed as host "::1", although "1:2::3:4" cannot be told apart from a port.
TEST(ParseHostPortTest, UnbracketedIpv6Rejected) {
  HpBad("::1:4000");
  HpBad("fe80::1:80");
}

// Regression (found by protocol_fuzz): "[[x]:0" parsed as host "[x", whose ToString() "[x:0" did not parse.
TEST(ParseHostPortTest, BracketsInsideHostRejected) {
  for (const char* s : {"[[x]:1", "[[::1]:80", "[a[b]:1", "a]:1", "a[b:1", "x]y:1"})
    HpBad(s, /*allow_zero=*/true);
}

TEST(ParseHostPortTest, BadPorts) {
  for (const char* s : {"h:", "h:65536", "h:99999", "h:4294967296", "h:-1", "h:+1", "h: 80", "h:80 ", "h:8o",
                        "h:0x50", "h:1.5"})
    HpBad(s);
}

TEST(ParseHostPortTest, MissingParts) {
  for (const char* s : {"", ":", ":4000", "localhost", "4000"}) HpBad(s);
}

TEST(ParseHostPortTest, PortZeroOnlyWhenAllowed) {
  HpBad("127.0.0.1:0");
  HpBad("[::1]:0");
  HpBad("h:00");
  EXPECT_EQ(HpOk("127.0.0.1:0", /*allow_zero=*/true).port, 0);
  EXPECT_EQ(HpOk("[::1]:0", /*allow_zero=*/true).port, 0);
  HpBad("h:65536", /*allow_zero=*/true);
}

TEST(ParseHostPortTest, ToStringRoundTrips) {
  for (const char* s : {"127.0.0.1:4000", "[::1]:4000", "localhost:1", "[fe80::1%eth0]:65535"}) {
    auto hp = HpOk(s);
    EXPECT_EQ(hp.ToString(), s);
    auto again = HpOk(hp.ToString());
    EXPECT_EQ(again.host, hp.host);
    EXPECT_EQ(again.port, hp.port);
  }
  EXPECT_EQ((HostPort{"::1", 7}).ToString(), "[::1]:7");
}

TEST(ClockTest, MonotonicDoesNotGoBackwards) {
  int64_t a = MonoMillis();
  int64_t b = MonoMillis();
  EXPECT_LE(a, b);
  EXPECT_GT(WallMillis(), 1'600'000'000'000);  // after 2020
}

}  // namespace
}  // namespace lego
