// P2M (0x03xx) messages: a process monitor reading and writing the pages of an address space kept by a
// memory monitor. See docs/protocol.md, "P2M". Batches carry at most kMaxPagesPerRequest pages.
#pragma once

#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

#include "protocol/codec.h"

namespace lego::proto {

inline constexpr uint32_t kPageBytes = 4096;
inline constexpr uint32_t kMaxPagesPerRequest = 256;  // 1 MiB of page data

// kWritePages request: fixed part, count x u64 vaddr, count x 4096 bytes of data. Empty reply;
// kOutOfMemory if the pages do not fit (none is stored).
struct PagesFixed {
  uint64_t space;  // address space id chosen by the pmon
  uint32_t count;  // 1..kMaxPagesPerRequest
  uint32_t reserved;
};
static_assert(sizeof(PagesFixed) == 16);

struct WritePagesReq {
  uint64_t space = 0;
  std::vector<uint64_t> vaddrs;   // page aligned
  std::span<const uint8_t> data;  // vaddrs.size() * kPageBytes; points into the decoded payload
};
Bytes EncodeWritePages(uint64_t space, std::span<const uint64_t> vaddrs, std::span<const uint8_t> data);
Result<WritePagesReq> DecodeWritePages(std::span<const uint8_t> payload);

// kReadPages request: fixed part, count x u64 vaddr. Reply: u32 count, u32 reserved, count x u8 present
// (1 if the page was ever written), then 4096 bytes for each present page, in order.
struct ReadPagesReq {
  uint64_t space = 0;
  std::vector<uint64_t> vaddrs;
};
Bytes EncodeReadPages(uint64_t space, std::span<const uint64_t> vaddrs);
Result<ReadPagesReq> DecodeReadPages(std::span<const uint8_t> payload);

struct ReadPagesResp {
  std::vector<uint8_t> present;
  std::span<const uint8_t> data;  // popcount(present) * kPageBytes; points into the decoded payload
};
Result<ReadPagesResp> DecodeReadPagesResp(std::span<const uint8_t> payload);

// kFreeRange request (munmap of a range); reply FreedResp.
struct FreeRangeReq {
  uint64_t space;
  uint64_t start;
  uint64_t length;
};
static_assert(sizeof(FreeRangeReq) == 24);

// kDestroySpace request (process exit); reply FreedResp.
struct DestroySpaceReq {
  uint64_t space;
};
static_assert(sizeof(DestroySpaceReq) == 8);

// Address-space ids: a tag of the creating pmon in the top kSpaceTagBits bits, random below. The tag is a
// hash of the pmon's name (PmonTag), which the pmon keeps in its data dir: so the spaces of a pmon that never
// comes back can be found on every mmon from its name alone (`lego reclaim`; decision 008), whatever the gm
// remembers. Two pmon names may share a tag (1 in 2^24 per pair); `lego reclaim` refuses while another alive
// pmon has the tag.
inline constexpr int kSpaceTagBits = 24;
inline constexpr int kSpaceTagShift = 64 - kSpaceTagBits;
inline constexpr uint32_t SpaceTag(uint64_t space) { return static_cast<uint32_t>(space >> kSpaceTagShift); }
// FNV-1a of the name, folded to kSpaceTagBits bits; never 0 (0 would be "no pmon").
inline constexpr uint32_t PmonTag(std::string_view name) {
  uint32_t h = 2166136261u;
  for (char c : name) h = (h ^ static_cast<uint8_t>(c)) * 16777619u;
  const uint32_t tag = (h >> kSpaceTagBits) ^ (h & ((1u << kSpaceTagBits) - 1));
  return tag == 0 ? 1 : tag;
}
// The id of a space made by the pmon whose tag is `tag`, from 64 random bits (the low ones; never 0 below).
inline constexpr uint64_t MakeSpaceId(uint32_t tag, uint64_t random) {
  const uint64_t low = random & ((uint64_t{1} << kSpaceTagShift) - 1);
  return uint64_t{tag & ((1u << kSpaceTagBits) - 1)} << kSpaceTagShift | (low == 0 ? 1 : low);
}

// kDestroyTaggedSpaces request (the CLI, for a pmon that is gone): the mmon frees every address space whose
// id carries `tag` (SpaceTag), as kDestroySpace each; reply FreedResp (the pages freed). kReleaseTaggedSpaces
// (C2G) takes the same request: the gm forgets those spaces' vRegions; empty reply.
struct TaggedSpacesReq {
  uint32_t tag;       // PmonTag of the pmon's name; not 0, below 2^kSpaceTagBits
  uint32_t reserved;  // 0
};
static_assert(sizeof(TaggedSpacesReq) == 8);
// BadMessage unless tag is in [1, 2^kSpaceTagBits) and reserved is 0; `what` names the message.
inline Status CheckTaggedSpacesReq(const TaggedSpacesReq& req, const char* what) {
  if (req.tag == 0 || req.tag >= (1u << kSpaceTagBits) || req.reserved != 0)
    return BadMessage(fmt::format("{}: tag must be in [1, 2^{}), reserved must be 0", what, kSpaceTagBits));
  return Status::Ok();
}

struct FreedResp {
  uint64_t pages_freed;
};
static_assert(sizeof(FreedResp) == 8);

// kCopySpace request (fork): the mmon gives `child` every page of `parent`, sharing them copy-on-write.
// Reply FreedResp (pages_freed = pages the child got). kAlreadyExists if the child has pages.
struct CopySpaceReq {
  uint64_t parent;
  uint64_t child;
};
static_assert(sizeof(CopySpaceReq) == 16);

}  // namespace lego::proto
