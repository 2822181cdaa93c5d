#!/usr/bin/env bash
# Builds tests/fuzz/protocol_fuzz with clang (libFuzzer + ASan + UBSan) and fuzzes it for a bounded time.
#   scripts/fuzz.sh [SECONDS]     default 60
# The seed corpus (tests/fuzz/corpus) is copied to a temp dir, so new inputs never land in the tree.
# Crash inputs are kept in build-fuzz/fuzz-artifacts/. Exits non-zero if the fuzzer found a problem
# (crash, sanitizer report, leak, timeout, OOM) or could not be built. Ends with a one-line summary.
set -euo pipefail

secs=${1:-60}
if ! [[ $secs =~ ^[0-9]+$ ]] || ((secs == 0)); then
  echo "usage: $0 [SECONDS>0]" >&2
  exit 2
fi

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=$root/build-fuzz
artifacts=$build/fuzz-artifacts
work=$(mktemp -d "${TMPDIR:-/tmp}/lego-fuzz.XXXXXX")
trap 'rm -rf "$work"' EXIT

echo "fuzz.sh: configuring $build (clang-14, LEGO_FUZZ=ON)"
CC=clang-14 CXX=clang++-14 cmake -S "$root" -B "$build" -G Ninja -DLEGO_FUZZ=ON >"$work/configure.log" 2>&1 ||
  { cat "$work/configure.log" >&2; echo "fuzz.sh: FAIL configure" >&2; exit 1; }
echo "fuzz.sh: building protocol_fuzz"
cmake --build "$build" --target protocol_fuzz >"$work/build.log" 2>&1 ||
  { tail -50 "$work/build.log" >&2; echo "fuzz.sh: FAIL build" >&2; exit 1; }
fuzzer=$(find "$build" -name protocol_fuzz -type f -perm -u+x | head -1)

mkdir -p "$work/corpus" "$artifacts"
cp "$root"/tests/fuzz/corpus/* "$work/corpus/"
seeds=$(ls "$work/corpus" | wc -l)

echo "fuzz.sh: fuzzing for ${secs}s from $seeds seeds (log: $artifacts/last-run.log)"
rc=0
"$fuzzer" "$work/corpus" -max_total_time="$secs" -max_len=4096 -timeout=10 -rss_limit_mb=2048 \
  -print_final_stats=1 -artifact_prefix="$artifacts/" >"$artifacts/last-run.log" 2>&1 || rc=$?

log=$artifacts/last-run.log
execs=$(grep -a -oP 'stat::number_of_executed_units:\s*\K[0-9]+' "$log" || echo "?")
cov=$(grep -a -oP '#[0-9]+\s+DONE\s+cov:\s*\K[0-9]+' "$log" | tail -1 || true)
[[ -n $cov ]] || cov=$(grep -a -oP 'cov:\s*\K[0-9]+' "$log" | tail -1 || echo "?")
corpus=$(ls "$work/corpus" | wc -l)

if ((rc != 0)); then
  grep -a -E 'ERROR: |protocol_fuzz: |SUMMARY: |Test unit written to' "$log" | head -20 >&2 || tail -30 "$log" >&2
  echo "fuzz.sh: FAIL rc=$rc after ${secs}s execs=$execs cov=$cov corpus=$seeds->$corpus artifacts=$artifacts" >&2
  exit 1
fi
echo "fuzz.sh: OK ${secs}s execs=$execs cov=$cov corpus=$seeds->$corpus crashes=0"
