// FS (0x04xx) messages: file requests on a vNode's storage. See docs/protocol.md, "FS".
//
// Every request is stateless, as in LegoOS: it names the vNode, a path and an offset, never an open file.
// One request layout serves every operation (the opcode says which); one reply layout answers them all.
// The pmon's FUSE mount sends them to the vNode's buffer-cache home (an mmon), which answers reads from its
// cache and forwards the rest to the vNode's smon with the same opcodes and layouts (the M2S leg). So a
// request's path is always checked by the smon, the only component that touches a file system.
//
// Paths on the wire are relative to the vNode's root: components separated by one '/', no leading or
// trailing '/', no empty, "." or ".." component, no NUL, each component at most kFsMaxName bytes, the
// whole at most kFsMaxPath bytes. The empty path is the vNode's root. ValidateFsPath checks all of it; the
// decoder applies it, so a handler never sees a bad path.
//
// File-system errors travel as positive Linux errno values in FsReply::err (the wire uses Linux's
// numbering; Lego runs on Linux only). The header's status stays kOk for them: a non-kOk status means the
// request did not run as asked (bad message, timeout, unknown opcode) and the pmon reports EIO.
#pragma once

#include <cstdint>
#include <ctime>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"
#include "protocol/codec.h"

namespace lego::proto {

inline constexpr uint32_t kFsMaxIo = 1u << 20;  // largest read or write in one request
inline constexpr size_t kFsMaxPath = 4095;      // PATH_MAX - 1
inline constexpr size_t kFsMaxName = 255;       // NAME_MAX
inline constexpr uint32_t kFsMaxErrno = 4095;   // largest errno value accepted in a reply

// Opcodes (wire.h's Opcode enum repeats them): kFsGetattr + (FsOp - 1).
enum class FsOp : uint16_t {
  kGetattr = 1,  // path -> attr (lstat)
  kCreate = 2,   // path, mode, flags(kFsExclusive) -> attr; creates a regular file (O_CREAT[|O_EXCL])
  kRead = 3,     // path, offset, length -> data (short or empty at end of file)
  kWrite = 4,    // path, offset, data, flags (kFsWriteSync, kFsDataSync) -> value = bytes written, attr
  kSetattr = 5,  // path, valid (kFsSet*), mode, uid, gid, length (new size), atime_ns, mtime_ns -> attr
  kReaddir = 6,  // path, offset (cookie: 0 first, then the reply's value) -> entries, value = next cookie
  kMkdir = 7,    // path, mode -> attr
  kRmdir = 8,    // path
  kUnlink = 9,   // path
  kRename = 10,  // path -> path2, flags (Linux RENAME_NOREPLACE = 1, RENAME_EXCHANGE = 2)
  kFsync = 11,   // path, flags (kFsDataSync): the file's data and its directory entry are durable
  kStatfs = 12,  // -> statfs
};
inline constexpr uint16_t kFsOpCount = 12;
std::string_view FsOpName(FsOp op);

// FsRequest.flags bits.
inline constexpr uint32_t kFsExclusive = 1;  // kCreate: fail with EEXIST if the path exists
inline constexpr uint32_t kFsDataSync = 1;   // kFsync, and kWrite with kFsWriteSync: fdatasync semantics
// kWrite: once all of data is written, make the file durable as kFsync does (one round trip instead of two
// for a buffer cache that flushes a file for an fsync).
inline constexpr uint32_t kFsWriteSync = 2;
// FsRequest.valid bits for kSetattr.
inline constexpr uint32_t kFsSetMode = 1;
inline constexpr uint32_t kFsSetUid = 2;
inline constexpr uint32_t kFsSetGid = 4;
inline constexpr uint32_t kFsSetSize = 8;
inline constexpr uint32_t kFsSetAtime = 16;
inline constexpr uint32_t kFsSetMtime = 32;
inline constexpr uint32_t kFsSetAtimeNow = 64;
inline constexpr uint32_t kFsSetMtimeNow = 128;
inline constexpr uint32_t kFsSetAll = 255;

// The fixed part of every FS request; then path (u16 length + bytes), path2 (same; empty unless kRename),
// then the data of a kWrite (the rest of the payload).
struct FsReqFixed {
  uint32_t vnode;   // vNode id (gm-assigned, nonzero)
  uint32_t flags;   // per op, above
  uint64_t offset;  // kRead, kWrite, kReaddir
  uint64_t length;  // kRead: bytes wanted (<= kFsMaxIo); kSetattr: new size
  uint32_t mode;    // kCreate, kMkdir, kSetattr: permission bits (and, for kSetattr, nothing else)
  uint32_t valid;   // kSetattr: kFsSet* bits
  uint32_t uid;     // kSetattr
  uint32_t gid;     // kSetattr
  int64_t atime_ns;
  int64_t mtime_ns;
  // kCreate, kMkdir, kRmdir, kUnlink, kRename (FsOpIdempotent false): the sender's id for this operation, the
  // same each time it is sent again, or 0 for none. The smon runs a request with an id once and answers a
  // repeat of it from its duplicate-request cache (src/smon/duplicate_request_cache.h), so that the pmon may
  // send it again after a dead connection. Ignored for the other ops.
  uint64_t request_id;
};
static_assert(sizeof(FsReqFixed) == 64);
static_assert(offsetof(FsReqFixed, offset) == 8);
static_assert(offsetof(FsReqFixed, mode) == 24);
static_assert(offsetof(FsReqFixed, atime_ns) == 40);
static_assert(offsetof(FsReqFixed, request_id) == 56);

struct FsRequest {
  FsOp op = FsOp::kGetattr;
  FsReqFixed f{};
  std::string path;
  std::string path2;
  std::span<const uint8_t> data;  // kWrite; points into the decoded payload (or the caller's buffer)
};

// File attributes (what lstat gives).
struct FsAttr {
  uint64_t ino;
  uint64_t size;
  uint64_t blocks;  // 512-byte blocks
  uint32_t mode;    // type and permission bits (S_IFREG | 0644 ...)
  uint32_t nlink;
  uint32_t uid;
  uint32_t gid;
  int64_t atime_ns;
  int64_t mtime_ns;
  int64_t ctime_ns;
};
static_assert(sizeof(FsAttr) == 64);

// The fixed part of every FS reply; then, by op: kRead the data; kReaddir `count` entries (u64 ino, u32
// mode (type bits only), u16 name length, name); kStatfs one FsStatfs.
struct FsReplyFixed {
  int32_t err;     // 0 or a positive Linux errno
  uint32_t flags;  // kFsReplyAttr: attr is filled; kFsReplyEof: kReaddir reached the end
  uint64_t value;  // kWrite: bytes written; kReaddir: next cookie; else 0
  uint32_t count;  // kReaddir: entries that follow
  uint32_t reserved;
  FsAttr attr;
};
static_assert(sizeof(FsReplyFixed) == 88);
inline constexpr uint32_t kFsReplyAttr = 1;
inline constexpr uint32_t kFsReplyEof = 2;
// The smon answered from its duplicate-request cache: the request (same request_id) had run before, through
// whichever mmon forwarded its first copy. A cache on the way must not act on it again (it may drop data
// written since).
inline constexpr uint32_t kFsReplyReplayed = 4;

struct FsStatfs {
  uint64_t blocks;  // in units of bsize
  uint64_t bfree;
  uint64_t bavail;
  uint64_t files;
  uint64_t ffree;
  uint32_t bsize;
  uint32_t namemax;
};
static_assert(sizeof(FsStatfs) == 48);

// A time of the wire (nanoseconds since the epoch, possibly negative) as a struct timespec.
inline timespec FsTimespec(int64_t ns) {
  int64_t sec = ns / 1000000000;
  int64_t rem = ns % 1000000000;
  if (rem < 0) {
    rem += 1000000000;
    --sec;
  }
  return timespec{static_cast<time_t>(sec), static_cast<long>(rem)};
}

struct FsDirEntry {
  uint64_t ino = 0;
  uint32_t mode = 0;  // S_IFMT bits
  std::string name;
};

struct FsReply {
  FsReplyFixed f{};
  Bytes data;                       // kRead
  std::vector<FsDirEntry> entries;  // kReaddir
  FsStatfs statfs{};                // kStatfs

  static FsReply Errno(int err) {
    FsReply r;
    r.f.err = err;
    return r;
  }
  int err() const { return f.err; }
};

// Whether running the request twice gives the same result as running it once (getattr, read, write, setattr,
// readdir, fsync, statfs): such a request may be sent again freely. Create, mkdir, rmdir, unlink and rename
// may not (a second run answers EEXIST or ENOENT for work the first did) unless they carry a request_id.
bool FsOpIdempotent(FsOp op);

uint16_t FsOpcode(FsOp op);
// The FsOp of an FS opcode, or an error for anything else.
Result<FsOp> FsOpFromOpcode(uint16_t opcode);

// OK, or kInvalidArgument naming what is wrong. `errno_out` (optional) gets the errno a file system would
// give (ENAMETOOLONG for long names or paths, EINVAL otherwise).
Status ValidateFsPath(std::string_view path, int* errno_out = nullptr);

Bytes EncodeFsRequest(const FsRequest& req);
Result<FsRequest> DecodeFsRequest(uint16_t opcode, std::span<const uint8_t> payload);
Bytes EncodeFsReply(FsOp op, const FsReply& reply);
Result<FsReply> DecodeFsReply(FsOp op, std::span<const uint8_t> payload);
// A kRead reply whose data is copied straight into `dst` (at most dst.size() bytes; *n gets how many)
// rather than into FsReply::data, which stays empty: one copy fewer on the way to a caller's buffer.
// Validated as DecodeFsReply validates a kRead reply.
Result<FsReply> DecodeFsReadReplyInto(std::span<const uint8_t> payload, std::span<uint8_t> dst, size_t* n);

// Something that answers FS requests: the smon's file store, the mmon's buffer cache, a remote peer.
// Execute never throws; a failure is an FsReply with err set. Thread-safety is each implementation's.
class FsService {
 public:
  virtual ~FsService() = default;
  virtual FsReply Execute(const FsRequest& req) = 0;
  // A kRead whose data goes into `dst` (at most dst.size() bytes; *n gets how many, 0 on error); the
  // reply's data stays empty. This default runs Execute and copies; a remote client decodes into dst.
  virtual FsReply ReadInto(const FsRequest& req, std::span<uint8_t> dst, size_t* n);
};

}  // namespace lego::proto
