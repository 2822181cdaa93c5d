#include "protocol/p2m.h"

#include <fmt/format.h>

namespace lego::proto {
namespace {

Status CheckCount(uint32_t count, const char* what) {
  if (count == 0 || count > kMaxPagesPerRequest)
    return BadMessage(fmt::format("{}: count {} not in 1..{}", what, count, kMaxPagesPerRequest));
  return Status::Ok();
}

Status ReadVaddrs(Reader& r, uint32_t count, std::vector<uint64_t>* out, const char* what) {
  out->resize(count);
  for (auto& v : *out) {
    LEGO_RETURN_IF_ERROR(r.Get(&v, "vaddr"));
    if (v % kPageBytes != 0) return BadMessage(fmt::format("{}: vaddr {:#x} is not page aligned", what, v));
  }
  return Status::Ok();
}

// PagesFixed then count x u64 vaddr: the head of both page requests.
void PutPagesHead(Writer& w, uint64_t space, std::span<const uint64_t> vaddrs) {
  w.Put(PagesFixed{space, static_cast<uint32_t>(vaddrs.size()), 0});
  for (uint64_t v : vaddrs) w.Put(v);
}

Status GetPagesHead(Reader& r, uint64_t* space, std::vector<uint64_t>* vaddrs, const char* what) {
  PagesFixed f{};
  LEGO_RETURN_IF_ERROR(r.Get(&f, "fixed"));
  LEGO_RETURN_IF_ERROR(CheckCount(f.count, what));
  *space = f.space;
  return ReadVaddrs(r, f.count, vaddrs, what);
}

}  // namespace

Bytes EncodeWritePages(uint64_t space, std::span<const uint64_t> vaddrs, std::span<const uint8_t> data) {
  Writer w;
  PutPagesHead(w, space, vaddrs);
  w.PutBytes(data);
  return w.Take();
}

Result<WritePagesReq> DecodeWritePages(std::span<const uint8_t> payload) {
  const char* what = "p2m.write_pages";
  Reader r(payload, what);
  WritePagesReq m;
  LEGO_RETURN_IF_ERROR(GetPagesHead(r, &m.space, &m.vaddrs, what));
  const size_t want = m.vaddrs.size() * kPageBytes;
  if (r.remaining() != want)
    return BadMessage(
        fmt::format("{}: {} bytes of page data for {} pages", what, r.remaining(), m.vaddrs.size()));
  m.data = payload.subspan(payload.size() - want);
  return m;
}

Bytes EncodeReadPages(uint64_t space, std::span<const uint64_t> vaddrs) {
  Writer w;
  PutPagesHead(w, space, vaddrs);
  return w.Take();
}

Result<ReadPagesReq> DecodeReadPages(std::span<const uint8_t> payload) {
  const char* what = "p2m.read_pages";
  Reader r(payload, what);
  ReadPagesReq m;
  LEGO_RETURN_IF_ERROR(GetPagesHead(r, &m.space, &m.vaddrs, what));
  LEGO_RETURN_IF_ERROR(r.Finish());
  return m;
}

Result<ReadPagesResp> DecodeReadPagesResp(std::span<const uint8_t> payload) {
  const char* what = "p2m.read_pages reply";
  Reader r(payload, what);
  uint32_t count = 0, reserved = 0;
  LEGO_RETURN_IF_ERROR(r.Get(&count, "count"));
  LEGO_RETURN_IF_ERROR(r.Get(&reserved, "reserved"));
  LEGO_RETURN_IF_ERROR(CheckCount(count, what));
  ReadPagesResp m;
  m.present.resize(count);
  size_t present = 0;
  for (auto& p : m.present) {
    LEGO_RETURN_IF_ERROR(r.Get(&p, "present"));
    if (p > 1) return BadMessage(fmt::format("{}: present flag {}", what, p));
    present += p;
  }
  if (r.remaining() != present * kPageBytes)
    return BadMessage(
        fmt::format("{}: {} bytes of page data for {} present pages", what, r.remaining(), present));
  m.data = payload.subspan(payload.size() - present * kPageBytes);
  return m;
}

}  // namespace lego::proto
