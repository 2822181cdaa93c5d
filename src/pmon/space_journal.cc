#include "pmon/space_journal.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>

#include "common/log.h"

namespace lego::pmon {

Result<std::unique_ptr<SpaceJournal>> SpaceJournal::Open(const std::string& path) {
  std::set<uint64_t> live;
  {
    std::ifstream in(path);
    std::string line;
    size_t lineno = 0, bad = 0;
    while (std::getline(in, line)) {
      ++lineno;
      uint64_t space = 0;
      char op = line.empty() ? 0 : line[0];
      char* end = nullptr;
      if (line.size() == 17 && (op == '+' || op == '-')) space = std::strtoull(line.c_str() + 1, &end, 16);
      if (end != line.c_str() + 17 || space == 0) {
        if (bad++ == 0)
          LEGO_LOG_WARN("space_journal_bad_line path={} line={} text=\"{}\"", path, lineno, line);
        continue;
      }
      if (op == '+')
        live.insert(space);
      else
        live.erase(space);
    }
  }
  auto fd = Rewrite(path, live);
  if (!fd.ok()) return fd.status();
  return std::unique_ptr<SpaceJournal>(new SpaceJournal(path, *fd, std::move(live)));
}

// A fresh file with only the spaces still to free, swapped in atomically.
Result<int> SpaceJournal::Rewrite(const std::string& path, const std::set<uint64_t>& live) {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    for (uint64_t s : live) out << fmt::format("+{:016x}\n", s);
    out.flush();
    if (!out) return ErrnoError("write " + tmp, errno);
  }
  if (rename(tmp.c_str(), path.c_str()) != 0) return ErrnoError("rename " + tmp, errno);
  int fd = open(path.c_str(), O_WRONLY | O_APPEND | O_CLOEXEC);
  if (fd < 0) return ErrnoError("open " + path, errno);
  return fd;
}

SpaceJournal::~SpaceJournal() {
  MutexLock lock(mu_);
  if (fd_ >= 0) close(fd_);
}

void SpaceJournal::Added(uint64_t space) {
  MutexLock lock(mu_);
  live_.insert(space);
  Append('+', space);
}

void SpaceJournal::Removed(uint64_t space) {
  MutexLock lock(mu_);
  live_.erase(space);
  if (lines_ >= kCompactAfter + 2 * live_.size()) {
    // Rewrite rather than append: the swap is atomic, so a crash leaves either file, both right.
    if (auto fd = Rewrite(path_, live_); fd.ok()) {
      close(fd_);
      fd_ = *fd;
      lines_ = live_.size();
      return;
    }  // else keep appending to the old file
  }
  Append('-', space);
}

size_t SpaceJournal::lines() const {
  MutexLock lock(mu_);
  return lines_;
}

void SpaceJournal::Append(char op, uint64_t space) {
  char line[20];
  const int n = std::snprintf(line, sizeof line, "%c%016llx\n", op, static_cast<unsigned long long>(space));
  ++lines_;
  // One write(2) per line on an O_APPEND fd: a crash leaves whole lines and at most one torn last line.
  if (write(fd_, line, static_cast<size_t>(n)) == n) return;
  if (!write_failed_) {
    write_failed_ = true;
    LEGO_LOG_WARN(
        "space_journal_write_failed path={} err=\"{}\" (a crash now would leave remote memory "
        "unfreed)",
        path_, strerror(errno));
  }
}

}  // namespace lego::pmon
