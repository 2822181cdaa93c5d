#!/usr/bin/python3
"""Unit tests of the benchmark suite's bookkeeping (bench/suite/report.py and the workloads' digests): the CSV
columns, the table's slowdowns and ratios, the verdicts against issue 5's targets, the fault-latency CDF. No
programs run here; bench/run --quick (label `suite`) runs the real thing."""
import csv
import math
import os
import sys
import tempfile
import unittest

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "bench", "suite"))
import report  # noqa: E402
import workloads  # noqa: E402


def result(w, s, f, seconds, status="ok", correct=None):
    r = report.Result(w, s, f)
    r.times.append(seconds)
    r.statuses.append(status)
    r.correct.append(status == "ok" if correct is None else correct)
    return r


class W:
    def __init__(self, name, kind="real", random_access=False):
        self.name, self.kind, self.random_access = name, kind, random_access


class ReportTest(unittest.TestCase):
    def test_csv_has_the_issue_columns_and_marks_stopped_runs_incorrect(self):
        rs = [result("sort", "local", 1.0, 2.0), result("sort", "lego", 0.25, 3.0),
              result("sort", "swap", 0.25, 60.0, "timeout"), result("sort", "zswap", 0.25, 1.0, "oom-killed"),
              report.Result("sort", "lego", 0.125)]  # never ran: no row
        with tempfile.TemporaryDirectory() as d:
            p = os.path.join(d, "r.csv")
            report.write_csv(p, rs)
            with open(p) as f:
                rows = list(csv.reader(f))
        self.assertEqual(rows[0], ["workload", "system", "local_mem_fraction", "seconds", "correct"])
        self.assertEqual(rows[1], ["sort", "local", "1.0", "2.000", "true"])
        self.assertEqual(rows[2], ["sort", "lego", "0.25", "3.000", "true"])
        self.assertEqual(rows[3][4], "false")
        self.assertEqual(rows[4][4], "false")
        self.assertEqual(len(rows), 5)

    def test_wrong_output_is_not_ok(self):
        r = result("x", "lego", 0.5, 1.0, "ok", correct=False)
        self.assertFalse(r.ok)
        self.assertEqual(r.status, "WRONG OUTPUT")

    def test_table_slowdowns_and_ratios(self):
        rs = [result("a", "local", 1.0, 2.0), result("a", "lego", 0.25, 3.0), result("a", "swap", 0.25, 6.0),
              result("a", "zswap", 0.25, 60.0, "timeout")]
        lines = report.table(rs, [W("a")], [0.25])
        row = lines[2]
        self.assertIn("| 1.50x |", row)  # Lego 3 s / local 2 s
        self.assertIn("| 3.00x |", row)  # swap
        self.assertIn("| 0.50 |", row)  # Lego / swap
        self.assertIn("zswap timeout after 60 s", row)

    def test_targets(self):
        ws = [W("fast"), W("slow", random_access=True)]
        rs = [result("fast", "local", 1.0, 1.0), result("fast", "lego", 0.25, 1.2),
              result("fast", "swap", 0.25, 2.0), result("fast", "zswap", 0.25, 1.1),
              result("slow", "local", 1.0, 1.0), result("slow", "lego", 0.25, 1.8),
              result("slow", "swap", 0.25, 3.0), result("slow", "zswap", 0.25, 5.0, "oom-killed")]
        lines, missed = report.targets(rs, ws, [0.25])
        text = "\n".join(lines)
        g = math.sqrt(1.2 * 1.8)
        self.assertIn("lego: %.2fx" % g, text)
        self.assertIn("<= 1.5x: met", text)
        self.assertIn("fast vs zswap", " ".join(missed))  # 1.2 s against 1.1 s: slower
        self.assertIn("slow vs swap", " ".join(missed))  # 1.67x faster, 2x needed (random access)
        self.assertNotIn("slow vs zswap", " ".join(missed))  # zswap did not finish
        self.assertNotIn("fast vs swap", " ".join(missed))
        self.assertIn("every workload at every fraction: met", text)

    def test_a_lego_timeout_misses_the_completion_target(self):
        rs = [result("a", "local", 1.0, 1.0), result("a", "lego", 0.125, 30.0, "timeout")]
        lines, missed = report.targets(rs, [W("a")], [0.125])
        self.assertIn("MISSED (a at 12.5%)", "\n".join(lines))
        self.assertTrue(missed)

    def test_paging_cost_per_event(self):
        lego = result("a", "lego", 0.25, 3.0)
        lego.fault_hist = {"lego_pmon_excache_misses_total": 100000}
        z = result("a", "zswap", 0.25, 1.5)
        z.paging = {"pswpin": 0, "zswpin": 50000}
        row = report.paging_table([result("a", "local", 1.0, 1.0), lego, z], [W("a")], [0.25])[-1]
        self.assertEqual(row, "| a | 25% | 100000 | 20.0 | - | - | 50000 | 10.0 |")  # (3-1)/1e5 s, (1.5-1)/5e4 s

    def test_fault_latency_cdf(self):
        h = {"lego_pmon_fault_latency_le_8192ns": 10, "lego_pmon_fault_latency_le_16384ns": 60,
             "lego_pmon_fault_latency_le_32768ns": 100, "lego_pmon_fault_latency_count": 100}
        xs, ys = report.cdf_points(h)
        self.assertEqual(xs, [8.192, 16.384, 32.768])
        self.assertEqual(ys, [0.1, 0.6, 1.0])
        self.assertEqual(report.quantile_us(h, 0.5), 16.384)
        self.assertEqual(report.quantile_us(h, 0.99), 32.768)
        self.assertEqual(report.cdf_points({}), ([], []))


class DigestTest(unittest.TestCase):
    def test_kv_digest_ignores_timings(self):
        check = workloads._kv("checksum")
        a = check(b"seq_scan mb=64 scan_ns=123 gbps=1.5 checksum=00ff\n")
        b = check(b"seq_scan mb=64 scan_ns=999 gbps=0.2 checksum=00ff\n")
        self.assertEqual(a, b)
        self.assertNotEqual(a, check(b"checksum=00fe"))
        self.assertIn("no checksum=", check(b"crashed"))

    def test_every_workload_is_described(self):
        names = [w.name for w in workloads.WORKLOADS]
        self.assertEqual(len(names), len(set(names)))
        self.assertEqual(sum(w.kind == "real" for w in workloads.WORKLOADS), 5)
        ctx = workloads.Ctx(repo="/r", build="/b", work="/w", quick=True)
        for w in workloads.WORKLOADS:
            self.assertTrue(w.size(ctx))
            if w.argv is not None:
                self.assertTrue(w.argv(ctx))


if __name__ == "__main__":
    unittest.main()
