// libFuzzer target for every decoder of untrusted input (see docs/decisions/003-fuzzing.md).
//
// Each input is fed, unchanged, to every payload decoder (no selector byte: a seed for one message is a
// mutation seed for all the others), to DecodeFixed<MsgHeader> on its first 24 bytes, and, read as text,
// to the user-input parsers ParseSize and ParseHostPort. Properties checked, any violation aborts:
//   1. no crash, leak or UB (ASan/UBSan in the clang build);
//   2. a rejected payload is always kBadMessage, a rejected user string always kInvalidArgument;
//   3. stability: decode -> encode -> decode succeeds and the second encode equals the first;
//   4. canonical encoding: encode(decode(x)) == x. Today every decoder accepts exactly one encoding per
//      message; if a decoder starts normalising (e.g. ignoring reserved fields), relax this one per message.
//   5. ParseHostPort(ToString(ParseHostPort(s))) gives back the same host and port.
//
// The same entry point is linked into tests/fuzz/regression_main.cc for the gcc build (ctest label
// `protocol`), so the checks run on every build, not only under clang.
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <span>
#include <string>
#include <string_view>

#include "common/status.h"
#include "common/util.h"
#include "protocol/any.h"
#include "protocol/c2p.h"
#include "protocol/fs.h"
#include "protocol/local_codec.h"
#include "protocol/membership.h"
#include "protocol/p2m.h"
#include "protocol/vnode.h"
#include "protocol/wire.h"

namespace lego::proto {
namespace {

[[noreturn]] void Fail(const char* what, const char* why, std::string_view detail = {}) {
  std::string shown;  // detail may be fuzz input: escape it
  for (unsigned char c : detail) {
    if (c >= 0x20 && c < 0x7F && c != '\\') {
      shown += static_cast<char>(c);
    } else {
      char buf[8];
      std::snprintf(buf, sizeof(buf), "\\x%02x", c);
      shown += buf;
    }
  }
  std::fprintf(stderr, "protocol_fuzz: %s: %s %s\n", what, why, shown.c_str());
  std::abort();
}

bool SameBytes(std::span<const uint8_t> a, const Bytes& b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin());
}

// Properties 2-4 for one decoder/encoder pair. Returns the decoded message's status.
template <typename Decode, typename Encode>
auto CheckCodec(std::span<const uint8_t> in, const char* what, Decode decode, Encode encode) {
  auto first = decode(in);
  if (!first.ok()) {
    if (first.status().code() != StatusCode::kBadMessage)
      Fail(what, "rejected with a code other than BadMessage:", first.status().ToString());
    return first;
  }
  Bytes once = encode(first.value());
  if (!SameBytes(in, once)) Fail(what, "encode(decode(x)) != x");
  auto second = decode(once);
  if (!second.ok()) Fail(what, "re-encoded message does not decode:", second.status().ToString());
  if (encode(second.value()) != once) Fail(what, "decode -> encode -> decode -> encode is not stable");
  return first;
}

template <typename T>
void CheckFixed(std::span<const uint8_t> in, const char* what) {
  (void)CheckCodec(
      in, what, [&](std::span<const uint8_t> b) { return DecodeFixed<T>(b, what); },
      [](const T& m) { return EncodeFixed(m); });
}

// What a daemon or the CLI does with a decoded header's fields: name them for logs. Must not crash on any
// value. (The checks of HandleAm in messaging/messenger.cc are not reachable from here.)
void UseHeader(const MsgHeader& h) {
  if (OpcodeName(h.opcode).empty()) Fail("header", "empty opcode name");
  if (StatusCodeName(static_cast<StatusCode>(h.status)).empty()) Fail("header", "empty status name");
  if (Status(static_cast<StatusCode>(h.status), "x").ToString().empty()) Fail("header", "empty status text");
}

void FuzzPayloadDecoders(std::span<const uint8_t> in) {
  CheckFixed<HelloMsg>(in, "any.hello");
  CheckFixed<EchoSizedReq>(in, "any.echo_sized");
  CheckFixed<RegisterResp>(in, "x2g.register reply");
  CheckFixed<HeartbeatReq>(in, "x2g.heartbeat");
  CheckFixed<DeregisterReq>(in, "x2g.deregister");
  CheckFixed<MsgHeader>(in, "header");

  auto stats = CheckCodec(in, "any.get_stats reply", DecodeStats, EncodeStats);
  if (stats.ok() && stats->size() * 10 > in.size())
    Fail("any.get_stats reply", "more entries than bytes allow");

  auto reg = CheckCodec(in, "x2g.register", DecodeRegisterReq, EncodeRegisterReq);
  if (reg.ok()) {
    auto kind = static_cast<ComponentKind>(reg->fixed.kind);
    if (kind != ComponentKind::kPmon && kind != ComponentKind::kMmon && kind != ComponentKind::kSmon)
      Fail("x2g.register", "accepted a kind that cannot register");
    if (reg->listen_addr.empty() || reg->listen_addr.size() > 256)
      Fail("x2g.register", "bad listen_addr accepted");
    if (reg->name.size() > 256) Fail("x2g.register", "name over 256 accepted");
    (void)ComponentKindName(kind);
  }

  auto members = CheckCodec(in, "c2g.list_members reply", DecodeMemberList, EncodeMemberList);
  if (members.ok()) {
    if (members->size() > kMaxMembers) Fail("c2g.list_members reply", "more than kMaxMembers");
    if (members->size() * (sizeof(MemberFixed) + 4) > in.size())
      Fail("c2g.list_members reply", "more members than bytes allow");
    for (const auto& m : members.value()) {
      (void)ComponentKindName(static_cast<ComponentKind>(m.fixed.kind));
      (void)MemberStateName(static_cast<MemberState>(m.fixed.state));
      if (m.listen_addr.size() > 256 || m.name.size() > 256)
        Fail("c2g.list_members reply", "string over 256 accepted");
    }
  }

  // The header as it arrives in a UCX AM header: the first sizeof(MsgHeader) bytes.
  if (in.size() >= sizeof(MsgHeader)) {
    auto hdr = DecodeFixed<MsgHeader>(in.first(sizeof(MsgHeader)), "header");
    if (!hdr.ok()) Fail("header", "24 bytes did not decode:", hdr.status().ToString());
    UseHeader(hdr.value());
  }

  // P2M decoders: whatever they accept must be internally consistent.
  if (auto w = DecodeWritePages(in); w.ok()) {
    if (w->vaddrs.empty() || w->vaddrs.size() > kMaxPagesPerRequest)
      Fail("p2m.write_pages", "bad count accepted");
    if (w->data.size() != w->vaddrs.size() * kPageBytes)
      Fail("p2m.write_pages", "data size mismatch accepted");
    for (uint64_t v : w->vaddrs)
      if (v % kPageBytes) Fail("p2m.write_pages", "unaligned vaddr accepted");
  }
  if (auto rp = DecodeReadPages(in); rp.ok()) {
    auto again = DecodeReadPages(EncodeReadPages(rp->space, rp->vaddrs));
    if (!again.ok() || again->vaddrs != rp->vaddrs) Fail("p2m.read_pages", "re-encoding is not stable");
  }
  if (auto rr = DecodeReadPagesResp(in); rr.ok()) {
    size_t present = 0;
    for (uint8_t p : rr->present) present += p;
    if (rr->data.size() != present * kPageBytes) Fail("p2m.read_pages reply", "data size mismatch accepted");
  }
  if (auto a = DecodeAssignRegionResp(in); a.ok()) {
    if (a->mmon_addr.empty() || a->mmon_addr.size() > 256)
      Fail("x2g.assign_region reply", "bad address accepted");
    if (!SameBytes(in, EncodeAssignRegionResp(a.value())))
      Fail("x2g.assign_region reply", "encode(decode(x)) != x");
  }
  (void)DecodeFixed<AssignRegionReq>(in, "x2g.assign_region");
  (void)DecodeFixed<FreeRangeReq>(in, "p2m.free_range");
  (void)DecodeFixed<DestroySpaceReq>(in, "p2m.destroy_space");
  (void)DecodeFixed<CopySpaceReq>(in, "p2m.copy_space");
  (void)DecodeFixed<TaggedSpacesReq>(in, "p2m.destroy_tagged_spaces");
  (void)DecodeFixed<ForkSpaceReq>(in, "x2g.fork_space");

  auto procs = CheckCodec(in, "c2p.list_processes reply", DecodeProcessList, EncodeProcessList);
  if (procs.ok()) {
    if (procs->size() > kMaxProcesses) Fail("c2p.list_processes reply", "more than kMaxProcesses");
    for (const auto& p : procs.value())
      if (p.comm.size() > 256 || p.job.size() > 256 || p.killed_why.size() > kMaxKilledWhy)
        Fail("c2p.list_processes reply", "string over its limit accepted");
  }

  // FS requests and replies, under every FS opcode: what decodes must be canonical and its paths valid.
  for (uint16_t i = 1; i <= kFsOpCount; ++i) {
    const auto op = static_cast<FsOp>(i);
    const uint16_t opcode = FsOpcode(op);
    auto req = CheckCodec(
        in, "fs request", [&](std::span<const uint8_t> b) { return DecodeFsRequest(opcode, b); },
        [](const FsRequest& m) { return EncodeFsRequest(m); });
    if (req.ok()) {
      if (!ValidateFsPath(req->path).ok() || !ValidateFsPath(req->path2).ok())
        Fail("fs request", "invalid path accepted:", req->path);
      if (req->f.vnode == 0) Fail("fs request", "vnode 0 accepted");
      if (req->data.size() > kFsMaxIo || (op != FsOp::kWrite && !req->data.empty()))
        Fail("fs request", "bad data accepted");
    }
    auto rep = CheckCodec(
        in, "fs reply", [&](std::span<const uint8_t> b) { return DecodeFsReply(op, b); },
        [&](const FsReply& m) { return EncodeFsReply(op, m); });
    if (rep.ok() && (rep->f.err < 0 || rep->f.err > static_cast<int32_t>(kFsMaxErrno)))
      Fail("fs reply", "errno out of range accepted");
    if (op == FsOp::kRead) {
      // The decoder into a caller's buffer accepts exactly what DecodeFsReply accepts, and copies the same
      // data (cut to the buffer's size, never past it).
      uint8_t dst[64];
      size_t n = 0;
      auto into = DecodeFsReadReplyInto(in, std::span(dst, sizeof dst), &n);
      if (into.ok() != rep.ok()) Fail("fs read reply into", "accepts what DecodeFsReply does not, or back");
      if (into.ok() && (n != std::min(rep->data.size(), sizeof dst) || into->f.err != rep->f.err ||
                        (n > 0 && std::memcmp(dst, rep->data.data(), n) != 0)))
        Fail("fs read reply into", "data differs from DecodeFsReply's");
    }
  }
  (void)FsOpFromOpcode(in.size() >= 2 ? static_cast<uint16_t>(in[0] | in[1] << 8) : 0);

  // vNode messages (C2G, C2P).
  auto vrec = CheckCodec(in, "vnode record", DecodeVnodeRecord, EncodeVnodeRecord);
  if (vrec.ok() && !ValidateVnodeName(vrec->name).ok()) Fail("vnode record", "bad name accepted");
  (void)CheckCodec(in, "c2g.vnode_list reply", DecodeVnodeList, EncodeVnodeList);
  (void)CheckCodec(in, "c2g.vnode_create", DecodeVnodeCreateReq, EncodeVnodeCreateReq);
  (void)CheckCodec(in, "c2g.vnode_lookup", DecodeVnodeLookupReq, EncodeVnodeLookupReq);
  (void)CheckCodec(in, "c2p.attach_vnode", DecodeAttachVnodeReq, EncodeAttachVnodeReq);
  (void)CheckCodec(in, "c2p.attach_vnode reply", DecodeAttachVnodeResp, EncodeAttachVnodeResp);
  (void)DecodeFixed<SmonVnodeReq>(in, "g2s.vnode_create");
  (void)DecodeFixed<DetachVnodeReq>(in, "c2p.detach_vnode");

  // The local HELLO (program -> pmon): strings always terminated, errors only with a reason.
  auto hello = DecodeLocalHello(in);
  if (hello.error == 0 && in.size() < sizeof(lego_local_hdr) + sizeof(lego_local_hello))
    Fail("local.hello", "short packet accepted");
  if (hello.error != 0 && hello.why.empty()) Fail("local.hello", "refused without a reason");
  if (std::strlen(hello.body.job) >= sizeof hello.body.job ||
      std::strlen(hello.body.comm) >= sizeof hello.body.comm)
    Fail("local.hello", "unterminated string");
  int32_t ack_status;
  (void)DecodeDropAck(in, 1, &ack_status);

  // The receiver's verdict on an AM header: the first byte picks the header length (so that short and long
  // headers are explored), the next 24 bytes are the header, the rest stands for the payload that arrived.
  if (!in.empty()) {
    size_t header_len = in[0] % (sizeof(MsgHeader) + 8);
    auto rest = in.subspan(1);
    auto header = rest.first(std::min(header_len, rest.size()));
    size_t arrived = rest.size() - header.size();
    for (uint32_t max_payload : {0u, 16u, kDefaultMaxPayload}) {
      auto check = ValidateHeader(header, arrived, max_payload);
      if (check.verdict == HeaderVerdict::kAccept) {
        if (header.size() != sizeof(MsgHeader)) Fail("ValidateHeader", "accepted a header of the wrong size");
        if (check.hdr.magic != kMagic || check.hdr.version != kProtocolVersion)
          Fail("ValidateHeader", "accepted a bad magic or version");
        if (check.hdr.payload_len != arrived || arrived > max_payload)
          Fail("ValidateHeader", "accepted a payload length that does not match or is too large");
      } else if (check.problem.empty()) {
        Fail("ValidateHeader", "refused without saying why");
      }
    }
    int32_t status = 0;
    std::memcpy(&status, rest.data(), std::min(sizeof(status), rest.size()));
    auto code = ReplyStatus(status);
    if (static_cast<int32_t>(code) < 0 || code > StatusCode::kBusy) Fail("ReplyStatus", "out of range code");
  }
}

void FuzzTextParsers(std::span<const uint8_t> in) {
  std::string_view text(reinterpret_cast<const char*>(in.data()), in.size());

  auto size = ParseSize(text);
  if (size.ok()) {
    if (FormatBytes(size.value()).empty()) Fail("ParseSize", "FormatBytes gave an empty string");
  } else if (size.status().code() != StatusCode::kInvalidArgument) {
    Fail("ParseSize", "rejected with a code other than InvalidArgument:", size.status().ToString());
  }

  for (bool allow_zero : {false, true}) {
    auto hp = ParseHostPort(text, allow_zero);
    if (!hp.ok()) {
      if (hp.status().code() != StatusCode::kInvalidArgument)
        Fail("ParseHostPort", "rejected with a code other than InvalidArgument:", hp.status().ToString());
      continue;
    }
    if (hp->host.empty()) Fail("ParseHostPort", "accepted an empty host:", text);
    if (hp->port == 0 && !allow_zero) Fail("ParseHostPort", "accepted port 0:", text);
    std::string again_text = hp->ToString();
    auto again = ParseHostPort(again_text, allow_zero);
    if (!again.ok()) Fail("ParseHostPort", "ToString() does not parse back:", again_text);
    if (again->host != hp->host || again->port != hp->port)
      Fail("ParseHostPort", "ToString() parses back to another address:", again_text);
  }
}

}  // namespace
}  // namespace lego::proto

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::span<const uint8_t> in(data, size);
  lego::proto::FuzzPayloadDecoders(in);
  lego::proto::FuzzTextParsers(in);
  return 0;
}
