// X2G (0x01xx) and C2G (0x02xx) messages: membership between monitors and the global manager, and the
// queries the CLI makes. See docs/protocol.md, "X2G" and "C2G".
#pragma once

#include <string>
#include <vector>

#include "protocol/codec.h"

namespace lego::proto {

enum class ComponentKind : uint8_t {
  kUnknown = 0,
  kGm = 1,    // global manager (GPM + GMM + GSM)
  kPmon = 2,  // process monitor
  kMmon = 3,  // memory monitor
  kSmon = 4,  // storage monitor
};
std::string_view ComponentKindName(ComponentKind k);  // "gm", "pmon", "mmon", "smon", "unknown"
bool ParseComponentKind(std::string_view s, ComponentKind* out);

enum class MemberState : uint8_t {
  kAlive = 1,  // heartbeats arriving
  kDead = 2,   // missed heartbeats; a re-register makes it alive again
  kLeft = 3,   // deregistered cleanly (SIGTERM)
};
std::string_view MemberStateName(MemberState s);

// kRegister request: fixed part, then string listen_addr ("HOST:PORT"), then string name: the member's
// stable identity (kept in its data dir), so that a restarted member gets its old id back even if it
// listens on a new port. An empty name falls back to matching by kind and listen_addr.
struct RegisterFixed {
  uint8_t kind;           // ComponentKind
  uint8_t reserved0;      // 0
  uint16_t metrics_port;  // Prometheus HTTP port on the same host, 0 if none
  uint32_t pid;
  uint64_t capacity_bytes;  // memory pool (mmon), ExCache (pmon), disk quota (smon); 0 if none
  uint64_t used_bytes;
};
static_assert(sizeof(RegisterFixed) == 24);
struct RegisterReq {
  RegisterFixed fixed{};
  std::string listen_addr;
  std::string name;
};
Bytes EncodeRegisterReq(const RegisterReq& m);
Result<RegisterReq> DecodeRegisterReq(std::span<const uint8_t> payload);

// kRegister reply.
struct RegisterResp {
  uint32_t id;                     // member id, stable across restarts at the same kind and address
  uint32_t incarnation;            // bumps on every (re-)registration of that id
  uint32_t heartbeat_interval_ms;  // how often the member must heartbeat
  uint32_t reserved;
};
static_assert(sizeof(RegisterResp) == 16);

// kHeartbeat request; the reply is empty (status kUnknownMember tells the member to register again).
struct HeartbeatReq {
  uint32_t id;
  uint32_t incarnation;
  uint64_t capacity_bytes;
  uint64_t used_bytes;
};
static_assert(sizeof(HeartbeatReq) == 24);

// kDeregister request (sent on clean shutdown); the reply is empty.
struct DeregisterReq {
  uint32_t id;
  uint32_t incarnation;
};
static_assert(sizeof(DeregisterReq) == 8);

// kListMembers: empty request; reply u32 count, then count x {MemberFixed, string listen_addr, string name}.
struct MemberFixed {
  uint32_t id;
  uint8_t kind;   // ComponentKind
  uint8_t state;  // MemberState
  uint16_t metrics_port;
  uint32_t pid;
  uint32_t incarnation;
  uint64_t capacity_bytes;
  uint64_t used_bytes;
  int64_t joined_unix_ms;         // wall clock of the last registration
  int64_t last_heartbeat_age_ms;  // ms since the gm last heard from it
};
static_assert(sizeof(MemberFixed) == 48);
struct MemberRecord {
  MemberFixed fixed{};
  std::string listen_addr;
  std::string name;
};
inline constexpr uint32_t kMaxMembers = 65536;
Bytes EncodeMemberList(const std::vector<MemberRecord>& members);
Result<std::vector<MemberRecord>> DecodeMemberList(std::span<const uint8_t> payload);

// kAssignRegion request: the owner of vRegion `region` (= vaddr >> 30) of address space `space`, assigned
// on first ask. Reply: AssignRegionResp then string mmon_addr. kOutOfMemory if no alive mmon has room.
struct AssignRegionReq {
  uint64_t space;
  uint64_t region;
};
static_assert(sizeof(AssignRegionReq) == 16);
struct AssignRegionResp {
  uint32_t mmon_id;
  uint32_t reserved;
  std::string mmon_addr;
};
Bytes EncodeAssignRegionResp(const AssignRegionResp& m);
Result<AssignRegionResp> DecodeAssignRegionResp(std::span<const uint8_t> payload);

// kReleaseSpace request: u64 space. Empty reply.
struct ReleaseSpaceReq {
  uint64_t space;
};
static_assert(sizeof(ReleaseSpaceReq) == 8);

// kForkSpace request (X2G): the child's vRegions are assigned where the parent's are. Empty reply.
struct ForkSpaceReq {
  uint64_t parent;
  uint64_t child;
};
static_assert(sizeof(ForkSpaceReq) == 16);

}  // namespace lego::proto
