#!/usr/bin/env bash
# Builds tests/fuzz/protocol_fuzz and smon_fuzz with clang (libFuzzer + ASan + UBSan) and fuzzes them for a
# bounded total time: SECONDS is split, a third to smon_fuzz, the rest to protocol_fuzz.
#   scripts/fuzz.sh [SECONDS]     default 60
# The seed corpora (tests/fuzz/corpus, tests/fuzz/corpus_smon) are copied to a temp dir, so new inputs never
# land in the tree. Crash inputs are kept in build-fuzz/fuzz-artifacts/, named after the fuzzer. Exits
# non-zero if a fuzzer found a problem (crash, sanitizer report, leak, timeout, OOM) or could not be built.
# Ends with a one-line summary.
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
# One time budget, split: a third for smon_fuzz (the smon's file store), the rest for protocol_fuzz.
smon_secs=$((secs / 3))
protocol_secs=$((secs - smon_secs))
targets=(protocol_fuzz)
if ((smon_secs > 0)); then targets+=(smon_fuzz); fi
echo "fuzz.sh: building ${targets[*]}"
cmake --build "$build" --target "${targets[@]}" >"$work/build.log" 2>&1 ||
  { tail -50 "$work/build.log" >&2; echo "fuzz.sh: FAIL build" >&2; exit 1; }
mkdir -p "$artifacts"

# fuzz NAME CORPUS_DIR SECONDS: runs one fuzzer; prints its summary line; returns non-zero on a finding.
fuzz() {
  local name=$1 src=$2 t=$3
  local fuzzer corpus log rc=0
  fuzzer=$(find "$build" -name "$name" -type f -perm -u+x | head -1)
  corpus=$work/corpus-$name
  mkdir -p "$corpus"
  cp "$src"/* "$corpus/"
  local seeds
  seeds=$(ls "$corpus" | wc -l)
  log=$artifacts/last-run-$name.log
  echo "fuzz.sh: fuzzing $name for ${t}s from $seeds seeds (log: $log)"
  "$fuzzer" "$corpus" -max_total_time="$t" -max_len=4096 -timeout=10 -rss_limit_mb=2048 \
    -print_final_stats=1 -artifact_prefix="$artifacts/$name-" >"$log" 2>&1 || rc=$?

  local execs cov now
  execs=$(grep -a -oP 'stat::number_of_executed_units:\s*\K[0-9]+' "$log" || echo "?")
  cov=$(grep -a -oP '#[0-9]+\s+DONE\s+cov:\s*\K[0-9]+' "$log" | tail -1 || true)
  [[ -n $cov ]] || cov=$(grep -a -oP 'cov:\s*\K[0-9]+' "$log" | tail -1 || echo "?")
  now=$(ls "$corpus" | wc -l)
  if ((rc != 0)); then
    grep -a -E 'ERROR: |protocol_fuzz: |smon_fuzz: |SUMMARY: |Test unit written to' "$log" | head -20 >&2 ||
      tail -30 "$log" >&2
    echo "fuzz.sh: FAIL $name rc=$rc after ${t}s execs=$execs cov=$cov corpus=$seeds->$now artifacts=$artifacts" >&2
    return 1
  fi
  echo "fuzz.sh: OK $name ${t}s execs=$execs cov=$cov corpus=$seeds->$now crashes=0"
}

failed=0
fuzz protocol_fuzz "$root/tests/fuzz/corpus" "$protocol_secs" || failed=1
if ((smon_secs > 0)); then
  fuzz smon_fuzz "$root/tests/fuzz/corpus_smon" "$smon_secs" || failed=1
fi
if ((failed)); then
  echo "fuzz.sh: FAIL after ${secs}s (see above)" >&2
  exit 1
fi
echo "fuzz.sh: OK ${secs}s (protocol_fuzz ${protocol_secs}s, smon_fuzz ${smon_secs}s) crashes=0"
