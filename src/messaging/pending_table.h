// PendingTable: the calls a Messenger waits replies for, by request id.
//
// Every call enters it before its request is sent and leaves it exactly once: when its reply comes, when it
// times out, is abandoned, or its connection fails. That is two table operations per round trip, on the
// hottest path the messenger has (decision 002). A node-based hash map allocates a node per insert and
// frees it per erase; here the common case touches one array slot and allocates nothing.
//
// Request ids are salt (high 32 bits) | a per-messenger counter (low 32 bits), so consecutive calls fall in
// consecutive slots: slot = id mod kSlots. A slot still taken when its turn comes again (a call that has
// been pending for kSlots later calls: a slow FS request, a long timeout) sends the newcomer to an overflow
// map; lookups check the slot, then the map. Not thread-safe: the messenger guards it with pending_mu_.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <unordered_map>
#include <utility>

namespace lego::msg {

template <class Call>
class PendingTable {
 public:
  static constexpr size_t kSlots = 1024;  // a power of two

  // REQUIRES: id is not in the table; call is non-null.
  void Insert(uint64_t id, std::shared_ptr<Call> call) {
    Slot& s = slots_[id & (kSlots - 1)];
    if (s.call == nullptr) {
      s.id = id;
      s.call = std::move(call);
    } else {
      overflow_.emplace(id, std::move(call));
    }
    ++size_;
  }

  // Removes the call with this id and returns it; null if there is none.
  std::shared_ptr<Call> Take(uint64_t id) {
    Slot& s = slots_[id & (kSlots - 1)];
    if (s.call != nullptr && s.id == id) {
      --size_;
      return std::exchange(s.call, nullptr);
    }
    if (overflow_.empty()) return nullptr;
    auto it = overflow_.find(id);
    if (it == overflow_.end()) return nullptr;
    --size_;
    std::shared_ptr<Call> call = std::move(it->second);
    overflow_.erase(it);
    return call;
  }

  bool Contains(uint64_t id) const { return Find(id) != nullptr; }

  // The call with this id, left in the table; null if there is none. Valid while the table is not changed.
  Call* Find(uint64_t id) const {
    const Slot& s = slots_[id & (kSlots - 1)];
    if (s.call != nullptr && s.id == id) return s.call.get();
    if (overflow_.empty()) return nullptr;
    auto it = overflow_.find(id);
    return it == overflow_.end() ? nullptr : it->second.get();
  }

  // Removes every call for which pred(const Call&) is true and passes it to out(std::shared_ptr<Call>).
  template <class Pred, class Out>
  void TakeIf(Pred pred, Out out) {
    if (size_ == 0) return;
    for (Slot& s : slots_) {
      if (s.call != nullptr && pred(*s.call)) {
        --size_;
        out(std::exchange(s.call, nullptr));
      }
    }
    for (auto it = overflow_.begin(); it != overflow_.end();) {
      if (pred(*it->second)) {
        --size_;
        out(std::move(it->second));
        it = overflow_.erase(it);
      } else {
        ++it;
      }
    }
  }

  size_t size() const { return size_; }
  size_t overflow_size() const { return overflow_.size(); }

 private:
  struct Slot {
    uint64_t id = 0;
    std::shared_ptr<Call> call;  // null: free
  };
  std::array<Slot, kSlots> slots_{};
  std::unordered_map<uint64_t, std::shared_ptr<Call>> overflow_;
  size_t size_ = 0;
};

}  // namespace lego::msg
