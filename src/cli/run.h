// `lego run`, `lego ps` and `lego top`: running programs on disaggregated memory and watching them.
#pragma once

#include <set>
#include <string>
#include <vector>

#include "cli/commands.h"
#include "protocol/c2p.h"

namespace lego::cli {

struct RunOptions {
  std::string state_dir;
  std::string pmon_socket;  // empty: the local cluster's pmon-0 (or $LEGO_PMON_SOCKET)
  uint64_t excache = 0;     // per-process ExCache cap in bytes; 0: only the pmon's budget
  bool stats = false;       // print the job's memory statistics when it ends
  bool stats_json = false;
  std::string gm;         // HOST:PORT; empty: the local cluster's
  std::string pmon;       // member name of the pmon (with pmon_socket); empty: the first alive pmon
  std::string vnode;      // the vNode to run in; empty: "default" (created on first use)
  bool keep_cwd = false;  // start in the current directory instead of the vNode's mount
  std::vector<std::string> argv;
};

// Runs argv under Lego; returns the program's exit status (128+N if killed by signal N), or 1/2/127 for
// Lego's own failures (127: the program cannot run under Lego, e.g. a static binary).
int RunCommand(const RunOptions& options);

// Checks that the preload can capture the program: a dynamically linked ELF (follows #! interpreters),
// not set-ID. Returns the resolved path, or why not.
Result<std::string> CheckCapturable(const std::string& program);

int PsCommand(const QueryOptions& options, bool all);
int TopCommand(const QueryOptions& options, int interval_ms, int iterations);

// An alive process monitor that ListProcesses could not ask.
struct PmonFailure {
  std::string addr;
  Status why;
  bool answered = false;  // it replied, with an error or a reply that did not decode
  // "process monitor ADDR did not answer (WHY)", or "... answered with an error (WHY)".
  std::string Describe() const;
};

// The process monitors' processes (running, and recently ended if `all`). An alive pmon that cannot be asked
// is left out and, if `failures` is given, added to it; pmons whose address is in `skip` are not asked; pmons
// the gm counts dead are not asked and go to `dead` if given.
Result<std::vector<proto::ProcessRecord>> ListProcesses(msg::Messenger& m, const QueryOptions& o, bool all,
                                                        std::vector<PmonFailure>* failures = nullptr,
                                                        const std::set<std::string>* skip = nullptr,
                                                        std::vector<proto::MemberRecord>* dead = nullptr);

}  // namespace lego::cli
