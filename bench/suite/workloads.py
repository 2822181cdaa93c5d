"""The benchmark suite's workloads: real programs and microbenchmarks, each at a quick and a full size.

A workload prepares its inputs once per suite run (in its own directory), then runs as many times as there
are configurations. Every run's output is reduced to a digest (`check`) that must equal the all-local run's:
a run that finishes with a different digest is wrong, whatever its time.

Peak working set: the peak resident set (ru_maxrss from wait4) of the workload's main process in the
all-local run, measured in the same suite run. It counts everything resident (heap, stacks, the program's
own text and libraries), so it is what a local-memory limit has to hold for the program never to page.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import random
import re
from typing import Callable


@dataclasses.dataclass
class Ctx:
    """What a workload needs to know to build its command lines."""

    repo: str  # repository root
    build: str  # build tree (bench programs under build/bench)
    work: str  # this workload's scratch directory (inputs, outputs)
    quick: bool


@dataclasses.dataclass
class Workload:
    name: str
    kind: str  # "real" (an unmodified program) or "micro"
    random_access: bool  # the >= 2x-faster-than-swap target applies
    what: str  # one line for the report: the program and what it does
    size: Callable[[Ctx], str]  # the size parameters, for the report
    prepare: Callable[[Ctx], None]
    argv: Callable[[Ctx], list[str]] | None  # None: a server workload (redis), run by the runner itself
    check: Callable[[bytes], str]  # the run's stdout -> the digest compared with the local run's
    env: dict[str, str] = dataclasses.field(default_factory=dict)  # added to the environment of every run


def _sha(out: bytes) -> str:
    return hashlib.sha256(out).hexdigest()[:32]


def _kv(key: str) -> Callable[[bytes], str]:
    """Digest = the value of KEY=VALUE in the program's output (timings on the same line are ignored)."""

    def check(out: bytes) -> str:
        m = re.findall(rb"\b" + key.encode() + rb"=(\S+)", out)
        return m[-1].decode() if m else "(no %s= in output: %r)" % (key, out[-200:])

    return check


def _nothing(ctx: Ctx) -> None:
    pass


# ---- python: examples/sort_records.py (build, sort and group a few hundred MB of dicts) ----------------------

def _py_n(ctx: Ctx) -> int:
    return 40_000 if ctx.quick else 100_000


# ---- sort: GNU sort with a buffer larger than its input (the whole file sorted in memory) ---------------------

def _sort_mb(ctx: Ctx) -> int:
    return 32 if ctx.quick else 64


def _sort_prepare(ctx: Ctx) -> None:
    r = random.Random(7)
    words = ["%x" % r.getrandbits(40) for _ in range(5000)]
    target = _sort_mb(ctx) << 20
    written = 0
    with open(os.path.join(ctx.work, "sort.in"), "w") as f:
        chunk = []
        while written < target:
            line = " ".join(r.choice(words) for _ in range(8)) + " %d\n" % r.getrandbits(32)
            chunk.append(line)
            written += len(line)
            if len(chunk) == 10000:
                f.write("".join(chunk))
                chunk = []
        f.write("".join(chunk))


# ---- zstd: compression with a long window (the window is held in memory and matched against at random) -------

def _zstd_params(ctx: Ctx) -> tuple[int, int]:
    """(window log, input MB)"""
    return (25, 48) if ctx.quick else (26, 96)


def _zstd_prepare(ctx: Ctx) -> None:
    wlog, mb = _zstd_params(ctx)
    r = random.Random(11)
    # Long-range redundancy: 64 KB chunks copied from a base far back, one byte changed per 4 KB, so that
    # the long-distance matcher has work to do across the whole window.
    base = r.randbytes(max(1 << 20, (1 << wlog) // 4))
    chunk = 64 << 10
    with open(os.path.join(ctx.work, "zstd.in"), "wb") as f:
        for _ in range((mb << 20) // chunk):
            off = r.randrange(0, len(base) - chunk)
            b = bytearray(base[off:off + chunk])
            for i in range(0, chunk, 4096):
                b[i + r.randrange(4096)] = r.getrandbits(8)
            f.write(b)


# ---- sqlite3: a query mix on an in-memory database ---------------------------------------------------------

def _sqlite_rows(ctx: Ctx) -> int:
    return 150_000 if ctx.quick else 400_000


def _sqlite_prepare(ctx: Ctx) -> None:
    n = _sqlite_rows(ctx)
    # Deterministic data (sqlite's random() is not seeded): values derived from the row id by multiplicative
    # hashing. The mix: bulk insert, index build, aggregates, a join, sorting, updates, deletes.
    sql = f"""
PRAGMA cache_size = -4000000;
CREATE TABLE orders(id INTEGER PRIMARY KEY, customer INTEGER, amount INTEGER, note TEXT);
CREATE TABLE customers(id INTEGER PRIMARY KEY, region INTEGER, name TEXT);
WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < {n})
INSERT INTO orders SELECT i, (i * 2654435761) % {n // 10 + 1}, (i * 40503) % 100000,
  printf('%08x-%s', (i * 2246822519) % 4294967296, hex(zeroblob(40))) FROM s;
WITH RECURSIVE s(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM s WHERE i < {n // 10})
INSERT INTO customers SELECT i, (i * 7919) % 50, printf('customer-%07d', i) FROM s;
CREATE INDEX orders_customer ON orders(customer);
CREATE INDEX orders_amount ON orders(amount);
SELECT count(*), sum(amount), min(note), max(note) FROM orders;
SELECT c.region, count(*), sum(o.amount) FROM orders o JOIN customers c ON c.id = o.customer
  GROUP BY c.region ORDER BY c.region LIMIT 10;
SELECT customer, sum(amount) AS total FROM orders GROUP BY customer ORDER BY total DESC, customer LIMIT 5;
SELECT id, amount FROM orders WHERE amount BETWEEN 500 AND 520 ORDER BY note LIMIT 5;
UPDATE orders SET amount = amount + 1 WHERE customer % 7 = 3;
DELETE FROM orders WHERE amount % 11 = 0;
SELECT count(*), sum(amount), count(DISTINCT customer) FROM orders;
SELECT note FROM orders ORDER BY note DESC LIMIT 3;
"""
    with open(os.path.join(ctx.work, "sqlite.sql"), "w") as f:
        f.write(sql)


# ---- redis: redis-server holding a dataset, driven by redis-cli --pipe and redis-benchmark -------------------

def redis_params(ctx: Ctx) -> tuple[int, int, int]:
    """(keys, value bytes, GET requests)"""
    return (40_000, 1024, 40_000) if ctx.quick else (100_000, 1024, 100_000)


def _redis_prepare(ctx: Ctx) -> None:
    keys, vbytes, _ = redis_params(ctx)
    # redis-benchmark -r N asks for key:%012d with a random number below N: load exactly those keys.
    with open(os.path.join(ctx.work, "redis.load"), "wb") as f:
        buf = []
        for i in range(keys):
            k = b"key:%012d" % i
            v = (b"%016x" % ((i * 2654435761) % (1 << 64))) * (vbytes // 16)
            buf.append(b"*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n" % (len(k), k, len(v), v))
            if len(buf) == 1000:
                f.write(b"".join(buf))
                buf = []
        f.write(b"".join(buf))


# ---- microbenchmarks (bench/*.c) ---------------------------------------------------------------------------

def _mb(ctx: Ctx, quick: int, full: int) -> int:
    return quick if ctx.quick else full


def _bin(ctx: Ctx, name: str) -> str:
    return os.path.join(ctx.build, "bench", name)


WORKLOADS: list[Workload] = [
    Workload(
        name="python", kind="real", random_access=False,
        what="Python 3: examples/sort_records.py builds N records (dicts), sorts and groups them",
        size=lambda c: "N=%d" % _py_n(c),
        prepare=_nothing,
        argv=lambda c: ["/usr/bin/python3", os.path.join(c.repo, "examples", "sort_records.py"), str(_py_n(c))],
        check=_sha),
    Workload(
        name="sort", kind="real", random_access=False,
        what="GNU sort -S 2G --parallel=1 (LC_ALL=C) of a text file, entirely in memory",
        size=lambda c: "%d MB input" % _sort_mb(c),
        prepare=_sort_prepare,
        argv=lambda c: ["sort", "-S", "2G", "--parallel=1", "-T", c.work, os.path.join(c.work, "sort.in")],
        check=_sha,
        env={"LC_ALL": "C"}),
    Workload(
        name="zstd", kind="real", random_access=False,
        what="zstd -T1 -3 --long (long-distance matching over a large window) of a file with far repeats",
        size=lambda c: "window 2^%d, %d MB input" % _zstd_params(c),
        prepare=_zstd_prepare,
        argv=lambda c: ["zstd", "-T1", "-3", "--long=%d" % _zstd_params(c)[0], "-c", "-q",
                        os.path.join(c.work, "zstd.in")],
        check=_sha),
    Workload(
        name="sqlite", kind="real", random_access=True,
        what="sqlite3 :memory: query mix: bulk insert, two indexes, aggregates, join, sort, update, delete",
        size=lambda c: "%d rows" % _sqlite_rows(c),
        prepare=_sqlite_prepare,
        argv=lambda c: ["sqlite3", ":memory:", ".read " + os.path.join(c.work, "sqlite.sql")],
        check=_sha),
    Workload(
        name="redis", kind="real", random_access=True,
        what="redis-server: load N 1 KB values (redis-cli --pipe), then redis-benchmark GETs of random keys",
        size=lambda c: "%d keys x %d B, %d GETs" % redis_params(c),
        prepare=_redis_prepare,
        argv=None,
        check=lambda out: out.decode(errors="replace").strip()),
    Workload(
        name="seq_scan", kind="micro", random_access=False,
        what="bench/seq_scan: write a region, then read it front to back",
        size=lambda c: "%d MB" % _mb(c, 64, 128),
        prepare=_nothing,
        argv=lambda c: [_bin(c, "seq_scan"), str(_mb(c, 64, 128))],
        check=_kv("checksum")),
    Workload(
        name="random_4k", kind="micro", random_access=True,
        what="bench/workload random: every page of a region visited in random order, 2 passes (reads + 1 write)",
        size=lambda c: "%d MB, 3 passes" % _mb(c, 64, 128),
        prepare=_nothing,
        argv=lambda c: [_bin(c, "workload"), str(_mb(c, 64, 128)), "3", "random"],
        check=_kv("checksum")),
    Workload(
        name="ptr_chase", kind="micro", random_access=True,
        what="bench/ptr_chase: dependent loads around one random cycle of 64-byte nodes",
        size=lambda c: "%d MB, %d steps" % (_mb(c, 64, 128), _mb(c, 300_000, 600_000)),
        prepare=_nothing,
        argv=lambda c: [_bin(c, "ptr_chase"), str(_mb(c, 64, 128)), str(_mb(c, 300_000, 600_000))],
        check=_kv("checksum")),
    Workload(
        name="hash_mt", kind="micro", random_access=True,
        what="bench/hash_mt: 2 threads insert into and look up in a sharded std::unordered_map",
        size=lambda c: "%d MB, 2 threads" % _mb(c, 48, 96),
        prepare=_nothing,
        argv=lambda c: [_bin(c, "hash_mt"), str(_mb(c, 48, 96)), "2"],
        check=_kv("checksum")),
]


def by_name() -> dict[str, Workload]:
    return {w.name: w for w in WORKLOADS}
