// The CLI's queries against a running cluster: `lego status`, `lego stats`, and `lego reclaim`.
#pragma once

#include <string>
#include <vector>

#include "messaging/messenger.h"
#include "protocol/membership.h"

namespace lego::cli {

struct QueryOptions {
  std::string state_dir;
  std::string gm;  // HOST:PORT; empty: read it from the state dir
  bool json = false;
  int timeout_ms = 3000;
};

// A CLI messenger: no listener, short spin.
Result<std::unique_ptr<msg::Messenger>> MakeCliMessenger();
Result<std::vector<proto::MemberRecord>> ListMembers(msg::Messenger& m, const HostPort& gm, int timeout_ms);
Result<std::vector<proto::MemberRecord>> ListMembers(msg::Channel& gm, int timeout_ms);

struct ClusterState;
// Finds the gm address (--gm, else the local cluster's state dir) and explains failures in the user's terms.
Result<HostPort> ResolveGm(const QueryOptions& o, const char* cmd, ClusterState* state_out);

// The alive members of one kind, as the gm (--gm, else the local cluster's) lists them; errors in the user's
// terms ("cannot reach the global manager at ..."). The dead ones of that kind, from the same list, go to
// `dead` if given.
Result<std::vector<proto::MemberRecord>> AliveMembers(msg::Messenger& m, const QueryOptions& o,
                                                      proto::ComponentKind kind, const char* cmd,
                                                      std::vector<proto::MemberRecord>* dead = nullptr);

int StatusCommand(const QueryOptions& options);
int StatsCommand(const QueryOptions& options, int member_id);
// `lego reclaim NAME`: frees the address spaces of a process monitor that is gone for good. A name the gm
// does not list is refused unless `force`.
int ReclaimCommand(const QueryOptions& options, const std::string& name, bool force);

}  // namespace lego::cli
