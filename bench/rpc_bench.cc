// lego-rpc-bench: round-trip latency and throughput of the Lego messenger (src/messaging/messenger.h).
//
// Server:  lego-rpc-bench --server --listen 127.0.0.1:0 --transport shm|tcp
//   Prints "LISTENING HOST:PORT" on stdout once it accepts connections (port 0 picks a free port), then
//   serves until SIGINT/SIGTERM. It serves any.echo_sized with one relaxation (below) and every other
//   built-in opcode unchanged.
// Client:  lego-rpc-bench --connect HOST:PORT --transport shm|tcp --threads N --reply-bytes R
//                         --request-bytes Q --seconds S [--warmup-seconds W] [--csv | --json]
//   N threads share one Messenger and one Channel (as a daemon's threads do) and each issues synchronous
//   Channel::Call back to back. Every call is timed; after a warm-up it reports p50/p90/p99/p999 round-trip
//   latency in microseconds and the aggregate throughput in calls per second.
//
// The request: the built-in any.echo_sized takes exactly an 8-byte EchoSizedReq, so a 64-byte request would
// be refused. The bench server therefore replaces that one handler (Messenger::Handle) with one that reads
// the EchoSizedReq at the front of the payload and ignores the padding after it; it does the same work as
// the built-in (one thread-local buffer, one Reply). With --request-bytes 8 the request is byte-for-byte
// the built-in one. Lego's own 24-byte MsgHeader travels in the UCX AM header on top of the payload.
//
// "shm" and "tcp" map to UCX_TLS values (see TransportTls below and docs/benchmarks-rpc.md). Connection
// set-up always goes through UCX's TCP sockaddr connection manager; UCX_TLS only picks the data lanes.
//
// Exit status: 0 on success; 1 if the run could not be done (connect failure, a call failed).
#include <signal.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include <fmt/format.h>
#include <CLI/CLI.hpp>

#include "common/log.h"
#include "common/util.h"
#include "messaging/messenger.h"
#include "protocol/any.h"
#include "protocol/wire.h"

namespace {

using Clock = std::chrono::steady_clock;
using namespace lego;

// UCX_TLS for each --transport. "shm": shared memory (posix and sysv mm transports for the messages, cma for
// zero-copy rendezvous of large ones) plus "tcp", which the sockaddr wire-up needs to be allowed (see the
// doc); UCX then prefers the shared-memory lanes for data. "tcp": TCP only.
Result<std::string> TransportTls(const std::string& transport, const std::string& override_tls) {
  if (!override_tls.empty()) return override_tls;
  if (transport == "shm") return std::string("sm,tcp");
  if (transport == "tcp") return std::string("tcp");
  return InvalidArgument(fmt::format("unknown transport '{}' (want shm or tcp)", transport));
}

struct Options {
  bool server = false;
  std::string listen = "127.0.0.1:0";
  std::string connect;
  std::string transport = "shm";
  std::string ucx_tls;  // overrides the transport mapping
  int threads = 1;
  uint32_t reply_bytes = 64;
  uint32_t request_bytes = 64;
  double seconds = 5;
  double warmup_seconds = 0.5;
  int spin_us = -1;  // -1: MessengerOptions' default
  int timeout_ms = 5000;
  bool csv = false;
  bool json = false;
  bool copy_reply = false;
  std::string log_level = "warn";
};

msg::MessengerOptions MakeMessengerOptions(const Options& o, const std::string& tls, const char* name) {
  msg::MessengerOptions mo;
  mo.name = name;
  mo.ucx_transports = tls;
  if (o.spin_us >= 0) mo.spin_us = o.spin_us;
  return mo;
}

int RunServer(const Options& o, const std::string& tls) {
  // Block the stop signals before any thread starts so that only sigwait below sees them.
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);

  auto addr = ParseHostPort(o.listen, /*allow_zero=*/true);
  if (!addr.ok()) {
    fmt::print(stderr, "lego-rpc-bench: --listen: {}\n", addr.status().ToString());
    return 1;
  }
  auto m = msg::Messenger::Create(MakeMessengerOptions(o, tls, "rpc-bench-server"));
  if (!m.ok()) {
    fmt::print(stderr, "lego-rpc-bench: {}\n", m.status().ToString());
    return 1;
  }
  msg::Messenger& messenger = *m.value();
  const uint32_t max_payload = messenger.options().max_payload;
  messenger.Handle(proto::kEchoSized, [max_payload](const msg::Incoming& in, msg::Responder r) {
    proto::EchoSizedReq req;
    if (in.payload.size() < sizeof(req)) return r.Error(InvalidArgument("echo_sized request too short"));
    std::memcpy(&req, in.payload.data(), sizeof(req));
    if (req.reply_bytes > max_payload) return r.Error(InvalidArgument("reply_bytes exceeds max payload"));
    thread_local proto::Bytes buf;
    if (buf.size() < req.reply_bytes) buf.resize(req.reply_bytes, 0x5a);
    r.Reply(std::span(buf.data(), req.reply_bytes));
  });
  Status st = messenger.Listen(addr.value());
  if (st.ok()) st = messenger.Start();
  if (!st.ok()) {
    fmt::print(stderr, "lego-rpc-bench: {}\n", st.ToString());
    return 1;
  }
  fmt::print("LISTENING {} transport={} ucx_tls={}\n", messenger.listen_address().ToString(), o.transport,
             tls);
  std::fflush(stdout);
  int sig = 0;
  sigwait(&set, &sig);
  messenger.Shutdown();
  return 0;
}

struct ThreadResult {
  std::vector<float> lat_us;
  uint64_t errors = 0;
  std::string first_error;
};

double Percentile(const std::vector<float>& sorted, double p) {
  if (sorted.empty()) return 0;
  size_t i = static_cast<size_t>(p / 100.0 * static_cast<double>(sorted.size() - 1) + 0.5);
  return sorted[std::min(i, sorted.size() - 1)];
}

int RunClient(const Options& o, const std::string& tls) {
  auto addr = ParseHostPort(o.connect);
  if (!addr.ok()) {
    fmt::print(stderr, "lego-rpc-bench: --connect: {}\n", addr.status().ToString());
    return 1;
  }
  if (o.request_bytes < sizeof(proto::EchoSizedReq)) {
    fmt::print(stderr, "lego-rpc-bench: --request-bytes must be at least {}\n", sizeof(proto::EchoSizedReq));
    return 1;
  }
  auto m = msg::Messenger::Create(MakeMessengerOptions(o, tls, "rpc-bench-client"));
  if (!m.ok()) {
    fmt::print(stderr, "lego-rpc-bench: {}\n", m.status().ToString());
    return 1;
  }
  msg::Messenger& messenger = *m.value();
  if (Status st = messenger.Start(); !st.ok()) {
    fmt::print(stderr, "lego-rpc-bench: {}\n", st.ToString());
    return 1;
  }
  auto ch = messenger.Connect(addr.value(), msg::Millis(o.timeout_ms));
  if (!ch.ok()) {
    fmt::print(stderr, "lego-rpc-bench: {}\n", ch.status().ToString());
    return 1;
  }
  std::shared_ptr<msg::Channel> channel = ch.value();

  proto::Bytes request(o.request_bytes, 0xa5);
  proto::EchoSizedReq req{o.reply_bytes, 0};
  std::memcpy(request.data(), &req, sizeof(req));

  // Phases: threads run warm-up calls until `measuring`, then record until `stop`.
  std::atomic<bool> measuring{false};
  std::atomic<bool> stop{false};
  std::vector<ThreadResult> results(o.threads);
  std::vector<uint64_t> measured_calls(o.threads, 0);
  const auto timeout = msg::Millis(o.timeout_ms);
  auto worker = [&](int t) {
    ThreadResult& r = results[t];
    r.lat_us.reserve(1 << 22);  // 16 MiB: no reallocation in runs of a few seconds
    uint64_t n = 0;
    // One clock read per call: each call is timed from the end of the previous one, so a latency also
    // covers this loop's own work (freeing the reply, recording the sample), as the throughput does.
    auto t0 = Clock::now();
    while (!stop.load(std::memory_order_relaxed)) {
      const bool rec = measuring.load(std::memory_order_relaxed);
      // By default the reply is read in place (Channel::CallView), as ucx_perftest's receiver leaves its
      // data where it landed; --copy-reply measures Call, which copies every reply into a buffer of its own.
      size_t got = 0;
      Status st;
      if (o.copy_reply) {
        auto reply = channel->Call(proto::kEchoSized, request, timeout);
        if (reply.ok())
          got = reply->size();
        else
          st = reply.status();
      } else {
        auto reply = channel->CallView(proto::kEchoSized, request, timeout);
        if (reply.ok())
          got = reply->bytes().size();
        else
          st = reply.status();
      }
      const auto t1 = Clock::now();
      const auto since = t0;
      t0 = t1;
      if (!st.ok() || got != o.reply_bytes) {
        if (r.errors++ == 0)
          r.first_error =
              st.ok() ? fmt::format("reply of {} bytes, want {}", got, o.reply_bytes) : st.ToString();
        if (r.errors > 100) break;
        continue;
      }
      if (rec) {
        r.lat_us.push_back(std::chrono::duration<float, std::micro>(t1 - since).count());
        ++n;
      }
    }
    measured_calls[t] = n;
  };
  std::vector<std::thread> threads;
  for (int t = 0; t < o.threads; ++t) threads.emplace_back(worker, t);
  std::this_thread::sleep_for(std::chrono::duration<double>(o.warmup_seconds));
  measuring.store(true);
  auto start = Clock::now();
  std::this_thread::sleep_for(std::chrono::duration<double>(o.seconds));
  stop.store(true);
  auto end = Clock::now();
  for (auto& th : threads) th.join();
  // Calls still in flight when `stop` was set finish a little after `end`: at most one per thread,
  // negligible.
  const double elapsed = std::chrono::duration<double>(end - start).count();

  std::vector<float> all;
  uint64_t errors = 0;
  std::string first_error;
  for (auto& r : results) {
    all.insert(all.end(), r.lat_us.begin(), r.lat_us.end());
    errors += r.errors;
    if (first_error.empty()) first_error = r.first_error;
  }
  std::sort(all.begin(), all.end());
  const double ops = static_cast<double>(all.size()) / elapsed;
  double mean = 0;
  for (float v : all) mean += v;
  if (!all.empty()) mean /= static_cast<double>(all.size());
  const double p50 = Percentile(all, 50), p90 = Percentile(all, 90), p99 = Percentile(all, 99),
               p999 = Percentile(all, 99.9);
  messenger.Shutdown();

  if (errors > 0) fmt::print(stderr, "lego-rpc-bench: {} calls failed; first: {}\n", errors, first_error);
  if (o.json) {
    fmt::print(
        "{{\"transport\":\"{}\",\"ucx_tls\":\"{}\",\"threads\":{},\"request_bytes\":{},\"reply_bytes\":{},"
        "\"seconds\":{:.3f},\"calls\":{},\"errors\":{},\"p50_us\":{:.3f},\"p90_us\":{:.3f},\"p99_us\":{:.3f},"
        "\"p999_us\":{:.3f},\"mean_us\":{:.3f},\"ops_per_s\":{:.0f}}}\n",
        o.transport, tls, o.threads, o.request_bytes, o.reply_bytes, elapsed, all.size(), errors, p50, p90,
        p99, p999, mean, ops);
  } else if (o.csv) {
    fmt::print("RESULT,{},{},{},{},{},{:.3f},{},{},{:.3f},{:.3f},{:.3f},{:.3f},{:.3f},{:.0f}\n", o.transport,
               tls, o.threads, o.request_bytes, o.reply_bytes, elapsed, all.size(), errors, p50, p90, p99,
               p999, mean, ops);
  } else {
    fmt::print("transport={} ucx_tls={} threads={} request_bytes={} reply_bytes={}\n", o.transport, tls,
               o.threads, o.request_bytes, o.reply_bytes);
    fmt::print("calls={} errors={} seconds={:.2f}\n", all.size(), errors, elapsed);
    fmt::print("latency_us p50={:.2f} p90={:.2f} p99={:.2f} p999={:.2f} mean={:.2f}\n", p50, p90, p99, p999,
               mean);
    fmt::print("throughput_ops_per_s={:.0f}\n", ops);
  }
  return (all.empty() || errors > 0) ? 1 : 0;
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  CLI::App app{"lego-rpc-bench: round-trip latency and throughput of the Lego messenger"};
  app.add_flag("--server", o.server, "Run the server (otherwise the client)");
  app.add_option("--listen", o.listen, "Server: HOST:PORT to listen on (port 0 picks one)");
  app.add_option("--connect", o.connect, "Client: the server's HOST:PORT");
  app.add_option("--transport", o.transport, "shm or tcp")->check(CLI::IsMember({"shm", "tcp"}));
  app.add_option("--ucx-tls", o.ucx_tls, "UCX_TLS value overriding the --transport mapping");
  app.add_option("--threads", o.threads, "Client threads, each calling back to back")
      ->check(CLI::Range(1, 64));
  app.add_option("--reply-bytes", o.reply_bytes, "Reply payload bytes")->check(CLI::Range(0u, 8u << 20));
  app.add_option("--request-bytes", o.request_bytes, "Request payload bytes (>= 8)")
      ->check(CLI::Range(8u, 8u << 20));
  app.add_option("--seconds", o.seconds, "Measured duration")->check(CLI::Range(0.01, 3600.0));
  app.add_option("--warmup-seconds", o.warmup_seconds, "Unmeasured warm-up")->check(CLI::Range(0.0, 600.0));
  app.add_flag(
      "--copy-reply", o.copy_reply,
      "Client: Channel::Call (reply copied into a buffer of the caller's) instead of CallView (reply "
      "read where UCX received it)");
  app.add_option("--spin-us", o.spin_us, "MessengerOptions::spin_us (default: the messenger's)");
  app.add_option("--timeout-ms", o.timeout_ms, "Per-call and connect timeout");
  auto* csv =
      app.add_flag("--csv", o.csv,
                   "Print one line: RESULT,transport,ucx_tls,threads,request_bytes,reply_bytes,seconds,"
                   "calls,errors,p50_us,p90_us,p99_us,p999_us,mean_us,ops_per_s");
  app.add_flag("--json", o.json, "Print one JSON object")->excludes(csv);
  app.add_option("--log-level", o.log_level, "trace|debug|info|warn|error");
  CLI11_PARSE(app, argc, argv);
  if (!o.server && o.connect.empty()) {
    fmt::print(stderr, "lego-rpc-bench: give --server or --connect HOST:PORT\n");
    return 2;
  }
  InitLogging(o.server ? "rpc-bench-server" : "rpc-bench-client", o.log_level);
  auto tls = TransportTls(o.transport, o.ucx_tls);
  if (!tls.ok()) {
    fmt::print(stderr, "lego-rpc-bench: {}\n", tls.status().ToString());
    return 2;
  }
  return o.server ? RunServer(o, tls.value()) : RunClient(o, tls.value());
}
