// Small parsing and formatting helpers shared by daemons and the CLI.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "common/status.h"

namespace lego {

// "4096", "64K", "512M", "2G", "1T" (binary units, optional trailing "iB"/"B") -> bytes.
Result<uint64_t> ParseSize(std::string_view text);
// 1536 -> "1.5 KiB"
std::string FormatBytes(uint64_t bytes);

struct HostPort {
  std::string host;
  uint16_t port = 0;
  std::string ToString() const;
};
// "127.0.0.1:4000" or "[::1]:4000" or "localhost:4000"; port 0 allowed only if allow_zero.
Result<HostPort> ParseHostPort(std::string_view text, bool allow_zero = false);

// Replaces path with content atomically and durably (write and fsync PATH.tmp, rename, fsync the directory),
// so readers never see half a file and a crash leaves the old or the new content.
Status WriteFileAtomic(const std::string& path, std::string_view content);

// Milliseconds since the Unix epoch (wall clock; for display) and a monotonic clock (for deadlines).
int64_t WallMillis();
int64_t MonoMillis();

// Field `field` (1-based, as in proc(5): 22 starttime, 39 processor) of /proc/TID/stat, read with one
// open/read (cheap enough for the page-fault path). False if the task is gone or the line is short.
bool ReadProcStatField(long tid, int field, uint64_t* out);

}  // namespace lego
