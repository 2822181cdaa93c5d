// Runs the libFuzzer entry point of protocol_fuzz.cc without libFuzzer, so that every build (gcc too) checks
// the fuzz properties: over the checked-in seed corpus, over every prefix, trailer and one-byte mutation of
// generated valid messages, over hostile count/length fields, and over pseudo-random inputs (fixed seed).
//
//   protocol_fuzz_regression CORPUS_DIR           run everything; exit 1 if CORPUS_DIR has no files
//   protocol_fuzz_regression --write-corpus DIR   (re)write the seed corpus into DIR
// A property violation aborts inside the entry point, which fails the ctest.
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "protocol/any.h"
#include "protocol/membership.h"
#include "protocol/wire.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

namespace lego::proto {
namespace {

namespace fs = std::filesystem;
using Seed = std::pair<std::string, Bytes>;  // file name, contents

Bytes Text(std::string_view s) { return Bytes(s.begin(), s.end()); }

// Valid messages of every kind: the seed corpus, and the base of the generated inputs.
std::vector<Seed> Seeds() {
  std::vector<Seed> out;
  MsgHeader hdr{kMagic, kProtocolVersion, static_cast<uint8_t>(MsgKind::kRequest), kRegister, 1, 40, 0};
  out.emplace_back("header_request.bin", EncodeFixed(hdr));
  hdr.kind = static_cast<uint8_t>(MsgKind::kReply);
  hdr.status = static_cast<int32_t>(StatusCode::kUnknownMember);
  out.emplace_back("header_reply_error.bin", EncodeFixed(hdr));
  out.emplace_back("hello.bin", EncodeFixed(HelloMsg{kProtocolVersion, 2, 0, 1234, 0x5678, 0}));
  out.emplace_back("echo_sized.bin", EncodeFixed(EchoSizedReq{4096, 0}));
  out.emplace_back("register_resp.bin", EncodeFixed(RegisterResp{1, 1, 500, 0}));
  out.emplace_back("heartbeat.bin", EncodeFixed(HeartbeatReq{1, 1, 1u << 30, 4096}));
  out.emplace_back("deregister.bin", EncodeFixed(DeregisterReq{1, 1}));
  out.emplace_back("stats_empty.bin", EncodeStats({}));
  out.emplace_back("stats.bin",
                   EncodeStats({{"lego_gm_members", 3}, {"lego_messenger_bad_messages_total", 0}}));

  RegisterReq reg;
  reg.fixed = {static_cast<uint8_t>(ComponentKind::kMmon), 0, 9100, 4242, 16ull << 30, 0};
  reg.listen_addr = "127.0.0.1:4001";
  reg.name = "mmon-0";
  out.emplace_back("register_mmon.bin", EncodeRegisterReq(reg));
  reg.fixed.kind = static_cast<uint8_t>(ComponentKind::kPmon);
  reg.listen_addr = "[::1]:4002";
  reg.name = "";
  out.emplace_back("register_pmon_ipv6.bin", EncodeRegisterReq(reg));

  out.emplace_back("members_empty.bin", EncodeMemberList({}));
  MemberRecord a;
  a.fixed = {1,
             static_cast<uint8_t>(ComponentKind::kGm),
             static_cast<uint8_t>(MemberState::kAlive),
             9000,
             10,
             1,
             0,
             0,
             1700000000000,
             0};
  a.listen_addr = "127.0.0.1:4000";
  a.name = "gm";
  MemberRecord b;
  b.fixed = {2,
             static_cast<uint8_t>(ComponentKind::kSmon),
             static_cast<uint8_t>(MemberState::kDead),
             0,
             11,
             3,
             1ull << 40,
             1ull << 20,
             1700000000500,
             15000};
  b.listen_addr = "localhost:4003";
  b.name = "smon-1";
  out.emplace_back("members.bin", EncodeMemberList({a, b}));

  out.emplace_back("hostport.txt", Text("127.0.0.1:4000"));
  out.emplace_back("hostport_ipv6.txt", Text("[::1]:0"));
  out.emplace_back("size.txt", Text("64MiB"));
  return out;
}

// Inputs a hostile peer would send: counts and lengths that lie.
std::vector<Bytes> HostileInputs() {
  std::vector<Bytes> out;
  for (uint32_t count : {0xFFFFFFFFu, 0x80000000u, kMaxMembers, kMaxMembers + 1, 1000u, 2u}) {
    for (size_t filler : {0, 10, 49, 50, 100}) {
      Writer w;
      w.Put(count);
      w.PutBytes(Bytes(filler, 0xFF));
      out.push_back(w.Take());
    }
  }
  Writer w;
  w.Put(RegisterFixed{static_cast<uint8_t>(ComponentKind::kMmon), 0, 0, 1, 0, 0});
  w.Put(uint16_t{0xFFFF});
  out.push_back(w.Take());
  for (const char* s : {"[]:1", "::1:80", "[::1]:", "18446744073709551616", "16777216T", "64iB", ":0",
                        "[:]:1", "[[x]:0", "a]:1"})
    out.push_back(Text(s));
  return out;
}

size_t Run(const Bytes& b) {
  LLVMFuzzerTestOneInput(b.data(), b.size());
  return 1;
}

int WriteCorpus(const fs::path& dir) {
  fs::create_directories(dir);
  for (const auto& [name, bytes] : Seeds()) {
    std::ofstream f(dir / name, std::ios::binary | std::ios::trunc);
    f.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
    if (!f) {
      std::fprintf(stderr, "protocol_fuzz_regression: cannot write %s\n", (dir / name).c_str());
      return 1;
    }
  }
  std::printf("protocol_fuzz_regression: wrote %zu seeds to %s\n", Seeds().size(), dir.c_str());
  return 0;
}

int RunAll(const fs::path& corpus) {
  size_t runs = 0, corpus_files = 0;

  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(corpus, ec)) {
    if (!entry.is_regular_file()) continue;
    std::ifstream f(entry.path(), std::ios::binary);
    Bytes bytes((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    runs += Run(bytes);
    ++corpus_files;
  }
  if (ec || corpus_files == 0) {
    std::fprintf(stderr, "protocol_fuzz_regression: no corpus files in %s%s%s\n", corpus.c_str(),
                 ec ? ": " : "", ec ? ec.message().c_str() : "");
    return 1;
  }

  for (const auto& [name, valid] : Seeds()) {
    runs += Run(valid);
    for (size_t n = 0; n < valid.size(); ++n) runs += Run(Bytes(valid.begin(), valid.begin() + n));
    for (size_t extra : {1, 8, 50}) {
      Bytes longer = valid;
      longer.resize(valid.size() + extra, 0x5A);
      runs += Run(longer);
    }
    for (size_t i = 0; i < valid.size(); ++i) {
      for (uint8_t v : {uint8_t{0x00}, uint8_t{0xFF}, static_cast<uint8_t>(valid[i] + 1),
                        static_cast<uint8_t>(valid[i] ^ 0x80)}) {
        Bytes m = valid;
        m[i] = v;
        runs += Run(m);
      }
    }
  }

  for (const auto& b : HostileInputs()) runs += Run(b);

  std::mt19937_64 rng(20240601);
  for (int i = 0; i < 20000; ++i) {
    Bytes b(rng() % 160);
    for (auto& x : b) x = static_cast<uint8_t>(rng());
    // Half of them start like a valid count/length so the decoders get past the first field.
    if (i % 2 && b.size() >= 4) {
      b[0] = static_cast<uint8_t>(rng() % 3);
      b[1] = b[2] = b[3] = 0;
    }
    runs += Run(b);
  }

  std::printf("protocol_fuzz_regression: ok, %zu inputs (%zu corpus files)\n", runs, corpus_files);
  return 0;
}

}  // namespace
}  // namespace lego::proto

int main(int argc, char** argv) {
  if (argc == 3 && std::string_view(argv[1]) == "--write-corpus") return lego::proto::WriteCorpus(argv[2]);
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s CORPUS_DIR | --write-corpus DIR\n", argv[0]);
    return 2;
  }
  return lego::proto::RunAll(argv[1]);
}
