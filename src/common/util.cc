#include "common/util.h"

#include <cctype>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>

#include <fcntl.h>
#include <unistd.h>

#include <fmt/format.h>

namespace lego {

Result<uint64_t> ParseSize(std::string_view text) {
  std::string_view t = text;
  while (!t.empty() && std::isspace(static_cast<unsigned char>(t.back()))) t.remove_suffix(1);
  if (t.empty()) return InvalidArgument("empty size");
  uint64_t value = 0;
  auto [ptr, ec] = std::from_chars(t.data(), t.data() + t.size(), value);
  if (ec != std::errc() || ptr == t.data()) return InvalidArgument(fmt::format("bad size '{}'", text));
  // Accepted units: none, "B", or one of K/M/G/T (any case) optionally followed by "B", "b" or "iB".
  // A bare suffix ("64iB", "64BB") is garbage, not bytes.
  std::string_view unit(ptr, t.data() + t.size() - ptr);
  unsigned shift = 0;
  if (!unit.empty()) {
    const auto bad_unit = [&] {
      return InvalidArgument(fmt::format("bad size unit in '{}' (use K, M, G or T)", text));
    };
    std::string_view rest = unit.substr(1);
    switch (std::toupper(static_cast<unsigned char>(unit[0]))) {
      case 'B':
        if (!rest.empty()) return bad_unit();
        break;
      case 'K':
        shift = 10;
        break;
      case 'M':
        shift = 20;
        break;
      case 'G':
        shift = 30;
        break;
      case 'T':
        shift = 40;
        break;
      default:
        return bad_unit();
    }
    if (shift && !(rest.empty() || rest == "B" || rest == "b" || rest == "iB")) return bad_unit();
  }
  if (shift && value > (UINT64_MAX >> shift))
    return InvalidArgument(fmt::format("size '{}' overflows", text));
  return value << shift;
}

std::string FormatBytes(uint64_t bytes) {
  static const char* kUnits[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double v = static_cast<double>(bytes);
  int u = 0;
  // Also step up when one decimal would round to 1024.0 (1048575 bytes is "1.0 MiB", not "1024.0 KiB").
  while (u < 4 && (v >= 1024 || std::round(v * 10) >= 10240)) {
    v /= 1024;
    ++u;
  }
  if (u == 0) return fmt::format("{} B", bytes);
  return fmt::format("{:.1f} {}", v, kUnits[u]);
}

std::string HostPort::ToString() const {
  if (host.find(':') != std::string::npos) return fmt::format("[{}]:{}", host, port);
  return fmt::format("{}:{}", host, port);
}

Result<HostPort> ParseHostPort(std::string_view text, bool allow_zero) {
  HostPort hp;
  std::string_view port_part;
  if (!text.empty() && text.front() == '[') {
    auto close = text.find(']');
    if (close == std::string_view::npos || close + 1 >= text.size() || text[close + 1] != ':')
      return InvalidArgument(fmt::format("bad address '{}' (want [IPV6]:PORT)", text));
    if (close == 1) return InvalidArgument(fmt::format("bad address '{}' (empty host)", text));
    hp.host = std::string(text.substr(1, close - 1));
    port_part = text.substr(close + 2);
  } else {
    auto colon = text.rfind(':');
    if (colon == std::string_view::npos || colon == 0)
      return InvalidArgument(fmt::format("bad address '{}' (want HOST:PORT)", text));
    hp.host = std::string(text.substr(0, colon));
    // "::1:4000" is ambiguous; ToString() brackets every host with a colon, so require that here too.
    if (hp.host.find(':') != std::string::npos)
      return InvalidArgument(fmt::format("bad address '{}' (write an IPv6 address as [IPV6]:PORT)", text));
    port_part = text.substr(colon + 1);
  }
  if (hp.host.find_first_of("[]") != std::string::npos)
    return InvalidArgument(fmt::format("bad address '{}' (brackets inside the host)", text));
  unsigned port = 0;
  auto [ptr, ec] = std::from_chars(port_part.data(), port_part.data() + port_part.size(), port);
  if (ec != std::errc() || ptr != port_part.data() + port_part.size() || port > 65535 ||
      (port == 0 && !allow_zero))
    return InvalidArgument(fmt::format("bad port in '{}'", text));
  hp.port = static_cast<uint16_t>(port);
  return hp;
}

Status WriteFileAtomic(const std::string& path, std::string_view content) {
  std::string tmp = path + ".tmp";
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return ErrnoError("open " + tmp, errno);
  size_t done = 0;
  while (done < content.size()) {
    ssize_t n = ::write(fd, content.data() + done, content.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      int e = n < 0 ? errno : EIO;
      ::close(fd);
      return ErrnoError("write " + tmp, e);
    }
    done += static_cast<size_t>(n);
  }
  // Durable: the content reaches the disk before the rename makes it visible, and the rename itself
  // reaches the disk before we return (fsync of the directory).
  if (::fsync(fd) != 0) {
    int e = errno;
    ::close(fd);
    return ErrnoError("fsync " + tmp, e);
  }
  ::close(fd);
  if (std::rename(tmp.c_str(), path.c_str()) != 0) return ErrnoError("rename " + path, errno);
  std::string dir = path.find('/') == std::string::npos ? "." : path.substr(0, path.rfind('/'));
  if (dir.empty()) dir = "/";
  int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    ::fsync(dfd);
    ::close(dfd);
  }
  return Status::Ok();
}

int64_t WallMillis() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}
int64_t MonoMillis() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

bool ReadProcStatField(long tid, int field, uint64_t* out) {
  char path[64], buf[1024];
  std::snprintf(path, sizeof path, "/proc/%ld/stat", tid);
  int fd = ::open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  ssize_t n = ::read(fd, buf, sizeof buf - 1);
  ::close(fd);
  if (n <= 0) return false;
  buf[n] = 0;
  // The command (field 2) may hold spaces and parentheses: the fields after it start after the last ')'.
  const char* p = std::strrchr(buf, ')');
  if (!p || field < 3) return false;
  for (int f = 2; *p; ++p) {
    if (*p == ' ' && ++f == field) {
      *out = std::strtoull(p + 1, nullptr, 10);
      return true;
    }
  }
  return false;
}

}  // namespace lego
