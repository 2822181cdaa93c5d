#!/usr/bin/env bash
# run_storage_bench.sh: Lego's disaggregated storage (a vNode's FUSE mount on the pmon -> the vNode's buffer
# cache on an mmon -> the smon's file store) against the same fio jobs on a local directory, all in one run
# on this machine (issue's performance section: >= 0.6x of local Linux on each job). Markdown on stdout.
#
# Method. fio (ioengine=psync, numjobs=1, iodepth=1, one file of FILE_MB, time_based RUNTIME seconds):
#   randread bs=4k; read bs=1M (sequential); randwrite bs=4k fsync=1; write bs=1M (sequential)
# in three configurations, each on a freshly laid-out file (fio rw=write bs=1M end_fsync=1, not timed):
#   local     a directory next to the smon's file store (same file system, same disk);
#   cache on  `lego run --vnode bench -- fio ...` on a cluster with the default buffer cache (64M per mmon);
#   cache off the same on a second cluster started with `lego up --buffer-cache 0`.
# Before each job every cache below the tier under test is emptied: fio's invalidate=1 drops the page cache of
# the file it opens (the local file, or the FUSE mount's pages), and for Lego the smon's backing file is
# fsync'ed and dropped from the host page cache (posix_fadvise DONTNEED). Lego's own buffer cache is kept:
# it is what "cache on" measures. Read jobs run before write jobs, so they read the laid-out data.
# Ratio = Lego IOPS / local IOPS of the same job in the same run (bandwidth ratio is the same: fixed bs).
#
# Where the time goes (same run): a 4 MiB file read at random 4 KB at a time, warm: buffered with the page
# cache kept (local and through the mount: the kernel serves both), and O_DIRECT (local: the disk; Lego: one
# FUSE request per read, served by the mmon's buffer cache, or by the smon when the cache is off); clat p50.
# For the randwrite+fsync job the write and the fsync latencies are shown apart (fio's sync_lat). Per Lego
# job, the daemons' counters (`lego stats --json`, delta over the job): FUSE requests at the pmon, buffer
# cache hit/miss/written blocks, flushes to the smon, requests the smon served.
#
# Cleanup on every exit path: both clusters go down (own LEGO_STATE_DIR; `lego down` unmounts the vNode),
# temporary directories are removed, and /proc/mounts is checked for a left-over Lego mount.
#
# Exit status: non-zero only if a configuration failed to run (fio or lego failed, fio's JSON had no result
# or reported an error, a mount was left behind); never because of timing or a missed target.
#
# Usage: bench/run_storage_bench.sh [--quick] [--build-dir DIR] [--size MB] [--runtime S] [--csv FILE] [--verbose]
#   --quick       CI smoke test: 64 MiB file, 3 s per job (about a minute in all)
#   --build-dir   build tree with src/lego and the daemons (default: build/ under the repository)
#   --size MB     file size (default 256; 64 with --quick)
#   --runtime S   seconds per job (default 10; 3 with --quick)
#   --csv FILE    also write one CSV row per measured value
#   --verbose     progress lines on stderr
set -u -o pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
QUICK=0
BUILD=""
FILE_MB=""
RUNTIME=""
CSV_OUT=""
VERBOSE=0
while [[ $# -gt 0 ]]; do
  case "$1" in
    --quick) QUICK=1 ;;
    --build-dir) BUILD="$2"; shift ;;
    --size) FILE_MB="$2"; shift ;;
    --runtime) RUNTIME="$2"; shift ;;
    --csv) CSV_OUT="$2"; shift ;;
    --verbose) VERBOSE=1 ;;
    -h|--help) awk 'NR > 1 && /^#/ {sub(/^# ?/, ""); print; next} NR > 1 {exit}' "$0"; exit 0 ;;
    *) echo "run_storage_bench.sh: unknown argument '$1'" >&2; exit 2 ;;
  esac
  shift
done
: "${BUILD:=$REPO/build}"
if [[ $QUICK -eq 1 ]]; then
  : "${FILE_MB:=64}"; : "${RUNTIME:=3}"; PROBE_S=1
else
  : "${FILE_MB:=256}"; : "${RUNTIME:=10}"; PROBE_S=3
fi
PROBE_MB=4       # the "where the time goes" file: fits every cache
RUN_LIMIT=$((RUNTIME * 3 + 120))   # seconds: a hung fio fails instead of blocking CI
for b in lego lego-gm lego-pmon lego-mmon lego-smon liblego_preload.so; do
  if [[ ! -e "$BUILD/src/$b" ]]; then
    echo "run_storage_bench.sh: $BUILD/src/$b not found; build it (cmake --build $BUILD) or pass --build-dir" >&2
    exit 2
  fi
done
for t in fio python3; do
  command -v "$t" >/dev/null || { echo "run_storage_bench.sh: $t not found (apt-get install $t)" >&2; exit 2; }
done
FIO="$(command -v fio)"

# Everything stays on loopback (as the other bench scripts).
export UCX_NET_DEVICES=lo

WORK="$(mktemp -d /tmp/lego-storage-bench.XXXXXX)"
export LEGO_STATE_DIR="$WORK/lego-state"
LOCAL_DIR="$WORK/local"   # same file system as the smon's store ($LEGO_STATE_DIR/data/smon-0)
mkdir -p "$WORK/bin" "$LOCAL_DIR"
# A private copy of the binaries (lego finds the daemons and the preload library next to itself), so that a
# rebuild during the run cannot mix versions.
cp "$BUILD/src/lego" "$BUILD/src/lego-gm" "$BUILD/src/lego-pmon" "$BUILD/src/lego-mmon" "$BUILD/src/lego-smon" \
  "$BUILD/src/liblego_preload.so" "$WORK/bin/" || { echo "run_storage_bench.sh: cannot copy the binaries" >&2; rm -rf "$WORK"; exit 2; }
LEGO="$WORK/bin/lego"
CLUSTER_UP=0
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

# Lego mounts of this run still in /proc/mounts (empty if none).
our_mounts() { awk -v w="$WORK" 'index($2, w) == 1 {print $2}' /proc/mounts; }

cleanup() {
  local pid m
  for pid in "${PIDS[@]}"; do
    kill -TERM "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
  done
  PIDS=()
  cluster_down
  # A mount left behind (a pmon that died without unmounting) would keep rm -rf from the state directory.
  for m in $(our_mounts); do
    echo "run_storage_bench.sh: unmounting left-over $m" >&2
    fusermount3 -u -z "$m" 2>/dev/null || umount -l "$m" 2>/dev/null
  done
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Runs a command in the background (so that a trapped signal interrupts the wait at once) and waits for it.
run_waited() {
  "$@" &
  local pid=$!
  PIDS+=("$pid")
  wait "$pid"
  local rc=$?
  local keep=() p
  for p in "${PIDS[@]}"; do [[ "$p" != "$pid" ]] && keep+=("$p"); done
  PIDS=("${keep[@]}")
  return $rc
}

fmtn() { awk -v a="$1" -v f="${2:-%.1f}" 'BEGIN{if (a == "") print "-"; else printf f "\n", a}'; }
div() { awk -v a="$1" -v b="$2" -v f="${3:-%.2f}" 'BEGIN{if (a == "" || b == "" || b + 0 == 0) print "-"; else printf f "\n", a / b}'; }
met() { awk -v v="$1" 'BEGIN{if (v == "" || v == "-") print "-"; else if (v >= 0.6) print "met"; else print "MISSED"}'; }

declare -A R   # results: R[config.job.metric]
CSV_ROWS=()
put() { R[$1.$2.$3]="$4"; CSV_ROWS+=("$1,$2,$3,$4"); }

# fio_parse FILE DIR: KEY=VALUE lines from fio's JSON (DIR read|write): iops, bw_mbs, clat p50/p99 (us),
# sync_p50_us (fsync latency, if any), ios. Non-zero if there is no result or fio reported an error.
fio_parse() {
  python3 - "$1" "$2" <<'EOF'
import json, sys
text = open(sys.argv[1]).read()
i = text.find("{")
if i < 0:
    sys.exit(1)
job = json.loads(text[i:])["jobs"][0]
if job.get("error", 0) != 0:
    sys.exit(1)
d = job[sys.argv[2]]
if d.get("total_ios", 0) <= 0:
    sys.exit(1)
pct = d["clat_ns"].get("percentile", {})
print(f"iops={d['iops']:.1f}")
print(f"bw_mbs={d['bw_bytes'] / 1e6:.1f}")
print(f"ios={d['total_ios']}")
print(f"clat_p50_us={pct.get('50.000000', 0) / 1000:.1f}")
print(f"clat_p99_us={pct.get('99.000000', 0) / 1000:.1f}")
s = job.get("sync", {})
sl = s.get("lat_ns", s)
if sl.get("N", s.get("total_ios", 0)):
    sp = sl.get("percentile", {})
    v = sp.get("50.000000") if sp else None
    print(f"sync_p50_us={(v if v is not None else sl.get('mean', 0)) / 1000:.1f}")
EOF
}

# Counters of every daemon as "KIND KEY VALUE" lines, summed over daemons of a kind.
snap() {
  "$LEGO" stats --json 2>/dev/null | python3 -c '
import json, sys, collections
tot = collections.defaultdict(float)
for c in json.load(sys.stdin):
    for k, v in c["stats"].items():
        tot[(c["kind"], k)] += v
for (kind, k), v in sorted(tot.items()):
    print(kind, k, v)' >"$1"
}
# delta KIND KEY: counter in $WORK/after minus $WORK/before.
delta() {
  awk -v kind="$1" -v k="$2" 'FNR == NR {if ($1 == kind && $2 == k) b = $3; next}
    $1 == kind && $2 == k {a = $3} END{printf "%.0f\n", a - b}' "$WORK/before" "$WORK/after"
}

# Drops the smon's copy of every vNode file from the host page cache (after writing it back), so that a Lego
# read job starts as cold below the buffer cache as the local job does below the page cache.
drop_smon_cache() {
  python3 - "$LEGO_STATE_DIR/data" <<'EOF'
import os, sys
for root, _, files in os.walk(sys.argv[1]):
    if "/vnodes" not in root:
        continue
    for f in files:
        p = os.path.join(root, f)
        try:
            fd = os.open(p, os.O_RDONLY)
        except OSError:
            continue
        try:
            os.fsync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)
EOF
}

# fio_in CONFIG OUT FIO_ARGS...: runs fio in CONFIG's place (local: LOCAL_DIR; lego: the vNode mount).
fio_in() {
  local config="$1" out="$2"; shift 2
  if [[ $config == local ]]; then
    run_waited timeout -k 5 "$RUN_LIMIT" "$FIO" --directory="$LOCAL_DIR" "$@" >"$out" 2>"$out.err"
  else
    run_waited timeout -k 5 "$RUN_LIMIT" "$LEGO" run --vnode bench -- "$FIO" "$@" >"$out" 2>"$out.err"
  fi
}

COMMON=(--ioengine=psync --numjobs=1 --iodepth=1 --output-format=json)
JOBS=(randread4k read1m randwrite4k_fsync write1m)
declare -A JOB_ARGS=(
  [randread4k]="--rw=randread --bs=4k"
  [read1m]="--rw=read --bs=1M"
  [randwrite4k_fsync]="--rw=randwrite --bs=4k --fsync=1"
  [write1m]="--rw=write --bs=1M"
)
declare -A JOB_DIR=([randread4k]=read [read1m]=read [randwrite4k_fsync]=write [write1m]=write)
declare -A JOB_LABEL=([randread4k]="4 KB random read" [read1m]="1 MiB sequential read"
  [randwrite4k_fsync]="4 KB random write + fsync" [write1m]="1 MiB sequential write")

# record CONFIG JOB OUT DIR: parses OUT into R; a failure if it has no result.
record() {
  local config="$1" job="$2" out="$3" dir="$4" kvs line
  if ! kvs="$(fio_parse "$out" "$dir" 2>"$out.parse")"; then
    fail "$config $job: no fio result ($(tail -c 300 "$out.err" 2>/dev/null) $(tail -c 200 "$out.parse"))"
    return 1
  fi
  for line in $kvs; do put "$config" "$job" "${line%%=*}" "${line#*=}"; done
}

# run_config CONFIG: layout, the four jobs, the latency probes. CONFIG: local, on, off.
run_config() {
  local config="$1" job out
  log "$config: layout ${FILE_MB} MiB"
  if ! fio_in "$config" "$WORK/$config.layout" --name=layout --filename=fio.dat --size="${FILE_MB}M" \
      --rw=write --bs=1M --end_fsync=1 "${COMMON[@]}"; then
    fail "$config layout: $(tail -c 300 "$WORK/$config.layout.err")"
    return 1
  fi
  for job in "${JOBS[@]}"; do
    out="$WORK/$config.$job"
    [[ $config != local ]] && { drop_smon_cache; snap "$WORK/before"; }
    log "$config: $job"
    # shellcheck disable=SC2086  # JOB_ARGS holds several words
    if ! fio_in "$config" "$out" --name="$job" --filename=fio.dat --size="${FILE_MB}M" ${JOB_ARGS[$job]} \
        --time_based --runtime="$RUNTIME" --invalidate=1 "${COMMON[@]}"; then
      fail "$config $job: fio failed ($(tail -c 300 "$out.err"))"
      continue
    fi
    record "$config" "$job" "$out" "${JOB_DIR[$job]}" || continue
    if [[ $config != local ]]; then
      snap "$WORK/after"
      put "$config" "$job" fs_requests "$(delta pmon lego_pmon_fs_requests_total)"
      put "$config" "$job" bc_hit "$(delta mmon lego_mmon_bcache_hit_blocks_total)"
      put "$config" "$job" bc_miss "$(delta mmon lego_mmon_bcache_miss_blocks_total)"
      put "$config" "$job" bc_write "$(delta mmon lego_mmon_bcache_write_blocks_total)"
      put "$config" "$job" bc_flushes "$(delta mmon lego_mmon_bcache_flushes_total)"
      put "$config" "$job" bc_flushed_mb "$(div "$(delta mmon lego_mmon_bcache_flushed_bytes_total)" 1e6 %.1f)"
      put "$config" "$job" smon_requests "$(delta smon lego_msg_requests_served_total)"
    fi
  done
  # Where the time goes: a small warm file, 4 KB random reads, page cache kept (buffered) and bypassed (O_DIRECT).
  log "$config: latency probes"
  if ! fio_in "$config" "$WORK/$config.probe.layout" --name=probe_layout --filename=probe.dat --size="${PROBE_MB}M" \
      --rw=write --bs=1M --end_fsync=1 "${COMMON[@]}"; then
    fail "$config probe layout: $(tail -c 300 "$WORK/$config.probe.layout.err")"
    return 1
  fi
  local kind direct
  for kind in buffered direct; do
    direct=0; [[ $kind == direct ]] && direct=1
    out="$WORK/$config.probe.$kind"
    # Two passes: the first warms the caches (not recorded), the second is measured.
    fio_in "$config" "$out.warm" --name=warm --filename=probe.dat --size="${PROBE_MB}M" --rw=read --bs=1M \
      --direct="$direct" --invalidate=0 "${COMMON[@]}" || { fail "$config probe warm: $(tail -c 300 "$out.warm.err")"; continue; }
    if ! fio_in "$config" "$out" --name="probe_$kind" --filename=probe.dat --size="${PROBE_MB}M" --rw=randread \
        --bs=4k --direct="$direct" --invalidate=0 --time_based --runtime="$PROBE_S" "${COMMON[@]}"; then
      fail "$config probe $kind: $(tail -c 300 "$out.err")"
      continue
    fi
    record "$config" "probe_$kind" "$out" read
  done
}

# cluster_up CONFIG BUFFER_CACHE: a cluster with a vNode 'bench'.
cluster_up() {
  log "lego up --buffer-cache $2"
  if ! run_waited timeout -k 5 120 "$LEGO" up --buffer-cache "$2" >"$WORK/up.log" 2>&1; then
    CLUSTER_UP=1
    fail "lego up --buffer-cache $2: $(tail -5 "$WORK/up.log")"
    cluster_down
    return 1
  fi
  CLUSTER_UP=1
  if ! run_waited timeout -k 5 60 "$LEGO" vnode create bench >"$WORK/vnode.log" 2>&1; then
    fail "lego vnode create bench: $(tail -3 "$WORK/vnode.log")"
    cluster_down
    return 1
  fi
}

LOAD_START="$(cut -d' ' -f1-3 /proc/loadavg)"
echo "## Lego storage benchmark ($(date -u +%Y-%m-%dT%H:%M:%SZ), $(nproc) CPUs, $(uname -r), $(git -C "$REPO" describe --always --dirty 2>/dev/null), $($FIO --version), file ${FILE_MB} MiB, ${RUNTIME} s per job$([[ $QUICK -eq 1 ]] && echo ', quick'))"
echo

run_config local
for cache in on off; do
  if [[ $cache == on ]]; then bc=64M; else bc=0; fi
  cluster_up "$cache" "$bc" || continue
  run_config "$cache"
  cluster_down
  if [[ -n "$(our_mounts)" ]]; then fail "a Lego mount is left after lego down: $(our_mounts)"; fi
done

# ---- tables ---------------------------------------------------------------------------------------------

echo "### Throughput: Lego vNode mount vs a local directory (same disk, same run)"
echo
echo "fio psync, 1 job, queue depth 1, ${FILE_MB} MiB file, ${RUNTIME} s per job, invalidate=1; Lego with the buffer"
echo "cache on (64M per mmon, \`lego up\` default) and off (\`lego up --buffer-cache 0\`). Ratio = Lego / local."
echo
echo "| job | local IOPS | local MB/s | cache on IOPS | cache on MB/s | ratio | cache off IOPS | cache off MB/s | ratio | target >= 0.6x (on / off) | clat p50 local / on / off (us) |"
echo "|---|--:|--:|--:|--:|--:|--:|--:|--:|---|--:|"
for job in "${JOBS[@]}"; do
  li="${R[local.$job.iops]:-}"
  ron="$(div "${R[on.$job.iops]:-}" "$li")"; roff="$(div "${R[off.$job.iops]:-}" "$li")"
  printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s / %s | %s / %s / %s |\n' "${JOB_LABEL[$job]}" \
    "$(fmtn "$li" %.0f)" "$(fmtn "${R[local.$job.bw_mbs]:-}")" \
    "$(fmtn "${R[on.$job.iops]:-}" %.0f)" "$(fmtn "${R[on.$job.bw_mbs]:-}")" "$ron" \
    "$(fmtn "${R[off.$job.iops]:-}" %.0f)" "$(fmtn "${R[off.$job.bw_mbs]:-}")" "$roff" \
    "$(met "$ron")" "$(met "$roff")" \
    "$(fmtn "${R[local.$job.clat_p50_us]:-}")" "$(fmtn "${R[on.$job.clat_p50_us]:-}")" "$(fmtn "${R[off.$job.clat_p50_us]:-}")"
  CSV_ROWS+=("on,$job,ratio,$ron" "off,$job,ratio,$roff")
done
echo
echo "4 KB random write + fsync, per operation (p50, us): write local ${R[local.randwrite4k_fsync.clat_p50_us]:--} /"
echo "Lego on ${R[on.randwrite4k_fsync.clat_p50_us]:--} / off ${R[off.randwrite4k_fsync.clat_p50_us]:--}; fsync local ${R[local.randwrite4k_fsync.sync_p50_us]:--} /"
echo "Lego on ${R[on.randwrite4k_fsync.sync_p50_us]:--} / off ${R[off.randwrite4k_fsync.sync_p50_us]:--}."
echo

echo "### Where the time goes"
echo
echo "One 4 KB read of a warm ${PROBE_MB} MiB file (fio randread, ${PROBE_S} s, clat p50 / p99 in us). Buffered: the page cache"
echo "is kept, so the kernel serves local and FUSE reads alike. O_DIRECT: local reads the disk; a Lego read is one"
echo "FUSE request to the pmon, which asks the vNode's buffer-cache mmon (cache on) or the smon (cache off)."
echo
echo "| path | local | Lego cache on | Lego cache off |"
echo "|---|--:|--:|--:|"
for kind in buffered direct; do
  row="| $kind 4 KB read, p50 / p99 |"
  for c in local on off; do
    row+=" $(fmtn "${R[$c.probe_$kind.clat_p50_us]:-}") / $(fmtn "${R[$c.probe_$kind.clat_p99_us]:-}") |"
  done
  echo "$row"
done
echo
echo "Requests per tier during each Lego job (daemon counters, delta over the job; blocks are the buffer cache's):"
echo
echo "| job | cache | fio ops | FUSE requests at pmon | per op | bcache hit blocks | miss blocks | written blocks | flushes to smon | flushed MB | smon requests |"
echo "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|"
for job in "${JOBS[@]}"; do
  for c in on off; do
    [[ -z "${R[$c.$job.ios]:-}" ]] && continue
    printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n' "${JOB_LABEL[$job]}" "$c" "${R[$c.$job.ios]}" \
      "${R[$c.$job.fs_requests]:--}" "$(div "${R[$c.$job.fs_requests]:-}" "${R[$c.$job.ios]}" %.1f)" \
      "${R[$c.$job.bc_hit]:--}" "${R[$c.$job.bc_miss]:--}" "${R[$c.$job.bc_write]:--}" \
      "${R[$c.$job.bc_flushes]:--}" "${R[$c.$job.bc_flushed_mb]:--}" "${R[$c.$job.smon_requests]:--}"
  done
done
echo
echo "Load average: $LOAD_START at the start, $(cut -d' ' -f1-3 /proc/loadavg) at the end ($(nproc) CPUs)."
echo
if [[ -n "$CSV_OUT" ]]; then
  { echo "config,job,metric,value"; printf '%s\n' "${CSV_ROWS[@]}"; } >"$CSV_OUT"
fi
if [[ $FAILED -gt 0 ]]; then
  echo "$FAILED configuration(s) FAILED (see stderr)"
  exit 1
fi
exit 0
