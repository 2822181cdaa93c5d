"""The systems a workload runs on: all-local, Lego, Linux swap to a file, Linux swap with zswap.

Each system turns a program's argv into a running process with a given amount of local memory:
  local   the program as is, no limit
  lego    `lego run --excache N --keep-cwd -- PROGRAM`: N bytes of ExCache, the rest on the memory monitors
  swap    the program in a memory cgroup limited to N bytes (v1 memory.limit_in_bytes, v2 memory.max), with a
          swap file on disk
  zswap   the same, with zswap on (compressed swap cache in RAM in front of the swap file)

Everything this module changes on the host it puts back, on every exit path (the caller runs `close()` in a
`finally`): the Lego cluster goes down, the swap file is swapped off and deleted, zswap's `enabled` is
restored, cgroups are removed.
"""

from __future__ import annotations

import json
import os
import select
import shutil
import signal
import subprocess
import time

PAGE = 4096


class SetupError(Exception):
    """A system could not be set up (the suite reports the configuration as not run)."""


def _write(path: str, value: str) -> None:
    with open(path, "w") as f:
        f.write(value)


def _read(path: str) -> str:
    with open(path) as f:
        return f.read()


class Outcome:
    """How one run ended."""

    def __init__(self, seconds: float, status: str, stdout: bytes, stderr: bytes, maxrss_kb: int = 0):
        self.seconds = seconds
        self.status = status  # "ok", "timeout", "oom-killed", "failed: ..."
        self.stdout = stdout
        self.stderr = stderr
        self.maxrss_kb = maxrss_kb


def run_process(argv: list[str], timeout: float, cwd: str, out_path: str, prefix: list[str] | None = None,
                env: dict | None = None) -> Outcome:
    """Runs argv (after `prefix`) in its own session, stdout to out_path; kills the whole session on timeout.

    The time is wall-clock from fork to exit, what a user waiting for the program sees.
    """
    full = (prefix or []) + argv
    with open(out_path, "wb") as out, open(out_path + ".err", "wb") as err:
        t0 = time.monotonic()
        try:
            p = subprocess.Popen(full, stdout=out, stderr=err, stdin=subprocess.DEVNULL, cwd=cwd,
                                 start_new_session=True, env=env)
        except OSError as e:
            return Outcome(0.0, "failed: cannot start %s: %s" % (full[0], e), b"", b"")
        status = None
        try:
            # A pidfd becomes readable when the child exits: the exit is seen at once (no polling interval
            # added to short runs), and wait4 then reaps it with its rusage.
            pidfd = os.pidfd_open(p.pid)
            try:
                if not select.select([pidfd], [], [], timeout)[0]:
                    kill_session(p.pid)
                    status = "timeout"
            finally:
                os.close(pidfd)
            _, wstatus, rusage = os.wait4(p.pid, 0)
        except BaseException:  # interrupted (SIGINT/SIGTERM): the program must not outlive the suite
            kill_session(p.pid)
            os.wait4(p.pid, 0)
            raise
        seconds = time.monotonic() - t0
        p.returncode = os.waitstatus_to_exitcode(wstatus)
    kill_session(p.pid)  # anything the program left running in its session
    stdout = read_bytes(out_path)
    stderr = read_bytes(out_path + ".err")
    if status is None:
        rc = p.returncode
        if rc == 0:
            status = "ok"
        elif rc < 0:
            status = "failed: killed by signal %d" % -rc
        else:
            status = "failed: exit status %d" % rc
    return Outcome(seconds, status, stdout, stderr, rusage.ru_maxrss if rusage else 0)


def kill_session(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def read_bytes(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError:
        return b""


# ---- local ---------------------------------------------------------------------------------------------------

class Local:
    name = "local"
    env = None

    def prefix(self, local_bytes: int) -> list[str]:
        return []

    def begin_run(self, local_bytes: int) -> None:
        pass

    def end_run(self, outcome: Outcome) -> None:
        pass

    def close(self) -> None:
        pass


# ---- Lego ----------------------------------------------------------------------------------------------------

class Lego:
    """A private local cluster (its own LEGO_STATE_DIR) brought up once for all Lego runs."""

    name = "lego"

    def __init__(self, build: str, work: str, excache_budget: int, mmon_capacity: int, log,
                 eviction: str | None = None):
        self.log = log
        self.state = os.path.join(work, "lego-state")
        self.bin = os.path.join(work, "bin")
        # A private copy of the binaries: a rebuild during the run cannot mix versions.
        os.makedirs(self.bin, exist_ok=True)
        for b in ("lego", "lego-gm", "lego-pmon", "lego-mmon", "lego-smon", "liblego_preload.so"):
            src = os.path.join(build, "src", b)
            if not os.path.exists(src):
                raise SetupError("%s not found: build Lego first (scripts/build.sh) or pass --build-dir" % src)
            shutil.copy2(src, self.bin)
        self.lego = os.path.join(self.bin, "lego")
        self.env = dict(os.environ, LEGO_STATE_DIR=self.state, UCX_NET_DEVICES="lo")
        self.up = False
        self.fault_hist: dict[str, float] = {}
        self._before: dict[str, float] = {}
        mib = lambda b: "%dM" % max(1, (b + (1 << 20) - 1) >> 20)
        self.up_cmd = [self.lego, "up", "--excache", mib(excache_budget), "--mmon-capacity", mib(mmon_capacity),
                       "--transports", "sm,tcp"] + (["--eviction", eviction] if eviction else [])

    def start(self) -> None:
        cmd = self.up_cmd
        self.log("lego up: %s" % " ".join(cmd[1:]))
        self.up = True  # from here on, close() takes it down whatever happened
        r = subprocess.run(cmd, env=self.env, capture_output=True, text=True, timeout=180)
        if r.returncode != 0:
            raise SetupError("lego up failed: %s" % (r.stdout + r.stderr)[-800:])

    def prefix(self, local_bytes: int) -> list[str]:
        return [self.lego, "run", "--keep-cwd", "--excache", "%dK" % max(4, local_bytes >> 10), "--"]

    def begin_run(self, local_bytes: int) -> None:
        self._before = self.pmon_stats()

    def end_run(self, outcome: Outcome) -> None:
        after = self.pmon_stats()
        self.fault_hist = {k: after.get(k, 0) - self._before.get(k, 0) for k in after
                           if k.startswith("lego_pmon_fault_latency_le_") or k == "lego_pmon_fault_latency_count"
                           or k in ("lego_pmon_excache_misses_total", "lego_pmon_faults_total",
                                    "lego_pmon_writeback_bytes_total", "lego_pmon_fetched_bytes_total")}

    def pmon_stats(self) -> dict[str, float]:
        try:
            r = subprocess.run([self.lego, "stats", "--json"], env=self.env, capture_output=True, text=True,
                               timeout=30)
            for c in json.loads(r.stdout):
                if c.get("kind") == "pmon":
                    return {k: float(v) for k, v in c.get("stats", {}).items()}
        except (subprocess.SubprocessError, ValueError, OSError):
            pass
        return {}

    def close(self) -> None:
        if self.up:
            self.up = False
            r = subprocess.run([self.lego, "down"], env=self.env, capture_output=True, text=True, timeout=120)
            if r.returncode != 0 and os.path.exists(self.state):
                self.log("lego down: %s" % (r.stdout + r.stderr)[-400:])


# ---- Linux swap ----------------------------------------------------------------------------------------------

ZSWAP_ENABLED = "/sys/module/zswap/parameters/enabled"
PAGE_CLUSTER = "/proc/sys/vm/page-cluster"  # swap-in readahead: 2^N pages


def find_memory_cgroup() -> tuple[str, str]:
    """(kind, parent dir) of a usable memory cgroup hierarchy: v1 if mounted, else v2 with memory enabled."""
    v1 = v2 = None
    with open("/proc/mounts") as f:
        for line in f:
            dev, mnt, fstype, opts = line.split()[:4]
            if fstype == "cgroup" and "memory" in opts.split(",") and v1 is None:
                v1 = mnt
            elif fstype == "cgroup2" and v2 is None:
                v2 = mnt
    if v1:
        return "v1", v1
    if v2 and "memory" in _read(os.path.join(v2, "cgroup.controllers")).split() and \
            "memory" in _read(os.path.join(v2, "cgroup.subtree_control")).split():
        return "v2", v2
    raise SetupError("no memory cgroup controller (cgroup v1 memory or v2 with memory enabled)")


VMSTAT_KEYS = ("pswpin", "pswpout", "zswpin", "zswpout")


def vmstat() -> dict[str, int]:
    out = {}
    try:
        for line in _read("/proc/vmstat").splitlines():
            k, _, v = line.partition(" ")
            if k in VMSTAT_KEYS:
                out[k] = int(v)
    except OSError:
        pass
    return out


class Swap:
    """Linux swapping under a memory cgroup limit; `zswap` selects the compressed swap cache in front."""

    def __init__(self, work: str, swap_bytes: int, zswap: bool, log):
        """Checks what is needed; start() changes the host."""
        self.name = "zswap" if zswap else "swap"
        self.env = None
        self.log = log
        if os.geteuid() != 0:
            raise SetupError("needs root (swapon, memory cgroups)")
        self.cg_kind, self.cg_root = find_memory_cgroup()
        self.zswap = zswap
        self.zswap_before = None
        self.page_cluster_before = None
        if zswap:
            if not os.path.exists(ZSWAP_ENABLED):
                raise SetupError("this kernel has no zswap (%s)" % ZSWAP_ENABLED)
            self.zswap_before = _read(ZSWAP_ENABLED).strip()
        self.swapfile = os.path.join("/var/tmp", "lego-bench-swap.%d" % os.getpid())
        self.swap_on = False
        self.cgroup = None
        self._oom_before = 0
        self._vm_before: dict[str, int] = {}
        self.paging: dict[str, int] = {}
        self._seq = 0
        self.swap_bytes = swap_bytes

    def start(self) -> None:
        """Creates and enables the swap file (and zswap); the caller calls close() whatever happens."""
        mib = (self.swap_bytes + (1 << 20) - 1) >> 20
        self.log("%s: swap file %s (%d MiB), memory cgroup %s" % (self.name, self.swapfile, mib, self.cg_kind))
        try:
            # dd, not fallocate: some file systems refuse swap on files with unwritten extents.
            subprocess.run(["dd", "if=/dev/zero", "of=" + self.swapfile, "bs=1M", "count=%d" % mib, "status=none"],
                           check=True, timeout=600)
            os.chmod(self.swapfile, 0o600)
            subprocess.run(["mkswap", self.swapfile], check=True, capture_output=True, timeout=60)
            subprocess.run(["swapon", self.swapfile], check=True, capture_output=True, timeout=60)
            self.swap_on = True
            if self.zswap:
                _write(ZSWAP_ENABLED, "Y")
                # As recommended for RAM-backed swap: no swap-in readahead (each extra page read is a
                # decompression and a charge; with the default 8-page clusters the cgroup OOM-kills programs
                # on swap-in at small limits).
                self.page_cluster_before = _read(PAGE_CLUSTER).strip()
                _write(PAGE_CLUSTER, "0")
        except (subprocess.SubprocessError, OSError) as e:
            raise SetupError("cannot set up swap: %s" % e)

    def describe(self) -> str:
        params = ""
        if self.zswap:
            d = "/sys/module/zswap/parameters"
            params = ", vm.page-cluster 0, zswap " + ", ".join("%s=%s" % (p, _read(os.path.join(d, p)).strip())
                                            for p in ("compressor", "max_pool_percent") if os.path.exists(
                                                os.path.join(d, p)))
        limit = "memory.limit_in_bytes" if self.cg_kind == "v1" else "memory.max"
        return "swap file in /var/tmp, cgroup %s %s%s" % (self.cg_kind, limit, params)

    def begin_run(self, local_bytes: int) -> None:
        self._vm_before = vmstat()
        self._seq += 1
        self.cgroup = os.path.join(self.cg_root, "lego-bench-%d-%d" % (os.getpid(), self._seq))
        os.mkdir(self.cgroup)
        limit = max(local_bytes, 4 * PAGE)
        if self.cg_kind == "v1":
            _write(os.path.join(self.cgroup, "memory.limit_in_bytes"), str(limit))
        else:
            _write(os.path.join(self.cgroup, "memory.max"), str(limit))
        self._oom_before = self._oom_kills()

    def prefix(self, local_bytes: int) -> list[str]:
        # The shell moves itself into the cgroup and then becomes the program: nothing runs outside the limit.
        return ["/bin/sh", "-c", 'echo $$ > "$0/cgroup.procs" && exec "$@"', self.cgroup]

    def _oom_kills(self) -> int:
        try:
            f = "memory.oom_control" if self.cg_kind == "v1" else "memory.events"
            for line in _read(os.path.join(self.cgroup, f)).splitlines():
                k, _, v = line.partition(" ")
                if k == "oom_kill":
                    return int(v)
        except OSError:
            pass
        return 0

    def end_run(self, outcome: Outcome) -> None:
        if self._oom_kills() > self._oom_before and outcome.status != "ok":
            outcome.status = "oom-killed"
        self._remove_cgroup()
        after = vmstat()
        # Machine-wide counters: the suite runs one program at a time on an otherwise quiet machine.
        self.paging = {k: after.get(k, 0) - self._vm_before.get(k, 0) for k in VMSTAT_KEYS}

    def _remove_cgroup(self) -> None:
        if not self.cgroup:
            return
        for _ in range(100):
            try:
                for pid in _read(os.path.join(self.cgroup, "cgroup.procs")).split():
                    try:
                        os.kill(int(pid), signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                os.rmdir(self.cgroup)
                break
            except FileNotFoundError:
                break
            except OSError:
                time.sleep(0.1)
        else:
            self.log("could not remove cgroup %s" % self.cgroup)
        self.cgroup = None

    def close(self) -> None:
        self._remove_cgroup()
        if self.zswap and self.zswap_before is not None:
            try:
                _write(ZSWAP_ENABLED, self.zswap_before)
            except OSError as e:
                self.log("could not restore zswap enabled=%s: %s" % (self.zswap_before, e))
            self.zswap_before = None
        if self.page_cluster_before is not None:
            try:
                _write(PAGE_CLUSTER, self.page_cluster_before)
            except OSError as e:
                self.log("could not restore vm.page-cluster=%s: %s" % (self.page_cluster_before, e))
            self.page_cluster_before = None
        if self.swap_on:
            r = subprocess.run(["swapoff", self.swapfile], capture_output=True, text=True, timeout=600)
            if r.returncode != 0:
                self.log("swapoff %s failed: %s" % (self.swapfile, r.stderr.strip()))
            self.swap_on = False
        if os.path.exists(self.swapfile):
            os.unlink(self.swapfile)
