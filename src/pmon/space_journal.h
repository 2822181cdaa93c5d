// SpaceJournal: the address spaces this pmon has created on memory monitors and not yet freed, kept in a
// file in its data dir (DATA_DIR/spaces), so that remote memory is never orphaned for good:
//   - a pmon killed with running programs (kill -9, a crash) cannot free their spaces at their exit (the
//     programs die with it: the preload kills a program whose pmon is gone). Started again with the same
//     data dir, it finds them here and frees them;
//   - a space whose free failed at the program's exit (an mmon or the gm unreachable for a moment) stays
//     here, and the pmon retries until it succeeds.
// Format: one line per event, `+HEX` (created) or `-HEX` (freed everywhere), 16 hex digits. Open() reads it,
// keeps the spaces added and never removed, and rewrites the file with only those; so does the journal
// itself once it has appended kCompactAfter lines more than twice the spaces it still lists (a pmon that
// runs for months and starts millions of processes keeps a small file). Lines it cannot parse (a
// torn last line after a crash) are logged and skipped. Not fsync'ed: a lost line after a host crash costs
// at most a space the restarted mmons no longer hold anyway (their pools do not survive either).
// Thread safety: every method may be called from any thread.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <set>
#include <string>

#include "common/status.h"
#include "common/thread_annotations.h"

namespace lego::pmon {

class SpaceJournal {
 public:
  static Result<std::unique_ptr<SpaceJournal>> Open(const std::string& path);
  ~SpaceJournal();
  SpaceJournal(const SpaceJournal&) = delete;
  SpaceJournal& operator=(const SpaceJournal&) = delete;

  // The spaces the file listed as not freed when it was opened (those of the pmon's previous life).
  const std::set<uint64_t>& leftovers() const { return leftovers_; }
  void Added(uint64_t space) EXCLUDES(mu_);    // before the space gets its first page anywhere
  void Removed(uint64_t space) EXCLUDES(mu_);  // freed on every mmon and at the gm
  size_t lines() const EXCLUDES(mu_);          // in the file now (for tests)

  static constexpr size_t kCompactAfter = 4096;

 private:
  SpaceJournal(std::string path, int fd, std::set<uint64_t> leftovers)
      : path_(std::move(path)), fd_(fd), leftovers_(leftovers), live_(std::move(leftovers)) {
    lines_ = live_.size();
  }
  // Writes `live` to a fresh file and renames it over `path`; the new file's fd (O_APPEND) or an error.
  static Result<int> Rewrite(const std::string& path, const std::set<uint64_t>& live);
  void Append(char op, uint64_t space) REQUIRES(mu_);

  const std::string path_;
  mutable Mutex mu_;
  int fd_ GUARDED_BY(mu_);  // O_APPEND
  const std::set<uint64_t> leftovers_;
  std::set<uint64_t> live_ GUARDED_BY(mu_);  // what the file lists now
  size_t lines_ GUARDED_BY(mu_) = 0;
  bool write_failed_ GUARDED_BY(mu_) = false;  // logged once
};

}  // namespace lego::pmon
