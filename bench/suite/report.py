"""The suite's outputs: results.csv, the results table (results.md, also printed), and the PNG plots."""

from __future__ import annotations

import csv
import math
import os
import statistics

SYSTEMS = ("local", "lego", "swap", "zswap")


class Result:
    """One configuration: a workload on a system with a local-memory fraction (median over repeats)."""

    def __init__(self, workload: str, system: str, fraction: float):
        self.workload = workload
        self.system = system
        self.fraction = fraction
        self.times: list[float] = []
        self.statuses: list[str] = []
        self.correct: list[bool] = []
        self.local_bytes = 0
        self.timeout = 0.0
        self.fault_hist: dict[str, float] = {}  # lego: the pmon's counters, deltas over the run
        self.paging: dict[str, int] = {}  # swap, zswap: /proc/vmstat deltas over the run

    @property
    def ran(self) -> bool:
        return bool(self.statuses)

    @property
    def ok(self) -> bool:
        return self.ran and all(self.correct)

    @property
    def seconds(self) -> float:
        return statistics.median(self.times) if self.times else float("nan")

    @property
    def status(self) -> str:
        bad = [s for s in self.statuses if s != "ok"]
        if not self.statuses:
            return "not run"
        if bad:
            return bad[0]
        return "ok" if self.ok else "WRONG OUTPUT"


def write_csv(path: str, results: list[Result]) -> None:
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["workload", "system", "local_mem_fraction", "seconds", "correct"])
        for r in results:
            if r.ran:
                w.writerow([r.workload, r.system, repr(float(r.fraction)), "%.3f" % r.seconds,
                            "true" if r.ok else "false"])


def _fmt(x: float, spec: str = "%.2f") -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else spec % x


def lookup(results: list[Result]) -> dict[tuple[str, str, float], Result]:
    return {(r.workload, r.system, r.fraction): r for r in results}


def table(results: list[Result], workloads, fractions: list[float]) -> list[str]:
    """Markdown: one row per workload and fraction: times, slowdowns against local, Lego/swap ratios."""
    idx = lookup(results)
    lines = ["| workload | local mem | local (s) | Lego (s) | swap (s) | zswap (s) | Lego slowdown | swap slowdown |"
             " zswap slowdown | Lego / swap | Lego / zswap | notes |",
             "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|"]
    for w in workloads:
        loc = idx.get((w.name, "local", 1.0))
        base = loc.seconds if loc and loc.ok else float("nan")
        for f in fractions:
            cells, notes = {}, []
            for s in ("lego", "swap", "zswap"):
                r = idx.get((w.name, s, f))
                if r is None or not r.ran:
                    cells[s] = (float("nan"), "-")
                    continue
                t = r.seconds
                if r.ok:
                    cells[s] = (t, _fmt(t))
                else:
                    cells[s] = (float("nan"), "%s (%s)" % (_fmt(t, "%.1f"), r.status))
                    notes.append("%s %s after %.0f s" % (s, r.status, t))
            slow = {s: cells[s][0] / base if base == base else float("nan") for s in cells}
            ratio = lambda a, b: cells[a][0] / cells[b][0] if cells[b][0] == cells[b][0] else float("nan")
            lines.append("| %s | %g%% | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
                w.name, f * 100, _fmt(base), cells["lego"][1], cells["swap"][1], cells["zswap"][1],
                _fmt(slow["lego"], "%.2fx"), _fmt(slow["swap"], "%.2fx"), _fmt(slow["zswap"], "%.2fx"),
                _fmt(ratio("lego", "swap"), "%.2f"), _fmt(ratio("lego", "zswap"), "%.2f"), "; ".join(notes)))
    return lines


def paging_table(results: list[Result], workloads, fractions: list[float]) -> list[str]:
    """Lego's ExCache misses against Linux's swap-ins, and the wall time each cost: (time - local) / events."""
    idx = lookup(results)
    lines = ["Lego: ExCache misses (pages fetched from a memory monitor on a fault). Swap: swap-ins (`pswpin` + "
             "`zswpin` from /proc/vmstat). Cost per event = (run time - local time) / events: everything the "
             "paging cost, spread over the events.", "",
             "| workload | local mem | Lego misses | Lego us/miss | swap-ins (swap) | us/swap-in | "
             "swap-ins (zswap) | us/swap-in |", "|---|--:|--:|--:|--:|--:|--:|--:|"]
    for w in workloads:
        loc = idx.get((w.name, "local", 1.0))
        if not (loc and loc.ok):
            continue
        for f in fractions:
            cells = []
            for s in ("lego", "swap", "zswap"):
                r = idx.get((w.name, s, f))
                if not (r and r.ran):
                    cells += ["-", "-"]
                    continue
                n = r.fault_hist.get("lego_pmon_excache_misses_total", 0) if s == "lego" else \
                    r.paging.get("pswpin", 0) + r.paging.get("zswpin", 0)
                per = (r.seconds - loc.seconds) * 1e6 / n if n and r.ok else float("nan")
                cells += ["%d%s" % (n, "" if r.ok else " (%s)" % r.status), _fmt(per, "%.1f")]
            lines.append("| %s | %g%% | %s |" % (w.name, f * 100, " | ".join(cells)))
    return lines


def geomean(xs: list[float]) -> float:
    xs = [x for x in xs if x == x and x > 0]
    return math.exp(sum(math.log(x) for x in xs) / len(xs)) if xs else float("nan")


def targets(results: list[Result], workloads, fractions: list[float]) -> tuple[list[str], list[str]]:
    """Issue 5's targets at 25% local memory: (report lines, missed targets)."""
    idx = lookup(results)
    lines, missed = [], []
    quarter = 0.25 if 0.25 in fractions else None

    def slowdown(w, s, f):
        loc, r = idx.get((w, "local", 1.0)), idx.get((w, s, f))
        if not (loc and loc.ok and r and r.ran):
            return float("nan")
        return r.seconds / loc.seconds if r.ok else float("inf")

    real = [w for w in workloads if w.kind == "real"]
    if quarter and real:
        for s in ("lego", "swap", "zswap"):
            g = geomean([slowdown(w.name, s, quarter) for w in real if slowdown(w.name, s, quarter) != float("inf")])
            incomplete = [w.name for w in real if slowdown(w.name, s, quarter) == float("inf")]
            lines.append("- geometric-mean slowdown of the real programs at 25%%, %s: %s%s" % (
                s, _fmt(g, "%.2fx"), " (not counting %s, which did not finish)" % ", ".join(incomplete)
                if incomplete else ""))
        g = geomean([slowdown(w.name, "lego", quarter) for w in real])
        ok = g == g and g <= 1.5 and all(slowdown(w.name, "lego", quarter) != float("inf") for w in real)
        lines.append("- target: Lego's geometric mean <= 1.5x: %s" % ("met" if ok else "MISSED"))
        if not ok:
            missed.append("geomean slowdown %s > 1.5x" % _fmt(g, "%.2fx"))
    incomplete = [(r.workload, r.fraction) for r in results if r.system == "lego" and r.ran and not r.ok]
    lines.append("- target: Lego completes every workload at every fraction: %s" % (
        "met" if not incomplete else "MISSED (%s)" % ", ".join("%s at %g%%" % (w, f * 100) for w, f in incomplete)))
    if incomplete:
        missed.append("Lego did not complete %d configurations" % len(incomplete))
    if quarter:
        for w in workloads:
            lego = idx.get((w.name, "lego", quarter))
            for s in ("swap", "zswap"):
                other = idx.get((w.name, s, quarter))
                if not (lego and lego.ran and other and other.ran):
                    continue
                need = 2.0 if w.random_access else 1.0
                what = ">= 2x faster, random access" if w.random_access else "faster"
                if not lego.ok:
                    good, verdict = False, "Lego did not finish (%s); %s %s in %.1f s" % (
                        lego.status, s, "finished" if other.ok else other.status, other.seconds)
                elif not other.ok:
                    good, verdict = True, "Lego finished in %.1f s; %s did not (%s after %.1f s)" % (
                        lego.seconds, s, other.status, other.seconds)
                else:
                    speedup = other.seconds / lego.seconds
                    good = speedup >= need
                    verdict = "Lego %.2f s, %s %.2f s: Lego %s" % (
                        lego.seconds, s, other.seconds,
                        "%.2fx faster" % speedup if speedup >= 1 else "%.2fx SLOWER" % (1 / speedup))
                lines.append("- %s vs %s at 25%% (need %s): %s: %s" % (w.name, s, what, verdict,
                                                                     "met" if good else "MISSED"))
                if not good:
                    missed.append("%s vs %s" % (w.name, s))
    return lines, missed


def plots(out_dir: str, results: list[Result], workloads, fractions: list[float]) -> list[str]:
    """slowdown.png (a panel per workload, a line per system) and fault_latency.png; returns the file names."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    idx = lookup(results)
    files = []
    n = len(workloads)
    cols = min(3, n)
    rows = (n + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.3 * rows), squeeze=False)
    styles = {"lego": ("tab:blue", "o"), "swap": ("tab:red", "s"), "zswap": ("tab:orange", "^")}
    for i, w in enumerate(workloads):
        ax = axes[i // cols][i % cols]
        loc = idx.get((w.name, "local", 1.0))
        base = loc.seconds if loc and loc.ok else None
        ax.axhline(1.0, color="gray", lw=1, ls="--", label="local")
        top = 1.0
        for s, (color, marker) in styles.items():
            xs, ys, fx, fy = [], [], [], []
            for f in fractions:
                r = idx.get((w.name, s, f))
                if not (r and r.ran and base):
                    continue
                if r.ok:
                    xs.append(f)
                    ys.append(r.seconds / base)
                else:  # a timeout or OOM kill: drawn as an x at the time it was stopped
                    fx.append(f)
                    fy.append(r.seconds / base)
            if xs:
                ax.plot(xs, ys, color=color, marker=marker, label=s)
                top = max(top, max(ys))
            if fx:
                ax.scatter(fx, fy, color=color, marker="x", s=60,
                           label="%s: stopped (timeout/OOM)" % s)
                top = max(top, max(fy))
        ax.set_title("%s (%s)" % (w.name, "real program" if w.kind == "real" else "micro"), fontsize=10)
        ax.set_xscale("log", base=2)
        ax.set_xticks(fractions)
        ax.set_xticklabels(["%g%%" % (f * 100) for f in fractions])
        ax.invert_xaxis()
        ax.set_yscale("log")
        ax.set_ylim(0.8, top * 1.5)
        ax.set_xlabel("local memory (fraction of peak working set)", fontsize=8)
        ax.set_ylabel("slowdown vs all-local", fontsize=8)
        ax.grid(True, which="both", alpha=0.3)
        if i == 0:
            ax.legend(fontsize=7)
    for j in range(n, rows * cols):
        axes[j // cols][j % cols].axis("off")
    fig.suptitle("Slowdown against all-local memory: Lego (shared-memory transport) vs Linux swap", fontsize=11)
    fig.tight_layout()
    fig.savefig(os.path.join(out_dir, "slowdown.png"), dpi=110)
    plt.close(fig)
    files.append("slowdown.png")

    # Fault service time under Lego (the pmon's histogram: from the fault's arrival to the page's install).
    lego = [r for r in results if r.system == "lego" and r.fault_hist.get("lego_pmon_fault_latency_count", 0) > 0]
    if lego:
        fig, axes = plt.subplots(1, len(fractions), figsize=(4.2 * len(fractions), 3.6), squeeze=False)
        for k, f in enumerate(fractions):
            ax = axes[0][k]
            for r in [r for r in lego if r.fraction == f]:
                xs, ys = cdf_points(r.fault_hist)
                if xs:
                    ax.step(xs, ys, where="post", label=r.workload)
            ax.set_xscale("log")
            ax.set_xlabel("fault service time (us)", fontsize=8)
            ax.set_ylabel("fraction of faults <", fontsize=8)
            ax.set_title("ExCache = %g%% of peak working set" % (f * 100), fontsize=10)
            ax.grid(True, which="both", alpha=0.3)
            ax.set_ylim(0, 1.01)
            if k == 0:
                ax.legend(fontsize=7)
        fig.suptitle("Lego fault-service-time distribution (CDF; power-of-two buckets)", fontsize=11)
        fig.tight_layout()
        fig.savefig(os.path.join(out_dir, "fault_latency.png"), dpi=110)
        plt.close(fig)
        files.append("fault_latency.png")
    return files


def cdf_points(hist: dict[str, float]) -> tuple[list[float], list[float]]:
    """The cumulative `lego_pmon_fault_latency_le_<N>ns` counts -> (bound in us, fraction of faults below it)."""
    total = hist.get("lego_pmon_fault_latency_count", 0)
    pts = []
    for k, v in hist.items():
        if k.startswith("lego_pmon_fault_latency_le_") and k.endswith("ns"):
            pts.append((int(k[len("lego_pmon_fault_latency_le_"):-2]) / 1000.0, v))
    pts.sort()
    if not total or not pts:
        return [], []
    return [p[0] for p in pts], [p[1] / total for p in pts]


def quantile_us(hist: dict[str, float], q: float) -> float:
    """The upper bound (us) of the power-of-two bucket holding quantile q."""
    xs, ys = cdf_points(hist)
    for x, y in zip(xs, ys):
        if y >= q:
            return x
    return float("nan")
