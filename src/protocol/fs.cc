#include "protocol/fs.h"

#include <algorithm>
#include <cerrno>
#include <cstring>

#include <fmt/format.h>

#include "protocol/wire.h"

namespace lego::proto {
namespace {

constexpr const char* kOpNames[kFsOpCount + 1] = {"?",       "getattr", "create", "read",  "write",
                                                  "setattr", "readdir", "mkdir",  "rmdir", "unlink",
                                                  "rename",  "fsync",   "statfs"};

bool TakesData(FsOp op) { return op == FsOp::kWrite; }

}  // namespace

std::string_view FsOpName(FsOp op) {
  auto i = static_cast<uint16_t>(op);
  return i >= 1 && i <= kFsOpCount ? kOpNames[i] : "unknown";
}

bool FsOpIdempotent(FsOp op) {
  switch (op) {
    case FsOp::kGetattr:
    case FsOp::kRead:
    case FsOp::kWrite:
    case FsOp::kSetattr:
    case FsOp::kReaddir:
    case FsOp::kFsync:
    case FsOp::kStatfs:
      return true;
    default:
      return false;
  }
}

uint16_t FsOpcode(FsOp op) { return static_cast<uint16_t>(kFsGetattr + static_cast<uint16_t>(op) - 1); }

Result<FsOp> FsOpFromOpcode(uint16_t opcode) {
  if (opcode < kFsGetattr || opcode >= kFsGetattr + kFsOpCount)
    return BadMessage(fmt::format("opcode {:#06x} is not an FS request", opcode));
  return static_cast<FsOp>(opcode - kFsGetattr + 1);
}

Status ValidateFsPath(std::string_view path, int* errno_out) {
  auto fail = [&](int e, std::string what) {
    if (errno_out) *errno_out = e;
    return InvalidArgument(fmt::format("path: {}", what));
  };
  if (path.size() > kFsMaxPath)
    return fail(ENAMETOOLONG, fmt::format("{} bytes (limit {})", path.size(), kFsMaxPath));
  if (path.empty()) return Status::Ok();
  if (path.find('\0') != std::string_view::npos) return fail(EINVAL, "contains a NUL byte");
  if (path.front() == '/') return fail(EINVAL, "is absolute (paths are relative to the vNode root)");
  size_t start = 0;
  while (start <= path.size()) {
    size_t end = path.find('/', start);
    if (end == std::string_view::npos) end = path.size();
    std::string_view c = path.substr(start, end - start);
    if (c.empty()) return fail(EINVAL, "has an empty component ('//' or a trailing '/')");
    if (c == "." || c == "..") return fail(EINVAL, fmt::format("has a '{}' component", c));
    if (c.size() > kFsMaxName)
      return fail(ENAMETOOLONG, fmt::format("component of {} bytes (limit {})", c.size(), kFsMaxName));
    start = end + 1;
  }
  return Status::Ok();
}

Bytes EncodeFsRequest(const FsRequest& req) {
  Writer w;
  w.Put(req.f);
  w.PutString(req.path);
  w.PutString(req.path2);
  if (TakesData(req.op)) w.PutBytes(req.data);
  return w.Take();
}

Result<FsRequest> DecodeFsRequest(uint16_t opcode, std::span<const uint8_t> payload) {
  auto op = FsOpFromOpcode(opcode);
  if (!op.ok()) return op.status();
  std::string what = fmt::format("fs.{}", FsOpName(*op));
  Reader r(payload, what.c_str());
  FsRequest m;
  m.op = *op;
  LEGO_RETURN_IF_ERROR(r.Get(&m.f, "fixed"));
  if (m.f.vnode == 0) return BadMessage(fmt::format("{}: vnode 0", what));
  LEGO_RETURN_IF_ERROR(r.GetString(&m.path, "path", kFsMaxPath));
  LEGO_RETURN_IF_ERROR(r.GetString(&m.path2, "path2", kFsMaxPath));
  if (Status st = ValidateFsPath(m.path); !st.ok())
    return BadMessage(fmt::format("{}: {}", what, st.message()));
  if (m.op == FsOp::kRename) {
    if (Status st = ValidateFsPath(m.path2); !st.ok())
      return BadMessage(fmt::format("{}: path2: {}", what, st.message()));
  } else if (!m.path2.empty()) {
    return BadMessage(fmt::format("{}: path2 is only for rename", what));
  }
  if (m.op == FsOp::kRead && m.f.length > kFsMaxIo)
    return BadMessage(fmt::format("{}: length {} exceeds {}", what, m.f.length, kFsMaxIo));
  if (TakesData(m.op)) {
    if (r.remaining() > kFsMaxIo)
      return BadMessage(fmt::format("{}: {} bytes of data exceed {}", what, r.remaining(), kFsMaxIo));
    m.data = payload.subspan(payload.size() - r.remaining());
    return m;
  }
  LEGO_RETURN_IF_ERROR(r.Finish());
  return m;
}

Bytes EncodeFsReply(FsOp op, const FsReply& reply) {
  Writer w;
  FsReplyFixed f = reply.f;
  if (op == FsOp::kReaddir && f.err == 0) f.count = static_cast<uint32_t>(reply.entries.size());
  w.Put(f);
  if (f.err != 0) return w.Take();
  if (op == FsOp::kRead) w.PutBytes(reply.data);
  if (op == FsOp::kReaddir) {
    for (const auto& e : reply.entries) {
      w.Put(e.ino);
      w.Put(e.mode);
      w.PutString(e.name);
    }
  }
  if (op == FsOp::kStatfs) w.Put(reply.statfs);
  return w.Take();
}

namespace {
// DecodeFsReply's work, but a kRead reply's data is left in the payload: *read_data views it.
Result<FsReply> DecodeReply(FsOp op, std::span<const uint8_t> payload, std::span<const uint8_t>* read_data) {
  std::string what = fmt::format("fs.{} reply", FsOpName(op));
  Reader r(payload, what.c_str());
  FsReply m;
  LEGO_RETURN_IF_ERROR(r.Get(&m.f, "fixed"));
  if (m.f.err < 0 || static_cast<uint32_t>(m.f.err) > kFsMaxErrno)
    return BadMessage(fmt::format("{}: errno {} out of range", what, m.f.err));
  if (m.f.err != 0) {
    LEGO_RETURN_IF_ERROR(r.Finish());
    return m;
  }
  if (op == FsOp::kRead) {
    if (r.remaining() > kFsMaxIo)
      return BadMessage(fmt::format("{}: {} bytes of data exceed {}", what, r.remaining(), kFsMaxIo));
    *read_data = payload.subspan(payload.size() - r.remaining());
    return m;
  }
  if (op == FsOp::kReaddir) {
    // Each entry takes at least 14 bytes: a count beyond that is a lie, refused before allocating.
    if (m.f.count > r.remaining() / 14)
      return BadMessage(fmt::format("{}: {} entries in {} bytes", what, m.f.count, r.remaining()));
    m.entries.resize(m.f.count);
    for (auto& e : m.entries) {
      LEGO_RETURN_IF_ERROR(r.Get(&e.ino, "ino"));
      LEGO_RETURN_IF_ERROR(r.Get(&e.mode, "mode"));
      LEGO_RETURN_IF_ERROR(r.GetString(&e.name, "name", kFsMaxName));
      if (e.name.empty() || e.name == "." || e.name == ".." || e.name.find('/') != std::string::npos ||
          e.name.find('\0') != std::string::npos)
        return BadMessage(fmt::format("{}: bad entry name", what));
    }
  }
  if (op == FsOp::kStatfs) LEGO_RETURN_IF_ERROR(r.Get(&m.statfs, "statfs"));
  LEGO_RETURN_IF_ERROR(r.Finish());
  return m;
}

}  // namespace

Result<FsReply> DecodeFsReply(FsOp op, std::span<const uint8_t> payload) {
  std::span<const uint8_t> data;
  auto m = DecodeReply(op, payload, &data);
  if (m.ok()) m->data.assign(data.begin(), data.end());
  return m;
}

Result<FsReply> DecodeFsReadReplyInto(std::span<const uint8_t> payload, std::span<uint8_t> dst, size_t* n) {
  *n = 0;
  std::span<const uint8_t> data;
  auto m = DecodeReply(FsOp::kRead, payload, &data);
  if (m.ok()) {
    *n = std::min(data.size(), dst.size());
    if (*n > 0) std::memcpy(dst.data(), data.data(), *n);
  }
  return m;
}

FsReply FsService::ReadInto(const FsRequest& req, std::span<uint8_t> dst, size_t* n) {
  FsReply r = Execute(req);
  *n = 0;
  if (r.err() == 0) {
    *n = std::min(r.data.size(), dst.size());
    if (*n > 0) std::memcpy(dst.data(), r.data.data(), *n);
    r.data.clear();
  }
  return r;
}

}  // namespace lego::proto
