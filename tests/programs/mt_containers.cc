// mt_containers: a multi-threaded C++ program using std containers, for the memory tests. Each of T
// threads fills a std::map, a std::unordered_map and a std::vector<std::string> with N entries derived from
// its index, then folds them into a checksum. Prints the same line under Lego and locally.
//   mt_containers THREADS ENTRIES_PER_THREAD
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

static uint64_t Mix(uint64_t x) {
  x ^= x >> 31;
  x *= 0x9e3779b97f4a7c15ULL;
  return x ^ (x >> 29);
}

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: mt_containers THREADS ENTRIES_PER_THREAD\n");
    return 2;
  }
  const int threads = std::atoi(argv[1]);
  const uint64_t n = std::strtoull(argv[2], nullptr, 10);
  std::vector<uint64_t> sums(threads);
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t) {
    pool.emplace_back([t, n, &sums] {
      std::map<uint64_t, std::string> ordered;
      std::unordered_map<uint64_t, uint64_t> hashed;
      std::vector<std::string> strings;
      for (uint64_t i = 0; i < n; ++i) {
        const uint64_t k = Mix(i * 64 + static_cast<uint64_t>(t));
        ordered.emplace(k, std::to_string(k));
        hashed[k % (n / 2 + 1)] += k;
        strings.push_back(std::string(16 + k % 48, static_cast<char>('a' + k % 26)));
      }
      uint64_t s = 0;
      for (auto& [k, v] : ordered) s = Mix(s ^ k ^ v.size());
      for (auto& [k, v] : hashed) s += Mix(k ^ v);
      for (auto& str : strings) s = Mix(s + str.size() + static_cast<uint64_t>(str[0]));
      sums[t] = s;
    });
  }
  for (auto& th : pool) th.join();
  uint64_t total = 0;
  for (int t = 0; t < threads; ++t) {
    std::printf("thread %d: %016llx\n", t, static_cast<unsigned long long>(sums[t]));
    total ^= sums[t];
  }
  std::printf("mt_containers %d x %llu: %016llx\n", threads, static_cast<unsigned long long>(n),
              static_cast<unsigned long long>(total));
  return 0;
}
