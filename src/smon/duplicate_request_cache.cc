#include "smon/duplicate_request_cache.h"

#include "common/log.h"

namespace lego::smon {

DuplicateRequestCache::DuplicateRequestCache(proto::FsService& inner, size_t capacity)
    : inner_(inner), capacity_(capacity == 0 ? 1 : capacity) {}

proto::FsReply DuplicateRequestCache::Execute(const proto::FsRequest& req) {
  if (req.f.request_id == 0 || proto::FsOpIdempotent(req.op)) return inner_.Execute(req);
  const Key key{req.f.vnode, req.f.request_id};
  MutexLock lk(mu_);
  if (auto it = replies_.find(key); it != replies_.end()) {
    ++replayed_;
    LEGO_LOG_INFO("fs_request_replayed op={} vnode={} path=\"{}\" request_id={:#x} err={}",
                  proto::FsOpName(req.op), req.f.vnode, req.path, req.f.request_id, it->second.err);
    proto::FsReply r;
    r.f = it->second;
    r.f.flags |= proto::kFsReplyReplayed;
    return r;
  }
  proto::FsReply reply = inner_.Execute(req);
  if (order_.size() >= capacity_) {
    replies_.erase(order_.front());
    order_.pop_front();
  }
  replies_.emplace(key, reply.f);
  order_.push_back(key);
  return reply;
}

uint64_t DuplicateRequestCache::replayed() const {
  MutexLock lk(mu_);
  return replayed_;
}

size_t DuplicateRequestCache::size() const {
  MutexLock lk(mu_);
  return replies_.size();
}

}  // namespace lego::smon
