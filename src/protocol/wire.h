// The Lego wire format: the one header every message carries, the opcode scheme, and protocol limits.
// docs/protocol.md is the byte-by-byte description of everything here; change both together.
//
// Opcode scheme (uint16): the high byte names the component pair, as LegoOS's P2M/P2S/M2S prefixes do:
//   0x00  ANY  any endpoint to any endpoint (hello, ping, stats)
//   0x01  X2G  any monitor to the global manager (membership)
//   0x02  C2G  the CLI (or any client) to the global manager (queries)
//   0x03  P2M  process monitor to memory monitor      (page store: read, write, free, destroy)
//   0x04  FS   file requests on a vNode (protocol/fs.h): pmon to the vNode's buffer-cache mmon (P2M leg),
//              which forwards them unchanged to the vNode's smon (M2S leg)
//   0x05  M2S  memory monitor to storage monitor      (reserved)
//   0x06  G2X  global manager to a monitor            (vNode namespaces on smons; later recovery)
// All integers are little-endian. Layouts are fixed and pinned below with static_assert.
#pragma once

#include <bit>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>

#include "common/status.h"

namespace lego::proto {

static_assert(std::endian::native == std::endian::little, "Lego's wire format assumes a little-endian host");

inline constexpr uint32_t kMagic = 0x4F47454C;  // "LEGO" read as little-endian bytes 'L','E','G','O'
// 2: routes (HelloMsg.route, MsgHeader.status); 3: c2p.list_processes records carry killed_why;
// 4: reply status 14 (Busy)
inline constexpr uint8_t kProtocolVersion = 4;
inline constexpr uint32_t kDefaultMaxPayload = 8u << 20;  // 8 MiB; larger messages are rejected
inline constexpr size_t kMaxStringLen = 4096;             // every length-prefixed string on the wire

enum class MsgKind : uint8_t {
  kRequest = 1,  // expects exactly one reply with the same request_id
  kReply = 2,    // answers a request; status says whether it succeeded
  kOneWay = 3,   // no reply
};

enum Opcode : uint16_t {
  // ANY
  kHello = 0x0001,      // first request on every new connection: checks the protocol version
  kPing = 0x0002,       // empty request, empty reply: liveness and latency
  kGetStats = 0x0003,   // counters of the receiving daemon
  kEcho = 0x0004,       // reply carries the request payload (benchmarks, tests)
  kEchoSized = 0x0005,  // reply carries EchoSizedReq.reply_bytes bytes (benchmarks)
  // X2G
  kRegister = 0x0101,
  kHeartbeat = 0x0102,
  kDeregister = 0x0103,
  kAssignRegion = 0x0104,  // pmon: which mmon owns this vRegion (GMM)
  kReleaseSpace = 0x0105,  // pmon: the address space is gone; forget its vRegions
  kForkSpace = 0x0106,     // pmon: a forked child's space starts with its parent's vRegion owners
  // C2G
  kListMembers = 0x0201,
  kVnodeCreate = 0x0202,          // create a vNode (name, smon) and place its storage (GSM)
  kVnodeList = 0x0203,            // every vNode with its placement
  kVnodeRemove = 0x0204,          // forget a vNode and delete its files on the smon
  kVnodeLookup = 0x0205,          // one vNode by name or id, with its smon's and cache mmon's addresses
  kReleaseTaggedSpaces = 0x0206,  // `lego reclaim`: forget the vRegions of a gone pmon's address spaces
  // P2M
  kWritePages = 0x0301,
  kReadPages = 0x0302,
  kFreeRange = 0x0303,
  kDestroySpace = 0x0304,
  kCopySpace = 0x0305,            // copy-on-write fork of an address space
  kDestroyTaggedSpaces = 0x0306,  // `lego reclaim`: free every address space a (gone) pmon created
  // FS (0x04xx): one opcode per protocol/fs.h FsOp, kFsGetattr + (op - 1)
  kFsGetattr = 0x0401,
  kFsCreate = 0x0402,
  kFsRead = 0x0403,
  kFsWrite = 0x0404,
  kFsSetattr = 0x0405,
  kFsReaddir = 0x0406,
  kFsMkdir = 0x0407,
  kFsRmdir = 0x0408,
  kFsUnlink = 0x0409,
  kFsRename = 0x040A,
  kFsFsync = 0x040B,
  kFsStatfs = 0x040C,
  // G2X (0x06xx)
  kSmonVnodeCreate = 0x0601,  // gm to smon: make the vNode's (empty) namespace
  kSmonVnodeRemove = 0x0602,  // gm to smon: delete the vNode's namespace and every file in it
  // C2P (0x07xx): the CLI asking a process monitor
  kListProcesses = 0x0701,  // processes running under the pmon, with their memory statistics
  kAttachVnode = 0x0702,    // `lego run`: mount a vNode for a job and say where
  kDetachVnode = 0x0703,    // `lego vnode rm`: unmount a removed vNode
};

std::string_view OpcodeName(uint16_t opcode);

// Carried in the UCX active-message header of every message; the payload travels as the AM data.
struct MsgHeader {
  uint32_t magic;        // kMagic
  uint8_t version;       // sender's kProtocolVersion
  uint8_t kind;          // MsgKind
  uint16_t opcode;       // Opcode; a reply repeats its request's opcode
  uint64_t request_id;   // chosen by the requester, unique per sending endpoint; 0 for one-way
  uint32_t payload_len;  // bytes of AM data that follow; must equal what arrived
  // Replies: lego::StatusCode. Requests and one-way: the connection's route from the hello reply, read as
  // a u32 (protocol.md, "Routes"), or 0 when the message travels with UCX's reply endpoint instead.
  int32_t status;
};
static_assert(sizeof(MsgHeader) == 24);
static_assert(offsetof(MsgHeader, magic) == 0);
static_assert(offsetof(MsgHeader, version) == 4);
static_assert(offsetof(MsgHeader, kind) == 5);
static_assert(offsetof(MsgHeader, opcode) == 6);
static_assert(offsetof(MsgHeader, request_id) == 8);
static_assert(offsetof(MsgHeader, payload_len) == 16);
static_assert(offsetof(MsgHeader, status) == 20);

// What the receiver does with an arriving message, decided from its AM header alone (pure: fuzzed).
enum class HeaderVerdict {
  kAccept,  // well-formed: dispatch (requests, one-way) or complete the call (replies)
  kDrop,    // not a Lego message (wrong header size or magic): count, log, no reply possible
  kReject,  // a Lego message we refuse: reply `code` to a request, fail the call of a reply, drop one-way
};
struct HeaderCheck {
  HeaderVerdict verdict = HeaderVerdict::kDrop;
  StatusCode code = StatusCode::kBadMessage;
  std::string problem;  // for the log line and the error reply
  MsgHeader hdr{};      // valid unless verdict == kDrop
};
HeaderCheck ValidateHeader(std::span<const uint8_t> am_header, size_t payload_arrived, uint32_t max_payload);

// The StatusCode carried by a reply; a value outside the known codes becomes kBadMessage.
StatusCode ReplyStatus(int32_t wire_status);

}  // namespace lego::proto
