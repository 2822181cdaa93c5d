// vNode messages: C2G 0x0202-0x0205 (create, list, remove, look up a vNode: LegoOS's GSM, in lego-gm) and
// G2S 0x0601-0x0602 (the gm making or deleting a vNode's namespace on its smon). See docs/protocol.md,
// "vNodes".
//
// A vNode is a user's virtual node: an id (gm-assigned, nonzero, never reused), a name, the smon that keeps
// its files, and the mmon whose buffer cache serves them (its "cache home": every FS request of the vNode
// goes through that one mmon, which keeps the cache coherent).
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "protocol/codec.h"

namespace lego::proto {

inline constexpr size_t kMaxVnodeName = 64;
inline constexpr uint32_t kMaxVnodes = 65536;
inline constexpr std::string_view kDefaultVnodeName = "default";

// OK if `name` is 1..kMaxVnodeName of [A-Za-z0-9._-] and does not start with '.' or '-'.
Status ValidateVnodeName(std::string_view name);

struct VnodeFixed {
  uint32_t id;
  uint32_t smon_id;        // member id of the smon keeping the files
  uint32_t cache_mmon_id;  // member id of the buffer-cache mmon (0: none alive when last asked)
  uint8_t smon_alive;      // 1 if the smon is alive now
  uint8_t mmon_alive;      // 1 if the cache mmon is alive now
  uint16_t reserved;
  int64_t created_unix_ms;
};
static_assert(sizeof(VnodeFixed) == 24);

// One vNode on the wire: VnodeFixed, then strings name, smon_addr, mmon_addr (addresses may be empty).
struct VnodeRecord {
  VnodeFixed fixed{};
  std::string name;
  std::string smon_addr;
  std::string mmon_addr;
};
Bytes EncodeVnodeRecord(const VnodeRecord& v);
Result<VnodeRecord> DecodeVnodeRecord(std::span<const uint8_t> payload);

// kVnodeCreate request: u32 smon_id (0: the gm chooses the alive smon with the fewest vNodes), u32 reserved,
// string name. Reply: a VnodeRecord. kAlreadyExists, kInvalidArgument (name), kNotFound (no such alive smon).
struct VnodeCreateReq {
  uint32_t smon_id = 0;
  std::string name;
};
Bytes EncodeVnodeCreateReq(const VnodeCreateReq& m);
Result<VnodeCreateReq> DecodeVnodeCreateReq(std::span<const uint8_t> payload);

// kVnodeList: empty request. Reply: u32 count, then count VnodeRecords.
Bytes EncodeVnodeList(const std::vector<VnodeRecord>& list);
Result<std::vector<VnodeRecord>> DecodeVnodeList(std::span<const uint8_t> payload);

// kVnodeRemove request: string name. Empty reply once the smon deleted the files and the gm forgot the vNode.
// kNotFound; kPeerUnreachable/kTimeout if the smon could not delete (the vNode is kept).
// kVnodeLookup request: u32 id (0: look up by name), u32 flags (kVnodeLookupCreateDefault: create the vNode
// named "default" if it is missing), string name. Reply: a VnodeRecord. kNotFound.
inline constexpr uint32_t kVnodeLookupCreateDefault = 1;
struct VnodeLookupReq {
  uint32_t id = 0;
  uint32_t flags = 0;
  std::string name;
};
Bytes EncodeVnodeLookupReq(const VnodeLookupReq& m);
Result<VnodeLookupReq> DecodeVnodeLookupReq(std::span<const uint8_t> payload);

// kSmonVnodeCreate / kSmonVnodeRemove request (gm to smon). Empty reply.
struct SmonVnodeReq {
  uint32_t vnode;
  uint32_t reserved;
};
static_assert(sizeof(SmonVnodeReq) == 8);

}  // namespace lego::proto
