#!/usr/bin/env bash
# run_memory_bench.sh: Lego's disaggregated memory against its floors and against Linux swap (issue 3's
# performance section), all in one run on this machine. Writes markdown tables on stdout.
#
#  1. Remote 4 KB fault, random access, ExCache full of clean pages: bench/fault_lat under `lego run` with an
#     ExCache of 1/8 of its region, over shared memory and over TCP; p50/p99 per fault from the program's
#     side (clock_gettime around each access; accesses > 1 us count as faults). Floors measured in the same
#     run: bench/uffd_floor (a raw userfaultfd fault resolved by UFFDIO_COPY from a thread of the same process:
#     p50 per fault, threads unpinned and both pinned to one CPU), bench/dontneed_cost (what dropping an
#     evicted page costs) and ucx_perftest ucp_am_lat 4096 (one-way,
#     doubled: a raw UCX 4 KB round trip). floor = min(uffd unpinned, uffd same-CPU) + UCX round trip.
#  2. Sequential scan of a region 4x the ExCache over shared memory: bench/seq_scan, GB/s with prefetch
#     (also over TCP and all-local, for reference).
#  3. bench/workload (random and sequential page order, working set 4x the local memory) under Lego with
#     ExCache = 25% of the working set, all-local (no limit), and under Linux swap to a swap file with the same
#     memory limit (memory cgroup v1 memory.limit_in_bytes, or v2 memory.max). Times are wall-clock medians.
#
# Every program prints a checksum; every run's checksum is compared with a plain local run's.
# Repeats: each configuration runs REPEAT times and the median is printed (the machine is noisy).
#
# Cleanup on every exit path: the Lego cluster goes down (own LEGO_STATE_DIR), the swap file is swapped
# off and deleted (swap is left exactly as found: `swapon --show` is compared), the cgroup is removed.
# The swap part needs root and a memory cgroup; without them it is reported as skipped.
#
# Exit status: non-zero only if a configuration failed to run or printed a wrong checksum; never because of
# timing or a missed target.
#
# Usage: bench/run_memory_bench.sh [--quick] [--build-dir DIR] [--repeat N] [--csv FILE] [--no-swap] [--verbose]
#   --quick       CI smoke test: small sizes, 1 repeat (< 3 minutes)
#   --build-dir   build tree with src/lego and bench/ programs (default: build/ under the repository)
#   --repeat      runs per configuration (default 3; 1 with --quick)
#   --csv FILE    also write one CSV row per measured value
#   --no-swap     skip the Linux swap baseline
#   --verbose     progress lines on stderr
set -u -o pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
QUICK=0
BUILD=""
REPEAT=""
CSV_OUT=""
NO_SWAP=0
VERBOSE=0
while [[ $# -gt 0 ]]; do
  case "$1" in
    --quick) QUICK=1 ;;
    --build-dir) BUILD="$2"; shift ;;
    --repeat) REPEAT="$2"; shift ;;
    --csv) CSV_OUT="$2"; shift ;;
    --no-swap) NO_SWAP=1 ;;
    --verbose) VERBOSE=1 ;;
    -h|--help) awk 'NR > 1 && /^#/ {sub(/^# ?/, ""); print; next} NR > 1 {exit}' "$0"; exit 0 ;;
    *) echo "run_memory_bench.sh: unknown argument '$1'" >&2; exit 2 ;;
  esac
  shift
done
: "${BUILD:=$REPO/build}"
LEGO="$BUILD/src/lego"
for b in "$LEGO" "$BUILD/bench/fault_lat" "$BUILD/bench/seq_scan" "$BUILD/bench/workload" "$BUILD/bench/uffd_floor" \
         "$BUILD/bench/dontneed_cost"; do
  if [[ ! -x "$b" ]]; then
    echo "run_memory_bench.sh: $b not found; build it (cmake --build $BUILD) or pass --build-dir" >&2
    exit 2
  fi
done
for t in ucx_perftest python3 ss; do
  command -v "$t" >/dev/null || { echo "run_memory_bench.sh: $t not found" >&2; exit 2; }
done

if [[ $QUICK -eq 1 ]]; then
  : "${REPEAT:=1}"
  FL_REPEAT=$REPEAT
  FL_MB=64; FL_EXC_MB=8        # section 1: region, ExCache (1/8)
  SC_EXC_MB=16                 # section 2: ExCache; region = 4x
  WS_MB=64; WS_PASSES=2        # section 3: working set; local memory = 25%
  UF_MB=16                     # uffd floor region
  PT_ITERS_SHM=10000; PT_ITERS_TCP=2000; PT_WARMUP=500
  SWAP_MB=512
else
  : "${REPEAT:=3}"
  FL_REPEAT=$((REPEAT < 5 ? 5 : REPEAT))   # the fault latency is bimodal here: more runs for its median
  FL_MB=256; FL_EXC_MB=32
  SC_EXC_MB=64
  WS_MB=256; WS_PASSES=3
  UF_MB=64
  PT_ITERS_SHM=100000; PT_ITERS_TCP=20000; PT_WARMUP=5000
  SWAP_MB=2048
fi
SC_MB=$((4 * SC_EXC_MB))
WS_LIM_MB=$((WS_MB / 4))
PMON_BUDGET=256M
RUN_LIMIT=900   # seconds: a hung configuration fails instead of blocking CI

# Everything stays on loopback; UCX_TLS per transport as in run_rpc_bench.sh (the sockaddr connection
# manager needs tcp allowed even for shm).
export UCX_NET_DEVICES=lo
tls_for() { case "$1" in shm) echo "sm,tcp" ;; tcp) echo "tcp" ;; esac; }

WORK="$(mktemp -d /tmp/lego-mem-bench.XXXXXX)"
export LEGO_STATE_DIR="$WORK/lego-state"
# A private copy of the binaries (lego finds the daemons and the preload library next to itself), so that a
# rebuild during the run cannot mix versions.
mkdir -p "$WORK/bin"
cp "$BUILD/src/lego" "$BUILD/src/lego-gm" "$BUILD/src/lego-pmon" "$BUILD/src/lego-mmon" "$BUILD/src/lego-smon" \
  "$BUILD/src/liblego_preload.so" "$WORK/bin/" || { echo "run_memory_bench.sh: cannot copy the binaries" >&2; rm -rf "$WORK"; exit 2; }
LEGO="$WORK/bin/lego"
CLUSTER_UP=0
SWAPFILE=""
SWAP_ON=0
SWAP_BEFORE="$(swapon --show --noheadings --raw 2>/dev/null | sort)"
CGROUP=""
PIDS=()

log() { [[ $VERBOSE -eq 1 ]] && echo "[${SECONDS}s] $*" >&2; return 0; }
FAILED=0
fail() { echo "FAILED: $*" >&2; FAILED=$((FAILED + 1)); }

cluster_down() {
  if [[ $CLUSTER_UP -eq 1 || -e "$LEGO_STATE_DIR" ]]; then
    "$LEGO" down >"$WORK/down.log" 2>&1 || { [[ -e "$LEGO_STATE_DIR" ]] && cat "$WORK/down.log" >&2; }
  fi
  CLUSTER_UP=0
}

cleanup() {
  local pid
  for pid in "${PIDS[@]}"; do
    kill -TERM "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
  done
  PIDS=()
  cluster_down
  if [[ -n "$CGROUP" && -d "$CGROUP" ]]; then
    for pid in $(cat "$CGROUP/cgroup.procs" 2>/dev/null); do kill -KILL "$pid" 2>/dev/null; done
    for _ in $(seq 50); do rmdir "$CGROUP" 2>/dev/null && break; sleep 0.1; done
    [[ -d "$CGROUP" ]] && echo "run_memory_bench.sh: could not remove cgroup $CGROUP" >&2
  fi
  CGROUP=""
  if [[ $SWAP_ON -eq 1 ]]; then
    swapoff "$SWAPFILE" || echo "run_memory_bench.sh: swapoff $SWAPFILE failed" >&2
    SWAP_ON=0
  fi
  [[ -n "$SWAPFILE" ]] && rm -f "$SWAPFILE"
  SWAPFILE=""
  local after
  after="$(swapon --show --noheadings --raw 2>/dev/null | sort)"
  [[ "$after" != "$SWAP_BEFORE" ]] && echo "run_memory_bench.sh: WARNING: swap differs from before the run" >&2
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Runs a command in the background (so that a trapped signal interrupts the wait at once) and waits for it;
# sets WALL_NS.
run_waited() {
  local t0 t1
  t0=$(date +%s%N)
  "$@" &
  local pid=$!
  PIDS+=("$pid")
  wait "$pid"
  local rc=$?
  t1=$(date +%s%N)
  WALL_NS=$((t1 - t0))
  local keep=() p
  for p in "${PIDS[@]}"; do [[ "$p" != "$pid" ]] && keep+=("$p"); done
  PIDS=("${keep[@]}")
  return $rc
}

# kv KEY FILE: the value of KEY=VALUE in the program's output line.
kv() { grep -o "\\b$1=[^ ]*" "$2" 2>/dev/null | tail -1 | cut -d= -f2; }

# median of the arguments (empty if none); fmt ratio helpers.
median() { printf '%s\n' "$@" | grep -v '^$' | sort -g | awk '{v[NR]=$1} END{if(NR) print v[int((NR+1)/2)]}'; }
div() { awk -v a="$1" -v b="$2" -v f="${3:-%.2f}" 'BEGIN{if (a == "" || b == "" || b + 0 == 0) print "-"; else printf f "\n", a / b}'; }
fmtn() { awk -v a="$1" -v f="${2:-%.1f}" 'BEGIN{if (a == "") print "-"; else printf f "\n", a}'; }

declare -A R   # results: R[key] = median value
CSV_ROWS=()
# put SECTION CONFIG METRIC UNIT VALUES...: stores the median as R[CONFIG.METRIC] and a CSV row.
put() {
  local section="$1" config="$2" metric="$3" unit="$4"; shift 4
  local m
  m="$(median "$@")"
  R[$config.$metric]="$m"
  R[$config.$metric.min]="$(printf '%s\n' "$@" | grep -v '^$' | sort -g | head -1)"
  R[$config.$metric.max]="$(printf '%s\n' "$@" | grep -v '^$' | sort -g | tail -1)"
  CSV_ROWS+=("$section,$config,$metric,$m,$unit,$#")
}

# ---- reference checksums and the all-local baseline --------------------------------------------------------

declare -A REF
# check NAME OUT: compares the checksum in OUT with the local reference REF[NAME]; non-zero on mismatch.
check() {
  local got
  got="$(kv checksum "$2")"
  if [[ -z "$got" || "$got" != "${REF[$1]}" ]]; then
    fail "$1: checksum '${got}' != local '${REF[$1]}' ($(head -c 300 "$2"))"
    return 1
  fi
}

# local_run NAME OUT CMD...: a plain run; non-zero (and a failure) if it failed.
local_run() {
  local name="$1" out="$2"; shift 2
  log "local $name: $*"
  if ! run_waited timeout -k 5 "$RUN_LIMIT" "$@" >"$out" 2>"$out.err"; then
    fail "local $name: $* ($(tail -c 300 "$out" "$out.err"))"
    return 1
  fi
}

LOAD_START="$(cut -d' ' -f1-3 /proc/loadavg)"
echo "## Lego memory benchmark ($(date -u +%Y-%m-%dT%H:%M:%SZ), $(nproc) CPUs, $(uname -r), $(git -C "$REPO" describe --always --dirty 2>/dev/null), repeat $REPEAT$([[ $QUICK -eq 1 ]] && echo ', quick'))"
echo

# The reference runs: checksums, and the all-local numbers.
FL_CMD=("$BUILD/bench/fault_lat" "$FL_MB")
SC_CMD=("$BUILD/bench/seq_scan" "$SC_MB")
WR_CMD=("$BUILD/bench/workload" "$WS_MB" "$WS_PASSES" random)
WQ_CMD=("$BUILD/bench/workload" "$WS_MB" "$WS_PASSES" seq)
local_run fault_lat "$WORK/ref.fl" "${FL_CMD[@]}" && REF[fault_lat]="$(kv checksum "$WORK/ref.fl")"
vals=()
for ((i = 0; i < REPEAT; i++)); do
  local_run seq_scan "$WORK/ref.sc" "${SC_CMD[@]}" || break
  REF[seq_scan]="$(kv checksum "$WORK/ref.sc")"
  vals+=("$(kv gbps "$WORK/ref.sc")")
done
put scan local gbps GB/s "${vals[@]}"
for order in random seq; do
  if [[ $order == random ]]; then cmd=("${WR_CMD[@]}"); else cmd=("${WQ_CMD[@]}"); fi
  walls=(); acc=()
  for ((i = 0; i < REPEAT; i++)); do
    local_run "workload_$order" "$WORK/ref.w$order" "${cmd[@]}" || break
    REF[workload_$order]="$(kv checksum "$WORK/ref.w$order")"
    walls+=("$(div "$WALL_NS" 1e9 %.3f)")
    acc+=("$(div "$(kv access_ns "$WORK/ref.w$order")" 1e9 %.3f)")
  done
  put workload "local_$order" wall_s s "${walls[@]}"
  put workload "local_$order" access_s s "${acc[@]}"
done

# ---- floors: raw userfaultfd and raw UCX -----------------------------------------------------------------

for mode in any same; do
  f=(); c=(); w=()
  for ((i = 0; i < REPEAT; i++)); do
    local_run "uffd_floor_$mode" "$WORK/uf.$mode" "$BUILD/bench/uffd_floor" "$UF_MB" "$mode" || break
    f+=("$(div "$(kv fault_p50_ns "$WORK/uf.$mode")" 1000 %.2f)")
    c+=("$(div "$(kv copy_p50_ns "$WORK/uf.$mode")" 1000 %.2f)")
    w+=("$(div "$(kv wake_p50_ns "$WORK/uf.$mode")" 1000 %.2f)")
  done
  put floor "uffd_$mode" fault_p50_us us "${f[@]}"
  put floor "uffd_$mode" copy_p50_us us "${c[@]}"
  put floor "uffd_$mode" wake_p50_us us "${w[@]}"
done

# What dropping an evicted page costs the program's helper thread (MADV_DONTNEED), alone, with another thread
# of the program running on the other CPU (TLB-shootdown IPI), and batched by process_madvise.
if [[ $(nproc) -ge 2 ]]; then
  a=(); b=(); c=()
  for ((i = 0; i < REPEAT; i++)); do
    local_run dontneed_cost "$WORK/dn" "$BUILD/bench/dontneed_cost" "$UF_MB" || break
    a+=("$(div "$(kv alone_ns_per_page "$WORK/dn")" 1000 %.2f)")
    b+=("$(div "$(kv other_cpu_busy_ns_per_page "$WORK/dn")" 1000 %.2f)")
    c+=("$(div "$(kv process_madvise256_ns_per_page "$WORK/dn")" 1000 %.2f)")
  done
  put floor dontneed alone_us us "${a[@]}"
  put floor dontneed ipi_us us "${b[@]}"
  put floor dontneed batched_us us "${c[@]}"
fi

# run_perftest TLS SIZE ITERS: sets P_LAT (one-way latency, us; ucx_perftest's typical value); non-zero on
# failure. As in run_rpc_bench.sh.
run_perftest() {
  local tls="$1" size="$2" iters="$3"
  local attempt port spid rc up out="$WORK/perftest.out"
  P_LAT=""
  for attempt in 1 2 3; do
    port=$((20000 + RANDOM % 30000))
    if ss -Htln "sport = :$port" 2>/dev/null | grep -q .; then continue; fi
    log "ucx_perftest UCX_TLS=$tls size=$size"
    UCX_TLS="$tls" timeout -k 5 300 ucx_perftest -p "$port" >"$out.server" 2>&1 &
    spid=$!
    PIDS+=("$spid")
    up=0
    for _ in $(seq 200); do
      if ss -Htln "sport = :$port" 2>/dev/null | grep -q .; then up=1; break; fi
      kill -0 "$spid" 2>/dev/null || break
      sleep 0.02
    done
    if [[ $up -eq 1 ]]; then
      UCX_TLS="$tls" run_waited timeout -k 5 120 ucx_perftest 127.0.0.1 -p "$port" \
        -t ucp_am_lat -s "$size" -n "$iters" -w "$PT_WARMUP" -v >"$out" 2>&1
      rc=$?
    else
      rc=1
    fi
    for _ in $(seq 50); do kill -0 "$spid" 2>/dev/null || break; sleep 0.02; done
    kill -TERM "$spid" 2>/dev/null
    wait "$spid" 2>/dev/null
    local keep=() p
    for p in "${PIDS[@]}"; do [[ "$p" != "$spid" ]] && keep+=("$p"); done
    PIDS=("${keep[@]}")
    P_LAT="$(grep -E '^[0-9]+,' "$out" 2>/dev/null | tail -1 | cut -d, -f2)"
    [[ $rc -eq 0 && -n "$P_LAT" ]] && return 0
  done
  P_LAT=""
  fail "ucx_perftest UCX_TLS=$tls size=$size: $(tail -2 "$out" 2>/dev/null)"
  return 1
}
for transport in shm tcp; do
  iters=$PT_ITERS_SHM; [[ $transport == tcp ]] && iters=$PT_ITERS_TCP
  v=()
  for ((i = 0; i < REPEAT; i++)); do
    run_perftest "$(tls_for "$transport")" 4096 "$iters" || break
    v+=("$(awk -v l="$P_LAT" 'BEGIN{printf "%.2f", 2 * l}')")
  done
  put floor "ucx_$transport" rtt4k_us us "${v[@]}"
done

# ---- Lego ------------------------------------------------------------------------------------------------

cluster_up() {
  local transport="$1"
  log "lego up ($transport)"
  if ! run_waited timeout -k 5 120 "$LEGO" up --excache "$PMON_BUDGET" --mmon-capacity 2G \
      --transports "$(tls_for "$transport")" >"$WORK/up.log" 2>&1; then
    CLUSTER_UP=1
    fail "lego up --transports $(tls_for "$transport"): $(tail -5 "$WORK/up.log")"
    cluster_down
    return 1
  fi
  CLUSTER_UP=1
}

# pmon_stats FILE: the pmon's counters as KEY VALUE lines.
pmon_stats() {
  "$LEGO" stats --json 2>/dev/null | python3 -c '
import json, sys
for c in json.load(sys.stdin):
    if c.get("kind") == "pmon":
        for k, v in c["stats"].items(): print(k, v)' >"$1"
}
# stat_delta KEY: the counter KEY in $WORK/after minus $WORK/before.
stat_delta() {
  awk -v k="$1" 'FNR == NR {if ($1 == k) b = $2; next} $1 == k {a = $2} END{print a - b}' "$WORK/before" "$WORK/after"
}
# process_stat KEY ERRFILE: a field of `lego run --stats-json`'s report.
process_stat() {
  python3 -c '
import json, sys
t = open(sys.argv[2]).read()
i = t.find("[")
print(json.loads(t[i:])[0][sys.argv[1]])' "$1" "$2" 2>/dev/null
}

# lego_run NAME EXCACHE_MB OUT CMD...: one run under Lego, checksum checked; non-zero on failure.
lego_run() {
  local name="$1" exc="$2" out="$3"; shift 3
  log "lego run --excache ${exc}M $name"
  pmon_stats "$WORK/before"
  if ! run_waited timeout -k 5 "$RUN_LIMIT" "$LEGO" run --excache "${exc}M" --stats-json -- "$@" >"$out" 2>"$out.err"; then
    fail "lego run $name: $* ($(tail -c 400 "$out" "$out.err"))"
    return 1
  fi
  pmon_stats "$WORK/after"
  check "$name" "$out"
}

for transport in shm tcp; do
  cluster_up "$transport" || continue
  # Section 1: fault latency.
  p50=(); p99=(); nf=(); svc=(); room=(); evict=(); wall=()
  for ((i = 0; i < FL_REPEAT; i++)); do
    lego_run fault_lat "$FL_EXC_MB" "$WORK/fl" "${FL_CMD[@]}" || break
    p50+=("$(div "$(kv fault_p50_ns "$WORK/fl")" 1000 %.2f)")
    p99+=("$(div "$(kv fault_p99_ns "$WORK/fl")" 1000 %.2f)")
    nf+=("$(kv faults "$WORK/fl")")
    svc+=("$(process_stat fault_p50_us "$WORK/fl.err")")
    faults="$(stat_delta lego_pmon_faults_total)"
    room+=("$(div "$(awk -v s="$(stat_delta lego_pmon_fault_room_wait_seconds_total)" 'BEGIN{print s * 1e6}')" "$faults" %.2f)")
    evp="$(awk -v a="$(stat_delta lego_pmon_evicted_clean_pages_total)" -v b="$(stat_delta lego_pmon_evicted_dirty_pages_total)" 'BEGIN{print a + b}')"
    evict+=("$(div "$(awk -v s="$(stat_delta lego_pmon_evict_seconds_total)" 'BEGIN{print s * 1e6}')" "$evp" %.2f)")
    wall+=("$(div "$WALL_NS" 1e9 %.2f)")
  done
  put fault "lego_$transport" fault_p50_us us "${p50[@]}"
  put fault "lego_$transport" fault_p99_us us "${p99[@]}"
  put fault "lego_$transport" faults count "${nf[@]}"
  put fault "lego_$transport" pmon_service_p50_us us "${svc[@]}"
  put fault "lego_$transport" room_wait_per_fault_us us "${room[@]}"
  put fault "lego_$transport" evict_per_page_us us "${evict[@]}"
  put fault "lego_$transport" wall_s s "${wall[@]}"
  # Section 2: sequential scan.
  g=(); pf=()
  for ((i = 0; i < REPEAT; i++)); do
    lego_run seq_scan "$SC_EXC_MB" "$WORK/sc" "${SC_CMD[@]}" || break
    g+=("$(kv gbps "$WORK/sc")")
    pf+=("$(process_stat prefetch_used_pages "$WORK/sc.err")")
  done
  put scan "lego_$transport" gbps GB/s "${g[@]}"
  put scan "lego_$transport" prefetch_used_pages pages "${pf[@]}"
  # Section 3: workloads at 25% ExCache (shared memory only).
  if [[ $transport == shm ]]; then
    for order in random seq; do
      if [[ $order == random ]]; then cmd=("${WR_CMD[@]}"); else cmd=("${WQ_CMD[@]}"); fi
      walls=(); acc=()
      for ((i = 0; i < REPEAT; i++)); do
        lego_run "workload_$order" "$WS_LIM_MB" "$WORK/w$order" "${cmd[@]}" || break
        walls+=("$(div "$WALL_NS" 1e9 %.3f)")
        acc+=("$(div "$(kv access_ns "$WORK/w$order")" 1e9 %.3f)")
      done
      put workload "lego_$order" wall_s s "${walls[@]}"
      put workload "lego_$order" access_s s "${acc[@]}"
    done
  fi
  cluster_down
done

# ---- Linux swap under the same local-memory limit --------------------------------------------------------

SWAP_NOTE=""
setup_swap() {
  if [[ $NO_SWAP -eq 1 ]]; then SWAP_NOTE="skipped (--no-swap)"; return 1; fi
  if [[ $(id -u) -ne 0 ]]; then SWAP_NOTE="skipped (needs root)"; return 1; fi
  # The memory cgroup: v1 if mounted, else a v2 hierarchy whose controllers include memory.
  local v1 v2
  v1="$(awk '$3 == "cgroup" && $4 ~ /(^|,)memory(,|$)/ {print $2; exit}' /proc/mounts)"
  v2="$(awk '$3 == "cgroup2" {print $2; exit}' /proc/mounts)"
  if [[ -n "$v1" ]]; then
    CGROUP="$v1/lego-mem-bench-$$"
    mkdir "$CGROUP" || { CGROUP=""; SWAP_NOTE="skipped (cannot create a v1 memory cgroup)"; return 1; }
    echo $((WS_LIM_MB * 1024 * 1024)) >"$CGROUP/memory.limit_in_bytes" || { fail "set memory.limit_in_bytes"; return 1; }
    CG_KIND="v1 memory.limit_in_bytes"
  elif [[ -n "$v2" ]] && grep -qw memory "$v2/cgroup.controllers" 2>/dev/null &&
       grep -qw memory "$v2/cgroup.subtree_control" 2>/dev/null; then
    CGROUP="$v2/lego-mem-bench-$$"
    mkdir "$CGROUP" || { CGROUP=""; SWAP_NOTE="skipped (cannot create a v2 cgroup)"; return 1; }
    echo $((WS_LIM_MB * 1024 * 1024)) >"$CGROUP/memory.max" || { fail "set memory.max"; return 1; }
    CG_KIND="v2 memory.max"
  else
    SWAP_NOTE="skipped (no memory cgroup controller)"
    return 1
  fi
  SWAPFILE="/var/tmp/lego-mem-bench-swap.$$"
  log "swap file $SWAPFILE (${SWAP_MB} MiB)"
  if ! { fallocate -l "${SWAP_MB}M" "$SWAPFILE" 2>/dev/null ||
         dd if=/dev/zero of="$SWAPFILE" bs=1M count="$SWAP_MB" status=none; }; then
    fail "create swap file $SWAPFILE"; return 1
  fi
  chmod 600 "$SWAPFILE"
  if ! mkswap "$SWAPFILE" >/dev/null 2>"$WORK/mkswap.err" || ! swapon "$SWAPFILE" 2>"$WORK/swapon.err"; then
    # fallocate'd files are refused by some file systems: retry with a written file.
    rm -f "$SWAPFILE"
    dd if=/dev/zero of="$SWAPFILE" bs=1M count="$SWAP_MB" status=none && chmod 600 "$SWAPFILE" &&
      mkswap "$SWAPFILE" >/dev/null && swapon "$SWAPFILE" ||
      { fail "swapon $SWAPFILE: $(cat "$WORK/swapon.err" 2>/dev/null)"; return 1; }
  fi
  SWAP_ON=1
}

if setup_swap; then
  for order in random seq; do
    if [[ $order == random ]]; then cmd=("${WR_CMD[@]}"); else cmd=("${WQ_CMD[@]}"); fi
    walls=(); acc=()
    for ((i = 0; i < REPEAT; i++)); do
      log "swap $order"
      if ! run_waited timeout -k 5 "$RUN_LIMIT" sh -c 'echo $$ > "$0/cgroup.procs" && exec "$@"' "$CGROUP" "${cmd[@]}" \
          >"$WORK/s$order" 2>"$WORK/s$order.err"; then
        fail "swap $order: $(tail -c 300 "$WORK/s$order" "$WORK/s$order.err")"
        break
      fi
      check "workload_$order" "$WORK/s$order" || break
      walls+=("$(div "$WALL_NS" 1e9 %.3f)")
      acc+=("$(div "$(kv access_ns "$WORK/s$order")" 1e9 %.3f)")
    done
    put workload "swap_$order" wall_s s "${walls[@]}"
    put workload "swap_$order" access_s s "${acc[@]}"
  done
  SWAP_NOTE="swap file ${SWAP_MB} MiB in /var/tmp, cgroup $CG_KIND = ${WS_LIM_MB} MiB"
fi

# ---- tables ---------------------------------------------------------------------------------------------

UF_FLOOR="$(awk -v a="${R[uffd_any.fault_p50_us]:-}" -v b="${R[uffd_same.fault_p50_us]:-}" \
  'BEGIN{if (a == "") print b; else if (b == "" || a < b) print a; else print b}')"
met() { awk -v v="$1" -v t="$2" -v dir="$3" 'BEGIN{if (v == "") print "-"; else if ((dir == "le" && v <= t) || (dir == "ge" && v >= t)) print "met"; else print "MISSED"}'; }

echo "### 1. Remote 4 KB fault, random access, ExCache full of clean pages"
echo
echo "fault_lat ${FL_MB} MB, --excache ${FL_EXC_MB}M; program-side latency of accesses that faulted (> 1 us)."
echo "Floors: raw userfaultfd fault (uffd_floor ${UF_MB} MB, p50; unpinned ${R[uffd_any.fault_p50_us]:--} us, same CPU ${R[uffd_same.fault_p50_us]:--} us; the lower is used)"
echo "+ raw UCX 4 KB round trip (ucp_am_lat 4096, one-way x 2)."
echo
echo "| transport | Lego p50 (us) | p50 range of runs | Lego p99 (us) | faults | target | uffd floor (us) | UCX 4K RTT (us) | floor (us) | Lego / floor | pmon service p50 (us) | room wait / fault (us) | evict / page (us) |"
echo "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|"
for transport in shm tcp; do
  target=10; [[ $transport == tcp ]] && target=25
  p="${R[lego_$transport.fault_p50_us]:-}"
  rtt="${R[ucx_$transport.rtt4k_us]:-}"
  floor="$(awk -v a="$UF_FLOOR" -v b="$rtt" 'BEGIN{if (a == "" || b == "") print ""; else printf "%.2f", a + b}')"
  printf '| %s | %s | %s-%s | %s | %s | <= %s (%s) | %s | %s | %s | %s | %s | %s | %s |\n' "$transport" "$(fmtn "$p")" \
    "$(fmtn "${R[lego_$transport.fault_p50_us.min]:-}")" "$(fmtn "${R[lego_$transport.fault_p50_us.max]:-}")" \
    "$(fmtn "${R[lego_$transport.fault_p99_us]:-}")" "${R[lego_$transport.faults]:--}" "$target" "$(met "$p" "$target" le)" \
    "$(fmtn "$UF_FLOOR" %.2f)" "$(fmtn "$rtt" %.2f)" "$(fmtn "$floor" %.2f)" "$(div "$p" "$floor")" \
    "$(fmtn "${R[lego_$transport.pmon_service_p50_us]:-}")" "$(fmtn "${R[lego_$transport.room_wait_per_fault_us]:-}" %.2f)" \
    "$(fmtn "${R[lego_$transport.evict_per_page_us]:-}" %.2f)"
  CSV_ROWS+=("fault,lego_$transport,floor_us,$floor,us,1")
done
echo
echo "uffd floor breakdown (p50, handler side): UFFDIO_COPY ${R[uffd_any.copy_p50_us]:--} us unpinned / ${R[uffd_same.copy_p50_us]:--} us same CPU;"
echo "UFFDIO_WAKE ${R[uffd_any.wake_p50_us]:--} us / ${R[uffd_same.wake_p50_us]:--} us."
echo "Dropping an evicted page (helper thread's MADV_DONTNEED, per page): ${R[dontneed.alone_us]:--} us alone,"
echo "${R[dontneed.ipi_us]:--} us with a program thread running on the other CPU (TLB-shootdown IPI),"
echo "${R[dontneed.batched_us]:--} us batched 256 per process_madvise call."
echo "Runs: $FL_REPEAT per transport (median shown). pmon service p50: the pmon's per-process histogram (power-of-two buckets);"
echo "room wait / fault: time a fault waited for the evictor to make room (while its request is in flight), averaged over all faults of the run;"
echo "evict / page: evictor thread time per evicted page (write-protect, writeback, DROP round trip)."
echo

echo "### 2. Sequential scan, region 4x the ExCache (shared memory)"
echo
echo "seq_scan ${SC_MB} MB, --excache ${SC_EXC_MB}M; reads every word front to back after writing it all."
echo
echo "| config | GB/s | target | vs all-local | prefetched pages used |"
echo "|---|--:|--:|--:|--:|"
g="${R[lego_shm.gbps]:-}"
printf '| Lego shm | %s | >= 1 (%s) | %s | %s |\n' "$(fmtn "$g" %.3f)" "$(met "$g" 1 ge)" "$(div "$g" "${R[local.gbps]:-}" %.3f)" "${R[lego_shm.prefetch_used_pages]:--}"
printf '| Lego tcp (reference) | %s | - | %s | %s |\n' "$(fmtn "${R[lego_tcp.gbps]:-}" %.3f)" "$(div "${R[lego_tcp.gbps]:-}" "${R[local.gbps]:-}" %.3f)" "${R[lego_tcp.prefetch_used_pages]:--}"
printf '| all-local | %s | - | 1 | - |\n' "$(fmtn "${R[local.gbps]:-}" %.3f)"
echo

echo "### 3. Workloads with 25% of the working set local"
echo
echo "workload ${WS_MB} MB, ${WS_PASSES} passes (pass 0 writes, later passes read 8 words and dirty 1 per page);"
echo "local memory ${WS_LIM_MB} MiB: Lego --excache ${WS_LIM_MB}M (shm); Linux swap: ${SWAP_NOTE:-not run}."
echo "wall = whole run incl. start-up (median); access = the program's own time for passes 1.."
echo
echo "| order | all-local wall (s) | Lego wall (s) | swap wall (s) | Lego / local | Lego / swap | Lego access (s) | swap access (s) | Lego beats swap |"
echo "|---|--:|--:|--:|--:|--:|--:|--:|---|"
for order in random seq; do
  lw="${R[lego_$order.wall_s]:-}"; sw="${R[swap_$order.wall_s]:-}"
  beats="-"
  [[ -n "$lw" && -n "$sw" ]] && beats="$(awk -v l="$lw" -v s="$sw" 'BEGIN{print (l < s) ? "yes" : "NO"}')"
  printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s |\n' "$order" "$(fmtn "${R[local_$order.wall_s]:-}" %.3f)" \
    "$(fmtn "$lw" %.3f)" "$(fmtn "$sw" %.3f)" "$(div "$lw" "${R[local_$order.wall_s]:-}")" "$(div "$lw" "$sw")" \
    "$(fmtn "${R[lego_$order.access_s]:-}" %.3f)" "$(fmtn "${R[swap_$order.access_s]:-}" %.3f)" "$beats"
done
echo

echo "Load average: $LOAD_START at the start, $(cut -d' ' -f1-3 /proc/loadavg) at the end (2 CPUs: above ~1 the"
echo "machine was shared with other work and latencies are inflated)."
echo
if [[ -n "$CSV_OUT" ]]; then
  { echo "section,config,metric,median,unit,runs"; printf '%s\n' "${CSV_ROWS[@]}"; } >"$CSV_OUT"
fi
if [[ $FAILED -gt 0 ]]; then
  echo "$FAILED configuration(s) FAILED (see stderr)"
  exit 1
fi
exit 0
