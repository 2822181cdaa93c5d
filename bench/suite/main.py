"""bench/run: Lego against all-local Linux and Linux swap (to a file, and with zswap), with plots.

Phases, in this order (each system is set up once and taken down before the next):
  1. inputs: each workload generates its input files in a scratch directory
  2. local: every workload without any limit; its output is the reference, its peak resident set (ru_maxrss)
     is the workload's peak working set, its time the baseline
  3. lego: a private local cluster (shared-memory transport); every workload with --excache at each fraction
     of its peak working set
  4. swap, 5. zswap: a swap file (zswap off, then on) and a memory cgroup limited to each fraction
Every run is checked against the local output. A run that is too slow is stopped at its timeout
(--timeout-factor x its local time, at least --min-timeout seconds) and counted as not correct.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

import report
import systems
import workloads as wl

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FRACTIONS = [1.0, 0.5, 0.25, 0.125]


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="bench/run",
        description="Runs real programs and microbenchmarks all-local, under Lego with the ExCache at 100/50/25/"
                    "12.5% of each one's peak working set, and under Linux swap (a swap file; then zswap) with "
                    "the same local-memory limit in a memory cgroup. Writes results.csv, results.md and PNG "
                    "plots to --out. Needs root (swap, cgroups) and a build (scripts/build.sh).",
        epilog="Exit status: 0 if every configuration ran and every finished run's output matched the local "
               "run's; 1 otherwise (a wrong output, a local or Lego run that crashed or failed, a system that "
               "could not be set up); 2 on bad arguments. Runs stopped by their timeout, and swap runs the "
               "cgroup OOM-killed, are results (correct=false, reported against the targets), not failures: "
               "timing never fails the suite.")
    p.add_argument("--quick", action="store_true",
                   help="small sizes (CI smoke test; under 15 minutes on 2 cores)")
    p.add_argument("--out", default=None,
                   help="output directory (default: bench-results/DATE-TIME under the current directory)")
    p.add_argument("--build-dir", default=os.path.join(REPO, "build"), help="build tree (default: %(default)s)")
    p.add_argument("--workloads", default=",".join(w.name for w in wl.WORKLOADS),
                   help="comma-separated subset (default: all: %(default)s)")
    p.add_argument("--systems", default="local,lego,swap,zswap",
                   help="comma-separated subset of local,lego,swap,zswap (local always runs: it is the reference)")
    p.add_argument("--fractions", default=",".join("%g" % f for f in FRACTIONS),
                   help="local-memory fractions of the peak working set (default: %(default)s)")
    p.add_argument("--repeat", type=int, default=1, help="runs per configuration; the median is reported")
    p.add_argument("--timeout-factor", type=float, default=None,
                   help="a run is stopped after this many times its local time (default: 20 quick, 30 full)")
    p.add_argument("--min-timeout", type=float, default=None,
                   help="but never before this many seconds (default: 30 quick, 60 full)")
    p.add_argument("--lego-eviction", choices=["fifo", "clock"], default=None,
                   help="the pmon's ExCache eviction policy (lego up --eviction; default: lego up's)")
    p.add_argument("--keep-work", action="store_true", help="keep the scratch directory (inputs, outputs, logs)")
    a = p.parse_args(argv)
    known = wl.by_name()
    a.workload_list = []
    for n in filter(None, a.workloads.split(",")):
        if n not in known:
            p.error("unknown workload '%s' (known: %s)" % (n, ", ".join(known)))
        a.workload_list.append(known[n])
    a.system_list = ["local"]
    for s in filter(None, a.systems.split(",")):
        if s not in report.SYSTEMS:
            p.error("unknown system '%s' (known: %s)" % (s, ", ".join(report.SYSTEMS)))
        if s != "local":
            a.system_list.append(s)
    try:
        a.fraction_list = sorted({float(f) for f in a.fractions.split(",") if f}, reverse=True)
    except ValueError:
        p.error("--fractions: numbers in (0, 1] expected, got '%s'" % a.fractions)
    if not a.fraction_list or any(not 0 < f <= 1 for f in a.fraction_list):
        p.error("--fractions: numbers in (0, 1] expected, got '%s'" % a.fractions)
    if a.repeat < 1:
        p.error("--repeat must be at least 1")
    if a.timeout_factor is None:
        a.timeout_factor = 20.0 if a.quick else 30.0
    if a.min_timeout is None:
        a.min_timeout = 30.0 if a.quick else 60.0
    if a.out is None:
        a.out = os.path.join(os.getcwd(), "bench-results", datetime.datetime.now().strftime("%Y%m%d-%H%M%S"))
    return a


class Suite:
    def __init__(self, args):
        self.args = args
        self.t_start = time.monotonic()
        self.work = tempfile.mkdtemp(prefix="lego-bench-", dir="/var/tmp")
        self.results: list[report.Result] = []
        self.failures: list[str] = []
        self.ref: dict[str, str] = {}
        self.peak: dict[str, int] = {}
        self.local_s: dict[str, float] = {}
        self.ctx: dict[str, wl.Ctx] = {}
        self.done = 0
        self.total = 0
        self.system_desc: dict[str, str] = {}

    def log(self, msg: str) -> None:
        el = time.monotonic() - self.t_start
        print("[%3d:%02d] %s" % (el // 60, el % 60, msg), flush=True)

    def fail(self, msg: str) -> None:
        self.failures.append(msg)
        self.log("FAILED: " + msg)

    # ---- running one configuration ----------------------------------------------------------------------

    def run_one(self, w: wl.Workload, system, fraction: float, res: report.Result) -> None:
        ctx = self.ctx[w.name]
        local_bytes = int(self.peak.get(w.name, 0) * fraction)
        timeout = max(self.args.min_timeout, self.args.timeout_factor * self.local_s.get(w.name, 0)) \
            if system.name != "local" else 3600.0
        res.local_bytes, res.timeout = local_bytes, timeout
        out_path = os.path.join(ctx.work, "out.%s.%g" % (system.name, fraction))
        system.begin_run(local_bytes)
        prefix = system.prefix(local_bytes)
        env = dict(system.env or os.environ, **w.env)
        if w.argv is None:
            o = run_redis(ctx, prefix, env, timeout, out_path)
        else:
            o = systems.run_process(w.argv(ctx), timeout, ctx.work, out_path, prefix, env)
        system.end_run(o)
        digest = w.check(o.stdout) if o.status == "ok" else ""
        if system.name == "local":
            if o.status == "ok":
                if w.name in self.ref and self.ref[w.name] != digest:
                    self.fail("%s: two local runs gave different outputs (%s, %s): the workload is not "
                              "deterministic" % (w.name, self.ref[w.name], digest))
                self.ref.setdefault(w.name, digest)
                self.peak[w.name] = max(self.peak.get(w.name, 0), o.maxrss_kb * 1024)
        correct = o.status == "ok" and digest == self.ref.get(w.name)
        res.times.append(o.seconds)
        res.statuses.append(o.status)
        res.correct.append(correct)
        if system.name == "lego":
            res.fault_hist = dict(getattr(system, "fault_hist", {}))
        if system.name in ("swap", "zswap"):
            res.paging = dict(system.paging)
        self.done += 1
        extra = ""
        if system.name != "local" and self.local_s.get(w.name):
            extra = " (%.2fx local)" % (o.seconds / self.local_s[w.name])
        if system.name == "lego" and res.fault_hist.get("lego_pmon_fault_latency_count"):
            h = res.fault_hist
            extra += ", %d faults, %d misses, fault p50 <= %.0f us" % (
                h["lego_pmon_fault_latency_count"], h.get("lego_pmon_excache_misses_total", 0),
                report.quantile_us(h, 0.5))
        if system.name in ("swap", "zswap"):
            extra += ", %d swap-ins (%d from zswap), %d swap-outs" % (
                res.paging.get("pswpin", 0) + res.paging.get("zswpin", 0), res.paging.get("zswpin", 0),
                res.paging.get("pswpout", 0) + res.paging.get("zswpout", 0))
        verdict = "ok" if correct else ("WRONG OUTPUT" if o.status == "ok" else o.status)
        self.log("[%d/%d] %-9s %-5s %5s local mem: %7.2f s%s  %s" % (
            self.done, self.total, w.name, system.name, "%g%%" % (fraction * 100), o.seconds, extra, verdict))
        if o.status == "ok" and not correct:
            self.fail("%s on %s at %g%%: output differs from the local run's (%s vs %s); output in %s" % (
                w.name, system.name, fraction * 100, digest[:80], self.ref.get(w.name, "")[:80], out_path))
        elif o.status not in ("ok", "timeout") and system.name in ("local", "lego"):
            self.fail("%s on %s at %g%%: %s: %s" % (w.name, system.name, fraction * 100, o.status,
                                                    o.stderr[-600:].decode(errors="replace").strip()))

    def run_system(self, system, fractions: list[float], names: list[wl.Workload]) -> None:
        for w in names:
            for f in fractions:
                res = report.Result(w.name, system.name, f)
                self.results.append(res)
                for _ in range(self.args.repeat):
                    self.run_one(w, system, f, res)

    # ---- the phases -----------------------------------------------------------------------------------

    def run(self) -> None:
        a = self.args
        ws = a.workload_list
        n_other = sum(len(a.fraction_list) for s in a.system_list if s != "local")
        self.total = len(ws) * a.repeat * (1 + n_other)
        self.log("Lego benchmark suite%s: %d workloads x (local + %s at %s of peak working set), %d runs; "
                 "scratch %s, results to %s" % (" (quick)" if a.quick else "", len(ws),
                                                "/".join(a.system_list[1:]) or "nothing else",
                                                "/".join("%g%%" % (f * 100) for f in a.fraction_list),
                                                self.total, self.work, a.out))
        for w in ws:
            d = os.path.join(self.work, w.name)
            os.makedirs(d)
            self.ctx[w.name] = wl.Ctx(repo=REPO, build=a.build_dir, work=d, quick=a.quick)
            if w.argv is not None:
                exe = w.argv(self.ctx[w.name])[0]
                if shutil.which(exe) is None:
                    raise systems.SetupError("%s: %s not found (scripts/setup.sh installs the suite's programs; "
                                             "bench programs come with the build)" % (w.name, exe))
            t0 = time.monotonic()
            w.prepare(self.ctx[w.name])
            self.log("inputs for %s (%s) ready in %.1f s" % (w.name, w.size(self.ctx[w.name]), time.monotonic() - t0))
        for tool in ("redis-server", "redis-cli", "redis-benchmark"):
            if any(w.argv is None for w in ws) and shutil.which(tool) is None:
                raise systems.SetupError("%s not found (scripts/setup.sh installs redis-server and redis-tools)"
                                         % tool)

        self.run_system(systems.Local(), [1.0], ws)
        for w in ws:
            loc = [r for r in self.results if r.workload == w.name and r.system == "local"][0]
            if loc.ok:
                self.local_s[w.name] = loc.seconds
                self.log("%s: peak working set %.1f MiB (ru_maxrss of the local run), local time %.2f s" % (
                    w.name, self.peak[w.name] / 2**20, loc.seconds))
        ok = [w for w in ws if w.name in self.local_s]
        if len(ok) < len(ws):
            self.fail("workloads without a local reference are not run elsewhere: %s" %
                      ", ".join(w.name for w in ws if w not in ok))

        biggest = max([self.peak[w.name] for w in ok] or [1 << 20])
        for name in a.system_list[1:]:
            system = None
            try:
                if name == "lego":
                    system = systems.Lego(a.build_dir, self.work, excache_budget=int(biggest * 1.1) + (64 << 20),
                                          mmon_capacity=max(2 << 30, 2 * biggest), log=self.log,
                                          eviction=a.lego_eviction)
                    system.start()
                    self.system_desc[name] = "lego up (1 pmon, 2 mmons), UCX shared memory, ExCache per run " \
                                             "= lego run --excache, eviction %s" % (a.lego_eviction or "default (fifo)")
                else:
                    system = systems.Swap(self.work, swap_bytes=max(1 << 30, 2 * biggest), zswap=name == "zswap",
                                          log=self.log)
                    system.start()
                    self.system_desc[name] = system.describe()
                self.run_system(system, a.fraction_list, ok)
            except systems.SetupError as e:
                self.fail("%s: not run: %s" % (name, e))
                for w in ok:
                    for f in a.fraction_list:
                        self.done += a.repeat
            finally:
                if system is not None:
                    system.close()

    # ---- outputs --------------------------------------------------------------------------------------

    def write_outputs(self) -> None:
        a = self.args
        os.makedirs(a.out, exist_ok=True)
        report.write_csv(os.path.join(a.out, "results.csv"), self.results)
        ws = [w for w in a.workload_list]
        lines = ["# Lego benchmark suite%s" % (" (quick)" if a.quick else ""), "",
                 "%s UTC; %s; %d CPUs, %.1f GiB RAM; kernel %s; commit %s" % (
                     datetime.datetime.utcnow().strftime("%Y-%m-%d %H:%M"), platform.node(), os.cpu_count(),
                     os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, platform.release(),
                     git_describe()),
                 "", "## Workloads", "",
                 "| workload | kind | program | size | peak working set (MiB) | local time (s) |",
                 "|---|---|---|---|--:|--:|"]
        for w in ws:
            ctx = self.ctx.get(w.name)
            lines.append("| %s | %s | %s | %s | %s | %s |" % (
                w.name, w.kind + (", random access" if w.random_access else ""), w.what,
                w.size(ctx) if ctx else "-", "%.1f" % (self.peak[w.name] / 2**20) if w.name in self.peak else "-",
                "%.2f" % self.local_s[w.name] if w.name in self.local_s else "-"))
        lines += ["", "Peak working set: ru_maxrss of the all-local run (wait4), in the same suite run. Local memory "
                  "at fraction f: f x that, as `lego run --excache` for Lego and as the memory cgroup's limit for "
                  "swap and zswap.", ""]
        for s, d in self.system_desc.items():
            lines.append("- %s: %s" % (s, d))
        lines += ["- timeouts: %.0fx the local time, at least %.0f s; repeats: %d (median)" % (
            a.timeout_factor, a.min_timeout, a.repeat), "", "## Results", ""]
        lines += report.table(self.results, ws, a.fraction_list)
        tl, missed = report.targets(self.results, ws, a.fraction_list)
        lines += ["", "## Targets (25% local memory)", ""] + tl
        lego_runs = [r for r in self.results if r.system == "lego" and r.fault_hist.get("lego_pmon_fault_latency_count")]
        if lego_runs:
            lines += ["", "## Lego fault service time (pmon-side, power-of-two buckets: upper bounds)", "",
                      "| workload | local mem | faults | ExCache misses | p50 (us) | p90 (us) | p99 (us) | "
                      "fetched (MiB) | written back (MiB) |", "|---|--:|--:|--:|--:|--:|--:|--:|--:|"]
            for r in lego_runs:
                h = r.fault_hist
                lines.append("| %s | %g%% | %d | %d | %.1f | %.1f | %.1f | %.1f | %.1f |" % (
                    r.workload, r.fraction * 100, h["lego_pmon_fault_latency_count"],
                    h.get("lego_pmon_excache_misses_total", 0), report.quantile_us(h, 0.5),
                    report.quantile_us(h, 0.9), report.quantile_us(h, 0.99),
                    h.get("lego_pmon_fetched_bytes_total", 0) / 2**20,
                    h.get("lego_pmon_writeback_bytes_total", 0) / 2**20))
        lines += ["", "## Paging events: how many, and what each cost", ""] + report.paging_table(
            self.results, ws, a.fraction_list)
        try:
            files = report.plots(a.out, self.results, ws, a.fraction_list)
            lines += ["", "## Plots", ""] + ["![%s](%s)" % (f, f) for f in files]
        except ImportError as e:
            self.fail("plots not drawn: %s (scripts/setup.sh installs python3-matplotlib)" % e)
        if self.failures:
            lines += ["", "## Failures", ""] + ["- " + f for f in self.failures]
        text = "\n".join(lines) + "\n"
        with open(os.path.join(a.out, "results.md"), "w") as f:
            f.write(text)
        print()
        print(text)
        if missed:
            print("Targets missed (not a failure of the suite): " + "; ".join(missed))


def git_describe() -> str:
    try:
        return subprocess.run(["git", "-C", REPO, "describe", "--always", "--dirty"], capture_output=True,
                              text=True, timeout=10).stdout.strip() or "?"
    except (OSError, subprocess.SubprocessError):
        return "?"


# ---- redis: a server under the system, clients outside it ------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_redis(ctx: wl.Ctx, prefix: list[str], env: dict | None, timeout: float, out_path: str) -> systems.Outcome:
    """Starts redis-server under the system (prefix), loads the dataset and runs redis-benchmark from outside,
    reads DBSIZE and DEBUG DIGEST (the output compared with the local run's), shuts the server down. The time
    is the load plus the benchmark (not the server's start)."""
    keys, _, gets = wl.redis_params(ctx)
    port = free_port()
    argv = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
            "--enable-debug-command", "yes", "--dir", ctx.work, "--daemonize", "no"]
    cli = ["redis-cli", "-p", str(port)]
    err = open(out_path + ".err", "wb")
    server = subprocess.Popen(prefix + argv, stdout=err, stderr=err, stdin=subprocess.DEVNULL, cwd=ctx.work,
                              start_new_session=True, env=env)
    t_start = time.monotonic()
    deadline = t_start + timeout + 30
    status, digest, seconds = None, b"", 0.0

    def call(args, stdin=None, limit=None):
        left = deadline - time.monotonic() if limit is None else limit
        return subprocess.run(cli + args, stdin=stdin, capture_output=True, timeout=max(1.0, left))

    try:
        while True:  # wait for the server
            if _exited(server.pid):
                status = "failed: redis-server exited: %s" % systems.read_bytes(out_path + ".err")[-400:].decode(
                    errors="replace").strip()
                break
            try:
                if call(["ping"], limit=2).stdout.strip() == b"PONG":
                    break
            except subprocess.TimeoutExpired:
                pass
            if time.monotonic() - t_start > 30:
                status = "failed: redis-server did not answer PING within 30 s"
                break
            time.sleep(0.05)
        if status is None:
            t0 = time.monotonic()
            deadline = t0 + timeout
            with open(os.path.join(ctx.work, "redis.load"), "rb") as load:
                r = call(["--pipe"], stdin=load)
            if b"errors: 0" not in r.stdout:
                status = "failed: redis-cli --pipe: %s" % (r.stdout + r.stderr)[-300:].decode(errors="replace")
            else:
                bench = subprocess.run(["redis-benchmark", "-p", str(port), "-t", "get", "-n", str(gets), "-r",
                                        str(keys), "-c", "4", "-P", "4", "-q"], capture_output=True,
                                       timeout=max(1.0, deadline - time.monotonic()))
                seconds = time.monotonic() - t0
                if bench.returncode != 0:
                    status = "failed: redis-benchmark: %s" % bench.stderr[-300:].decode(errors="replace")
                else:
                    size = call(["dbsize"], limit=60)
                    dig = call(["debug", "digest"], limit=120)
                    if size.returncode != 0 or dig.returncode != 0 or not dig.stdout.strip():
                        # The server is gone (a memory cgroup's OOM kill, say): the run did not finish;
                        # an empty digest is not a wrong answer.
                        why = (size.stdout + size.stderr + dig.stdout + dig.stderr)[-300:].decode(errors="replace")
                        status = "failed: redis-cli after the benchmark: %s%s" % (
                            why.strip(), " (redis-server exited)" if _exited(server.pid) else "")
                    else:
                        digest = b"dbsize=%s digest=%s\n" % (size.stdout.strip(), dig.stdout.strip())
                        status = "ok"
    except subprocess.TimeoutExpired:
        status, seconds = "timeout", time.monotonic() - (deadline - timeout)
    finally:
        try:
            subprocess.run(cli + ["shutdown", "nosave"], capture_output=True, timeout=10)
        except subprocess.TimeoutExpired:
            pass
        rusage = _reap(server.pid, 15)
        err.close()
    with open(out_path, "wb") as f:
        f.write(digest)
    return systems.Outcome(seconds, status, digest, systems.read_bytes(out_path + ".err"),
                           rusage.ru_maxrss if rusage else 0)


def _exited(pid: int) -> bool:
    """Whether pid has exited, without reaping it (its rusage is read later)."""
    try:
        return os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
    except ChildProcessError:
        return True


def _reap(pid: int, grace: float):
    """Waits up to `grace` seconds for pid to exit, then kills its session; returns its rusage."""
    end = time.monotonic() + grace
    try:
        while time.monotonic() < end:
            p, _, rusage = os.wait4(pid, os.WNOHANG)
            if p == pid:
                systems.kill_session(pid)  # anything it left in its session
                return rusage
            time.sleep(0.05)
        systems.kill_session(pid)
        return os.wait4(pid, 0)[2]
    except ChildProcessError:
        systems.kill_session(pid)
        return None


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    if os.geteuid() != 0 and any(s in args.system_list for s in ("swap", "zswap")):
        print("bench/run: the swap and zswap systems need root (swapon, memory cgroups); run as root or pass "
              "--systems local,lego", file=sys.stderr)
        return 2

    def on_signal(signum, frame):
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    suite = Suite(args)
    interrupted = 0
    try:
        suite.run()
    except systems.SetupError as e:
        suite.fail(str(e))
    except SystemExit as e:  # SIGINT/SIGTERM: the systems were undone on the way out; report what ran
        interrupted = e.code if isinstance(e.code, int) else 130
        suite.fail("interrupted by signal %d: the results are partial" % (interrupted - 128))
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if not args.keep_work:
            shutil.rmtree(suite.work, ignore_errors=True)
        else:
            suite.log("scratch directory kept: %s" % suite.work)
    suite.write_outputs()
    if interrupted:
        return interrupted
    if suite.failures:
        print("%d failure(s):" % len(suite.failures))
        for f in suite.failures:
            print("  " + f)
        return 1
    print("bench/run: all configurations ran; every finished run's output matched the local run's. Results: %s"
          % args.out)
    return 0
