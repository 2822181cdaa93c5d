// hash_mt: a multi-threaded hash table (the in-memory index of a key-value store): THREADS threads insert
// into and then look up in a table sharded over 64 std::unordered_maps, each behind a mutex.
//   hash_mt MB THREADS
// Inserts about MB megabytes of entries (a 64-bit key and 48 bytes of value; about 96 bytes each with the
// node and bucket), each thread its share, then each thread looks up as many random keys (half of them
// absent). Prints the times of both phases and a checksum of what the lookups found, which is the same
// whatever the threads' interleaving: under Lego, under Linux swap and locally.
#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <thread>
#include <unordered_map>
#include <vector>

namespace {

uint64_t Mix(uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

constexpr int kShards = 64;
using Value = std::array<uint64_t, 6>;
struct Shard {
  std::mutex mu;
  std::unordered_map<uint64_t, Value> map;
};

double Seconds(std::chrono::steady_clock::time_point a, std::chrono::steady_clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: hash_mt MB THREADS\n");
    return 2;
  }
  const uint64_t mb = std::strtoull(argv[1], nullptr, 10);
  const int threads = std::atoi(argv[2]);
  if (mb == 0 || threads < 1 || threads > 64) {
    std::fprintf(stderr, "hash_mt: MB must be > 0 and THREADS in 1..64\n");
    return 2;
  }
  const uint64_t entries = (mb << 20) / 96;
  std::vector<Shard> shards(kShards);
  auto shard_of = [&](uint64_t key) -> Shard& { return shards[(key >> 58) % kShards]; };

  auto t0 = std::chrono::steady_clock::now();
  std::vector<std::thread> ts;
  for (int t = 0; t < threads; ++t)
    ts.emplace_back([&, t] {
      for (uint64_t i = static_cast<uint64_t>(t); i < entries; i += static_cast<uint64_t>(threads)) {
        const uint64_t key = Mix(i);
        Value v;
        for (size_t w = 0; w < v.size(); ++w) v[w] = Mix(key + w);
        Shard& s = shard_of(key);
        std::lock_guard lock(s.mu);
        s.map.emplace(key, v);
      }
    });
  for (auto& t : ts) t.join();
  ts.clear();
  auto t1 = std::chrono::steady_clock::now();

  std::atomic<uint64_t> checksum{0}, found{0};
  for (int t = 0; t < threads; ++t)
    ts.emplace_back([&, t] {
      uint64_t sum = 0, hits = 0, r = static_cast<uint64_t>(t) + 1;
      const uint64_t per_thread = entries / static_cast<uint64_t>(threads);
      for (uint64_t i = 0; i < per_thread; ++i) {
        r = Mix(r);
        const uint64_t key = Mix(r % (2 * entries));  // indexes >= entries were never inserted
        Shard& s = shard_of(key);
        std::lock_guard lock(s.mu);
        auto it = s.map.find(key);
        if (it != s.map.end()) {
          sum += it->second[i % 6];
          ++hits;
        }
      }
      checksum += sum;
      found += hits;
    });
  for (auto& t : ts) t.join();
  auto t2 = std::chrono::steady_clock::now();

  uint64_t size = 0;
  for (auto& s : shards) size += s.map.size();
  std::printf(
      "hash_mt mb=%llu threads=%d entries=%llu insert_s=%.3f lookup_s=%.3f found=%llu checksum=%016llx\n",
      static_cast<unsigned long long>(mb), threads, static_cast<unsigned long long>(size), Seconds(t0, t1),
      Seconds(t1, t2), static_cast<unsigned long long>(found.load()),
      static_cast<unsigned long long>(checksum.load()));
  return size == entries ? 0 : 1;
}
