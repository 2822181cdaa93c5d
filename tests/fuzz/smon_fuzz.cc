// libFuzzer target for the storage monitor's file store (src/smon/file_store.h): FS requests from the
// wire, decoded and executed on a real namespace through the smon's duplicate-request cache
// (src/smon/duplicate_request_cache.h), as lego-smon runs them (see docs/decisions/003-fuzzing.md).
//
// Input: 2 bytes (little-endian u16 `sel`) then an FS request payload. The opcode is
// kFsGetattr + sel % kFsOpCount; if (sel / kFsOpCount) is odd, the request's vNode is forced to
// 1 + (sel / (2 * kFsOpCount)) % 2, so that most requests hit a real namespace.
//
// One FileStore (16 MiB quota, vNodes 1 and 2) lives for the whole process in a temp dir, next to a canary
// file and directory outside the store root. vNode 1 holds planted symlinks that point out of it (to the
// canary, to the temp dir, and "../.." upwards). Every 4096 inputs both vNodes are removed and recreated
// (RemoveVnode on whatever the fuzzer built). Properties checked, any violation aborts:
//   1. no crash, hang or UB (ASan/UBSan in the clang build); Execute never throws;
//   2. nothing outside the store root changes: the canary's bytes, mode, size, mtime and inode, and the
//      list of names next to the store root;
//   3. a reply's errno is in [0, kFsMaxErrno]; a failed reply carries no data or entries; a READ returns
//      at most what was asked; a reply encodes and decodes back (EncodeFsReply/DecodeFsReply);
//   4. used_bytes stays within the quota (plus 1/16 slack for file-system metadata blocks).
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>
#include <set>
#include <span>
#include <string>

#include <spdlog/spdlog.h>

#include "protocol/fs.h"
#include "protocol/wire.h"
#include "smon/duplicate_request_cache.h"
#include "smon/file_store.h"

namespace lego::smon {
namespace {

namespace fs = std::filesystem;

constexpr uint64_t kCapacity = 16 << 20;
constexpr const char* kCanaryText = "canary: must never change";

[[noreturn]] void Fail(const std::string& why) {
  std::fprintf(stderr, "smon_fuzz: %s\n", why.c_str());
  std::abort();
}

std::string Slurp(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
}

struct Fixture {
  std::string tmp;
  std::string store_root;
  std::string canary;
  struct stat canary_st {};
  std::set<std::string> tmp_names;
  std::unique_ptr<FileStore> store;
  std::unique_ptr<DuplicateRequestCache> dedup;  // in front of store; small, so that it also forgets
  uint64_t inputs = 0;

  void Plant() {
    std::string v1 = store_root + "/vnodes/1";
    (void)!symlink(canary.c_str(), (v1 + "/canary").c_str());
    (void)!symlink(tmp.c_str(), (v1 + "/tmp").c_str());
    (void)!symlink("../..", (v1 + "/up").c_str());
    (void)!symlink("../../../canary", (v1 + "/rel").c_str());
  }

  void Reset() {
    for (uint32_t id : {1u, 2u}) {
      if (store->HasVnode(id) && !store->RemoveVnode(id).ok()) Fail("RemoveVnode failed");
      if (!store->CreateVnode(id).ok()) Fail("CreateVnode failed");
    }
    Plant();
  }

  void CheckOutside() const {
    struct stat st;
    if (lstat(canary.c_str(), &st) != 0) Fail("canary removed");
    if (st.st_ino != canary_st.st_ino || st.st_mode != canary_st.st_mode || st.st_size != canary_st.st_size ||
        st.st_uid != canary_st.st_uid || st.st_gid != canary_st.st_gid ||
        st.st_mtim.tv_sec != canary_st.st_mtim.tv_sec || st.st_mtim.tv_nsec != canary_st.st_mtim.tv_nsec)
      Fail("canary metadata changed");
    if (Slurp(canary) != kCanaryText) Fail("canary contents changed");
    std::set<std::string> names;
    for (const auto& e : fs::directory_iterator(tmp)) names.insert(e.path().filename());
    if (names != tmp_names) Fail("names next to the store root changed");
    if (Slurp(tmp + "/outside/file") != kCanaryText) Fail("outside/file changed");
  }
};

Fixture& Get() {
  static Fixture* fx = [] {
    spdlog::set_level(spdlog::level::err);  // the store logs refused requests; keep the fuzzer's output clean
    auto* f = new Fixture;
    char tmpl[] = "/tmp/lego-smon-fuzz.XXXXXX";
    if (mkdtemp(tmpl) == nullptr) Fail("mkdtemp failed");
    f->tmp = tmpl;
    f->store_root = f->tmp + "/store";
    f->canary = f->tmp + "/canary";
    std::ofstream(f->canary) << kCanaryText;
    fs::create_directories(f->tmp + "/outside");
    std::ofstream(f->tmp + "/outside/file") << kCanaryText;
    if (lstat(f->canary.c_str(), &f->canary_st) != 0) Fail("canary missing");
    auto s = FileStore::Open(f->store_root, kCapacity);
    if (!s.ok()) Fail("FileStore::Open: " + s.status().ToString());
    f->store = std::move(s).value();
    f->dedup = std::make_unique<DuplicateRequestCache>(*f->store, 64);
    f->Reset();
    for (const auto& e : fs::directory_iterator(f->tmp)) f->tmp_names.insert(e.path().filename());
    std::atexit([] {
      std::error_code ec;
      std::string tmp = Get().tmp;
      Get().dedup.reset();
      Get().store.reset();
      fs::remove_all(tmp, ec);
    });
    return f;
  }();
  return *fx;
}

void CheckReply(const proto::FsRequest& req, const proto::FsReply& r) {
  if (r.f.err < 0 || static_cast<uint32_t>(r.f.err) > proto::kFsMaxErrno) Fail("errno out of range");
  if (r.f.err != 0 && (!r.data.empty() || !r.entries.empty())) Fail("failed reply carries data");
  if (req.op == proto::FsOp::kRead && r.data.size() > std::min<uint64_t>(req.f.length, proto::kFsMaxIo))
    Fail("read returned more than asked");
  if (req.op == proto::FsOp::kWrite && r.f.err == 0 && r.f.value > req.data.size())
    Fail("write claims more bytes than sent");
  auto back = proto::DecodeFsReply(req.op, proto::EncodeFsReply(req.op, r));
  if (!back.ok()) Fail("reply does not decode: " + back.status().ToString());
  if (back->f.err != r.f.err || back->entries.size() != r.entries.size() || back->data != r.data)
    Fail("reply changed through encode/decode");
}

}  // namespace
}  // namespace lego::smon

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace lego;
  auto& fx = smon::Get();
  if (size < 2) return 0;
  uint16_t sel = static_cast<uint16_t>(data[0] | data[1] << 8);
  uint16_t opcode = static_cast<uint16_t>(proto::kFsGetattr + sel % proto::kFsOpCount);
  auto req = proto::DecodeFsRequest(opcode, std::span<const uint8_t>(data + 2, size - 2));
  if (!req.ok()) {
    if (req.status().code() != StatusCode::kBadMessage)
      smon::Fail("rejected with a code other than BadMessage");
    return 0;
  }
  if ((sel / proto::kFsOpCount) % 2) req->f.vnode = 1 + (sel / (2 * proto::kFsOpCount)) % 2;
  proto::FsReply reply = fx.dedup->Execute(req.value());
  smon::CheckReply(req.value(), reply);
  fx.CheckOutside();
  if (fx.store->used_bytes() > smon::kCapacity + smon::kCapacity / 16) smon::Fail("used_bytes beyond quota");
  if (++fx.inputs % 4096 == 0) fx.Reset();
  return 0;
}
