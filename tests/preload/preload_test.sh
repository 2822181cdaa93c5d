#!/usr/bin/env bash
# Preload tests: runs a program under liblego_preload.so against tests/preload/fake_pmon, a real monitor
# serving the program's real userfaultfd (no fakes of the kernel).
#   preload_test.sh NAME LIB_DIR TEST_BIN_DIR
# NAME: evict | evict_unbatched | python | fork | threads | fork_child_evict | unreachable | inert
set -uo pipefail
name=$1 libdir=$2 bindir=$3
lib=$libdir/liblego_preload.so
tmp=$(mktemp -d /tmp/lego-preload-test.XXXXXX)
pmon_pid=
cleanup() {
  if [[ -n $pmon_pid ]]; then kill "$pmon_pid" 2>/dev/null; wait "$pmon_pid" 2>/dev/null; fi
  # A test program left behind (a fork child stuck on a fault when the monitor went away is reparented to
  # init and never wakes): the tests run serially (RUN_SERIAL), so every such program is this test's.
  pkill -KILL -f "^$bindir/(evict_test|fork_test|threads_test)( |\$)" 2>/dev/null
  rm -rf "$tmp"
}
trap cleanup EXIT
fail() { echo "FAIL($name): $*" >&2; echo "--- fake_pmon log:" >&2; cat "$tmp/pmon.log" >&2 2>/dev/null; exit 1; }

start_pmon() { # start_pmon CAP_PAGES [MORE fake_pmon ARGS...]
  "$bindir/fake_pmon" "$tmp/pmon.sock" --cap "$@" 2>"$tmp/pmon.log" &
  pmon_pid=$!
  for _ in $(seq 100); do [[ -S $tmp/pmon.sock ]] && return; sleep 0.05; done
  fail "fake_pmon did not start"
}

# under_lego CMD...: runs CMD with the preload, talking to the fake monitor.
# Output goes through a file, not the caller's pipe: a process the program left behind (a stuck fork child)
# must not keep $(...) waiting after `timeout` ended the program.
under_lego() {
  LD_PRELOAD=$lib LEGO_PMON_SOCKET=$tmp/pmon.sock LEGO_JOB=test-$name LEGO_EXCACHE=1048576 timeout 150 "$@" \
    >"$tmp/out" 2>&1
  local rc=$?
  cat "$tmp/out"
  return $rc
}

# stat_of PID FIELD: a field of fake_pmon's exit line for PID (0 if absent).
stats_sum() { # stats_sum FIELD: the sum over every process that exited
  sed -n "s/.* exit: .*\b$1=\([0-9]*\).*/\1/p" "$tmp/pmon.log" | awk '{s+=$1} END {print s+0}'
}

wait_exits() { # wait_exits N: until fake_pmon has logged N process exits
  for _ in $(seq 100); do
    (( $(grep -c ' exit: ' "$tmp/pmon.log") >= $1 )) && return
    sleep 0.05
  done
  fail "fake_pmon saw fewer than $1 exits"
}

case $name in
evict)
  start_pmon 2048 # 8 MB installed per process, then eviction
  out=$(LEGO_PRELOAD_DEBUG=1 under_lego "$bindir/evict_test") || fail "evict_test exited $?: $out"
  grep -qx ok <<<"$out" || fail "output: $out"
  # Linux 6.14+ takes process_madvise(PIDFD_SELF, MADV_DONTNEED): the helper must then batch its drops.
  IFS=. read -r kmaj kmin _ <<<"$(uname -r)"
  if (( kmaj > 6 || (kmaj == 6 && kmin >= 14) )); then
    grep -q "drops batched with process_madvise" <<<"$out" || fail "the helper did not batch its drops: $out"
  fi
  wait_exits 1
  (( $(stats_sum evicted) > 10000 )) || fail "too few evictions"
  (( $(stats_sum restored) > 10000 )) || fail "too few pages restored from evicted copies"
  ;;
evict_unbatched)
  # The same with the helper's fallback: one madvise per run (kernels without process_madvise(PIDFD_SELF)).
  start_pmon 2048
  out=$(LEGO_DROP_BATCH=0 LEGO_PRELOAD_DEBUG=1 under_lego "$bindir/evict_test") || fail "evict_test exited $?: $out"
  grep -qx ok <<<"$out" || fail "output: $out"
  grep -q "drops with madvise per run" <<<"$out" || fail "the helper did not take the fallback: $out"
  wait_exits 1
  (( $(stats_sum evicted) > 10000 )) || fail "too few evictions"
  (( $(stats_sum restored) > 10000 )) || fail "too few pages restored from evicted copies"
  ;;
python)
  py=/usr/bin/python3 # the interpreter itself, not a pyenv shim's chain of execs
  [[ -x $py ]] || py=$(command -v python3) || { echo "no python3: skipped"; exit 0; }
  prog='l = list(range(3000000)); m = {i: str(i) for i in range(0, 3000000, 7)}; print(sum(l), sum(len(v) for v in m.values()), len(m))'
  want=$("$py" -c "$prog") || fail "plain python failed"
  start_pmon 16384 # 64 MB: the interpreter's heap (about 200 MB) gets evicted and refaulted
  got=$(under_lego "$py" -c "$prog") || fail "python under the preload exited $?"
  [[ $got == "$want" ]] || fail "checksum $got, want $want"
  sleep 0.5
  (( $(stats_sum evicted) > 1000 )) || fail "too few evictions"
  (( $(stats_sum restored) > 0 )) || fail "nothing restored"
  ;;
fork)
  start_pmon 1024
  out=$(under_lego "$bindir/fork_test") || fail "fork_test exited $?: $out"
  [[ $out == ok ]] || fail "output: $out"
  wait_exits 2
  grep -q "(fork child)" "$tmp/pmon.log" || fail "no fork child HELLO"
  (( $(stats_sum restored) > 0 )) || fail "nothing restored"
  ;;
threads)
  start_pmon 256
  out=$(under_lego "$bindir/threads_test") || fail "threads_test exited $?: $out"
  [[ $out == ok ]] || fail "output: $out"
  wait_exits 21
  (( $(stats_sum evicted) > 0 )) || fail "nothing evicted"
  ;;
fork_child_evict)
  # Regression: a fork child evicted from right after its HELLO_ACK hung when its helper thread (the only
  # one to answer a DROP) was started after the ACK: starting it writes to the heap, maybe to a page of
  # that DROP. Here every fork child is evicted from at its first fault after its HELLO.
  start_pmon 256 --child-cap 0
  out=$(under_lego "$bindir/threads_test") || fail "threads_test exited $?: $out"
  [[ $out == ok ]] || fail "output: $out"
  wait_exits 21
  ;;
unreachable)
  err=$(LD_PRELOAD=$lib LEGO_PMON_SOCKET=$tmp/nobody.sock timeout 20 /bin/true 2>&1)
  rc=$?
  (( rc == 127 )) || fail "exit code $rc, want 127"
  [[ $err == *"lego: cannot reach the process monitor at $tmp/nobody.sock"* ]] || fail "message: $err"
  ;;
inert)
  out=$(LD_PRELOAD=$lib "$bindir/evict_test" 2>&1)
  [[ $out == *"is not registered"* ]] || fail "without LEGO_PMON_SOCKET nothing should be registered: $out"
  ;;
*) echo "unknown test $name" >&2; exit 2 ;;
esac
echo "PASS($name)"
