// `lego vnode create|ls|rm` (the vNodes kept by lego-gm) and the pmon side of `lego run --vnode`.
#pragma once

#include <string>

#include "cli/commands.h"
#include "protocol/c2p.h"

namespace lego::cli {

// smon: the storage monitor's member id or name; "" lets the gm choose.
int VnodeCreateCommand(const QueryOptions& o, const std::string& name, const std::string& smon);
int VnodeListCommand(const QueryOptions& o);
int VnodeRemoveCommand(const QueryOptions& o, const std::string& name, bool force);

// Asks the process monitor named `pmon` (empty: the first alive one) to mount `vnode` (empty: the default
// vNode) for `job`, whose processes descend from this process.
Result<proto::AttachVnodeResp> AttachVnode(msg::Messenger& m, const QueryOptions& o, const std::string& job,
                                           const std::string& vnode, const std::string& pmon);

}  // namespace lego::cli
