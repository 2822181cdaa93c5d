#!/usr/bin/env bash
# The test command (README, second command; .ci/run calls it): installs dependencies, builds the release and
# sanitize (ASan+UBSan) trees, fuzzes the protocol decoders for a bounded time, runs the unit, protocol,
# transport and end-to-end tests under the sanitizers, then the whole default suite (including the RPC
# benchmark smoke test) on the release build. The last lines are ctest's summary of that final run.
#   scripts/test.sh [--with-suite | --chaos]
#   --with-suite        also run the benchmark suite's smoke test (bench/run --quick, label `suite`, ~15 min);
#                       .ci/run passes it
#   --chaos             instead: build (release) and run only the chaos suite (label `chaos`: programs on a
#                       cluster whose monitors are killed, stopped and restarted at random; ~5 min;
#                       LEGO_CHAOS_SECONDS sets its length, LEGO_CHAOS_SEED replays a run)
#   LEGO_FUZZ_SECONDS   fuzzing time (default 60)
#   LEGO_SKIP_SANITIZE  set to 1 to skip the sanitize build and run
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
exclude='soak|suite|chaos'
chaos=0
for arg in "$@"; do
  case "$arg" in
    --with-suite) exclude='soak|chaos' ;;
    --chaos) chaos=1 ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "test.sh: unknown argument '$arg' (see --help)" >&2; exit 2 ;;
  esac
done
"$root/scripts/setup.sh"

echo "== build (release)"
"$root/scripts/build.sh" release | tail -1
if [[ $chaos == 1 ]]; then
  echo "== chaos suite (release)"
  exec ctest --test-dir "$root/build" -L chaos --output-on-failure --timeout 1800
fi
if [[ ${LEGO_SKIP_SANITIZE:-0} != 1 ]]; then
  echo "== build (sanitize)"
  "$root/scripts/build.sh" sanitize | tail -1
fi

echo "== fuzz"
"$root/scripts/fuzz.sh" "${LEGO_FUZZ_SECONDS:-60}"

if [[ ${LEGO_SKIP_SANITIZE:-0} != 1 ]]; then
  echo "== tests under ASan+UBSan"
  # UCX keeps some allocations for the life of the process; leaks are checked by the fuzz build instead.
  log=$root/build-sanitize/ctest-sanitize.log
  if ! ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    ctest --test-dir "$root/build-sanitize" -L 'unit|protocol|transport|e2e' -j2 --output-on-failure \
      --timeout 300 >"$log" 2>&1; then
    tail -300 "$log"
    echo "test.sh: tests under ASan+UBSan failed (full log: $log)" >&2
    exit 1
  fi
  grep -E 'tests passed|tests failed' "$log"
fi

echo "== tests (release)"
ctest --test-dir "$root/build" -LE "$exclude" -j2 --output-on-failure --timeout 600
