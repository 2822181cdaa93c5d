// FS (0x04xx) and vNode messages: round trips, and every way a bad message is refused.
#include <gtest/gtest.h>

#include "protocol/c2p.h"
#include "protocol/fs.h"
#include "protocol/vnode.h"
#include "protocol/wire.h"

namespace lego::proto {
namespace {

FsRequest Req(FsOp op, std::string path) {
  FsRequest r;
  r.op = op;
  r.f.vnode = 3;
  r.path = std::move(path);
  return r;
}

TEST(FsPath, RulesOfTheWire) {
  EXPECT_TRUE(ValidateFsPath("").ok());
  EXPECT_TRUE(ValidateFsPath("a").ok());
  EXPECT_TRUE(ValidateFsPath("a/b.c/..d").ok());
  int e = 0;
  for (const char* bad : {"/etc/passwd", "a//b", "a/", "..", "a/../b", ".", "a/./b"}) {
    EXPECT_FALSE(ValidateFsPath(bad, &e).ok()) << bad;
    EXPECT_EQ(e, EINVAL) << bad;
  }
  EXPECT_FALSE(ValidateFsPath(std::string("a\0b", 3), &e).ok());
  EXPECT_FALSE(ValidateFsPath(std::string(256, 'n'), &e).ok());
  EXPECT_EQ(e, ENAMETOOLONG);
  EXPECT_TRUE(ValidateFsPath(std::string(255, 'n')).ok());
  std::string deep;
  while (deep.size() < 4096) deep += "abcdefg/";
  EXPECT_FALSE(ValidateFsPath(deep.substr(0, 4096), &e).ok());
  EXPECT_EQ(e, ENAMETOOLONG);
}

TEST(FsCodec, RequestRoundTripsForEveryOp) {
  for (uint16_t i = 1; i <= kFsOpCount; ++i) {
    auto op = static_cast<FsOp>(i);
    FsRequest r = Req(op, "dir/file");
    r.f.offset = 77;
    r.f.length = 4096;
    r.f.request_id = 0x8000'0000'0000'0042;
    if (op == FsOp::kRename) r.path2 = "dir/other";
    const uint8_t data[] = {1, 2, 3};
    if (op == FsOp::kWrite) r.data = data;
    auto bytes = EncodeFsRequest(r);
    auto d = DecodeFsRequest(FsOpcode(op), bytes);
    ASSERT_TRUE(d.ok()) << FsOpName(op) << d.status().ToString();
    EXPECT_EQ(d->op, op);
    EXPECT_EQ(d->path, "dir/file");
    EXPECT_EQ(d->path2, r.path2);
    EXPECT_EQ(d->f.offset, 77u);
    EXPECT_EQ(d->f.request_id, 0x8000'0000'0000'0042u);
    EXPECT_EQ(d->data.size(), op == FsOp::kWrite ? 3u : 0u);
    EXPECT_EQ(OpcodeName(FsOpcode(op)), "fs." + std::string(FsOpName(op)));
  }
}

TEST(FsCodec, BadRequestsAreRefused) {
  auto bad = [](uint16_t opcode, const FsRequest& r) {
    auto d = DecodeFsRequest(opcode, EncodeFsRequest(r));
    return !d.ok() && d.status().code() == StatusCode::kBadMessage;
  };
  EXPECT_TRUE(bad(kFsGetattr, Req(FsOp::kGetattr, "../etc")));
  EXPECT_TRUE(bad(kFsGetattr, Req(FsOp::kGetattr, "/abs")));
  auto r = Req(FsOp::kGetattr, "a");
  r.f.vnode = 0;
  EXPECT_TRUE(bad(kFsGetattr, r));
  r = Req(FsOp::kRead, "a");
  r.f.length = kFsMaxIo + 1;
  EXPECT_TRUE(bad(kFsRead, r));
  r = Req(FsOp::kRename, "a");
  r.path2 = "../b";
  EXPECT_TRUE(bad(kFsRename, r));
  r = Req(FsOp::kUnlink, "a");
  r.path2 = "b";  // path2 only for rename
  EXPECT_TRUE(bad(kFsUnlink, r));
  // Trailing bytes after a non-write request; a write larger than kFsMaxIo; not an FS opcode.
  auto bytes = EncodeFsRequest(Req(FsOp::kMkdir, "d"));
  bytes.push_back(0);
  EXPECT_FALSE(DecodeFsRequest(kFsMkdir, bytes).ok());
  std::vector<uint8_t> big(kFsMaxIo + 1);
  r = Req(FsOp::kWrite, "f");
  r.data = big;
  EXPECT_TRUE(bad(kFsWrite, r));
  EXPECT_FALSE(DecodeFsRequest(kReadPages, EncodeFsRequest(Req(FsOp::kGetattr, "a"))).ok());
  // Truncated anywhere.
  bytes = EncodeFsRequest(Req(FsOp::kGetattr, "some/path"));
  for (size_t n = 0; n < bytes.size(); ++n)
    EXPECT_FALSE(DecodeFsRequest(kFsGetattr, std::span(bytes.data(), n)).ok()) << n;
}

TEST(FsCodec, Replies) {
  FsReply rd;
  rd.f.flags = kFsReplyEof;
  rd.f.value = 42;
  rd.entries = {{1, 0100000, "a"}, {2, 040000, "sub"}};
  auto d = DecodeFsReply(FsOp::kReaddir, EncodeFsReply(FsOp::kReaddir, rd));
  ASSERT_TRUE(d.ok()) << d.status().ToString();
  ASSERT_EQ(d->entries.size(), 2u);
  EXPECT_EQ(d->entries[1].name, "sub");
  EXPECT_EQ(d->f.value, 42u);

  FsReply r;
  r.data = {9, 8, 7};
  auto dr = DecodeFsReply(FsOp::kRead, EncodeFsReply(FsOp::kRead, r));
  ASSERT_TRUE(dr.ok());
  EXPECT_EQ(dr->data, r.data);

  // Into a caller's buffer: the data lands there (cut to its size), FsReply::data stays empty.
  uint8_t dst[2] = {0, 0};
  size_t n = 99;
  auto di = DecodeFsReadReplyInto(EncodeFsReply(FsOp::kRead, r), std::span(dst, 2), &n);
  ASSERT_TRUE(di.ok()) << di.status().ToString();
  EXPECT_EQ(n, 2u);
  EXPECT_EQ(dst[0], 9);
  EXPECT_EQ(dst[1], 8);
  EXPECT_TRUE(di->data.empty());
  auto de = DecodeFsReadReplyInto(EncodeFsReply(FsOp::kRead, FsReply::Errno(EIO)), std::span(dst, 2), &n);
  ASSERT_TRUE(de.ok());
  EXPECT_EQ(de->err(), EIO);
  EXPECT_EQ(n, 0u);
  EXPECT_FALSE(DecodeFsReadReplyInto(EncodeFsReply(FsOp::kRead, FsReply::Errno(5000)), dst, &n).ok());
  FsReply huge;
  huge.data.assign(kFsMaxIo + 1, 1);
  EXPECT_FALSE(DecodeFsReadReplyInto(EncodeFsReply(FsOp::kRead, huge), dst, &n).ok());
  EXPECT_EQ(n, 0u);

  auto e = DecodeFsReply(FsOp::kRead, EncodeFsReply(FsOp::kRead, FsReply::Errno(ENOENT)));
  ASSERT_TRUE(e.ok());
  EXPECT_EQ(e->err(), ENOENT);
  EXPECT_TRUE(e->data.empty());
  // An errno no kernel has, a negative one, an entry count the bytes cannot hold, a bad entry name.
  EXPECT_FALSE(DecodeFsReply(FsOp::kGetattr, EncodeFsReply(FsOp::kGetattr, FsReply::Errno(5000))).ok());
  EXPECT_FALSE(DecodeFsReply(FsOp::kGetattr, EncodeFsReply(FsOp::kGetattr, FsReply::Errno(-1))).ok());
  auto lie = EncodeFsReply(FsOp::kReaddir, rd);
  lie[16] = 0xFF;  // count
  EXPECT_FALSE(DecodeFsReply(FsOp::kReaddir, lie).ok());
  rd.entries = {{1, 0, ".."}};
  EXPECT_FALSE(DecodeFsReply(FsOp::kReaddir, EncodeFsReply(FsOp::kReaddir, rd)).ok());
  rd.entries = {{1, 0, "a/b"}};
  EXPECT_FALSE(DecodeFsReply(FsOp::kReaddir, EncodeFsReply(FsOp::kReaddir, rd)).ok());
}

TEST(VnodeCodec, NamesRecordsAndRequests) {
  EXPECT_TRUE(ValidateVnodeName("default").ok());
  EXPECT_TRUE(ValidateVnodeName("a.b_c-9").ok());
  for (const char* bad : {"", ".hidden", "-x", "a/b", "a b", "a\nb"})
    EXPECT_FALSE(ValidateVnodeName(bad).ok()) << bad;
  EXPECT_FALSE(ValidateVnodeName(std::string(65, 'a')).ok());

  VnodeRecord v;
  v.fixed.id = 7;
  v.name = "alpha";
  v.smon_addr = "127.0.0.1:1";
  auto d = DecodeVnodeRecord(EncodeVnodeRecord(v));
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d->name, "alpha");
  v.fixed.id = 0;
  EXPECT_FALSE(DecodeVnodeRecord(EncodeVnodeRecord(v)).ok());
  v.fixed.id = 1;
  v.name = "../x";
  EXPECT_FALSE(DecodeVnodeRecord(EncodeVnodeRecord(v)).ok());

  auto list = DecodeVnodeList(EncodeVnodeList({}));
  ASSERT_TRUE(list.ok());
  EXPECT_TRUE(list->empty());
  auto huge = EncodeVnodeList({});
  huge[0] = huge[1] = huge[2] = 0xFF;
  EXPECT_FALSE(DecodeVnodeList(huge).ok());

  EXPECT_FALSE(DecodeVnodeLookupReq(EncodeVnodeLookupReq({0, 0, ""})).ok());
  auto lq = DecodeVnodeLookupReq(EncodeVnodeLookupReq({0, kVnodeLookupCreateDefault, "default"}));
  ASSERT_TRUE(lq.ok());
  EXPECT_EQ(lq->flags, kVnodeLookupCreateDefault);

  auto at = DecodeAttachVnodeReq(EncodeAttachVnodeReq({42, "job1", "alpha"}));
  ASSERT_TRUE(at.ok());
  EXPECT_EQ(at->pid, 42u);
  EXPECT_FALSE(DecodeAttachVnodeReq(EncodeAttachVnodeReq({42, "", "alpha"})).ok());
  EXPECT_FALSE(DecodeAttachVnodeResp(EncodeAttachVnodeResp({1, "a", "relative/path"})).ok());
  EXPECT_TRUE(DecodeAttachVnodeResp(EncodeAttachVnodeResp({1, "a", "/mnt/a"})).ok());
}

}  // namespace
}  // namespace lego::proto
