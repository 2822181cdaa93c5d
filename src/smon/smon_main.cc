// lego-smon: a storage monitor (LegoOS's sComponent). Keeps each vNode's files under DATA_DIR/vnodes/ID
// (src/smon/file_store.h) and answers stateless FS requests (protocol/fs.h) from the vNodes' buffer-cache
// mmons; lego-gm asks it to make and delete vNode namespaces (G2S).
#include <memory>

#include "common/log.h"
#include "common/work_queue.h"
#include "daemon/daemon.h"
#include "messaging/remote_fs.h"
#include "protocol/any.h"
#include "protocol/vnode.h"
#include "smon/duplicate_request_cache.h"
#include "smon/file_store.h"

int main(int argc, char** argv) {
  using namespace lego;
  daemon::KindDefaults d{
      proto::ComponentKind::kSmon,
      "lego-smon: a Lego storage monitor. Stores vNode files durably under its data dir and "
      "registers with lego-gm.",
      "--capacity", "disk quota for stored files (e.g. 10G)", "10G"};
  std::unique_ptr<smon::FileStore> store;
  std::unique_ptr<smon::DuplicateRequestCache> dedup;
  std::unique_ptr<WorkQueue> queue;
  daemon::Component c;
  c.setup = [&](daemon::DaemonContext& ctx) -> Status {
    auto s = smon::FileStore::Open(ctx.config.data_dir, ctx.config.capacity);
    if (!s.ok()) return s.status();
    store = std::move(s.value());
    dedup = std::make_unique<smon::DuplicateRequestCache>(*store);
    // Two threads: one request may wait for fsync while another is served.
    queue = std::make_unique<WorkQueue>(2);
    // Local file calls run on the progress thread (no wake-ups); fsync waits for the disk, so it queues.
    msg::ServeFs(ctx.messenger, *queue, *dedup, [&](const proto::FsRequest& req, proto::FsReply* out) {
      if (req.op == proto::FsOp::kFsync) return false;
      *out = dedup->Execute(req);
      return true;
    });
    // Copied into gauges at every read of the metrics (`lego stats`, a scrape); dedup outlives the Metrics.
    ctx.metrics.MirrorOnCollect(
        [d = dedup.get()] {
          return std::vector<proto::StatsEntry>{
              {"lego_smon_fs_replayed_total", static_cast<double>(d->replayed())},
              {"lego_smon_fs_request_ids_kept", static_cast<double>(d->size())}};
        },
        "smon duplicate request cache (docs/architecture.md)");
    auto vnode_op = [&](uint16_t opcode, const char* what) {
      ctx.messenger.Handle(opcode, [&, opcode, what](const msg::Incoming& in, msg::Responder r) {
        auto req = proto::DecodeFixed<proto::SmonVnodeReq>(in.payload, what);
        if (!req.ok()) return r.Error(req.status());
        if (req->vnode == 0) return r.Error(InvalidArgument(fmt::format("{}: vnode 0", what)));
        queue->Submit([&, opcode, vnode = req->vnode, r = std::make_shared<msg::Responder>(std::move(r))] {
          Status st =
              opcode == proto::kSmonVnodeCreate ? store->CreateVnode(vnode) : store->RemoveVnode(vnode);
          LEGO_LOG_INFO("{} vnode={} status=\"{}\"", what, vnode, st.ToString());
          if (!st.ok()) return r->Error(st);
          r->Reply();
        });
      });
    };
    vnode_op(proto::kSmonVnodeCreate, "g2s.vnode_create");
    vnode_op(proto::kSmonVnodeRemove, "g2s.vnode_remove");
    return Status::Ok();
  };
  c.stop = [&] {
    if (queue) queue->Stop();
  };
  c.used_bytes = [&]() -> uint64_t { return store ? store->used_bytes() : 0; };
  return daemon::RunDaemon(d, argc, argv, c);
}
