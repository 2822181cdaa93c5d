#!/usr/bin/env bash
# The main job (README, first command): installs dependencies, builds, brings up the embedded local cluster
# (1 gm, 1 pmon, 2 mmon, 1 smon on loopback), runs a real program (examples/sort_records.py, a Python data
# job of ~75 MB) with its memory on the memory monitors through a 24 MB ExCache, checks its output against
# a local run and prints what happened to its memory; then writes a file into a vNode (the storage path),
# kills one memory monitor to show failure detection, brings it back with `lego restart`, and takes the
# cluster down, leaving nothing behind.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
"$root/scripts/setup.sh"
echo "== building"
"$root/scripts/build.sh" release | tail -1
lego=$root/build/src/lego
demo_dir=$(mktemp -d /tmp/lego-demo.XXXXXX)
export LEGO_STATE_DIR=${LEGO_STATE_DIR:-$demo_dir/state}
trap '"$lego" down >/dev/null 2>&1 || true; rm -rf "$demo_dir"' EXIT

echo "== lego up"
"$lego" up --mmon-capacity 512M --excache 128M
echo "== lego status"
"$lego" status
records=${LEGO_DEMO_RECORDS:-60000}
job=("$root/examples/sort_records.py" "$records")
echo "== local run: python3 ${job[*]}"
local_out=$(/usr/bin/python3 "${job[@]}")
echo "$local_out"
echo "== lego run --excache 24M --stats -- python3 ${job[*]}"
echo "   (the program's heap, ~75 MB, lives on the memory monitors; at most 24 MB of it is local)"
start=$(date +%s.%N)
lego_out=$("$lego" run --excache 24M --stats -- /usr/bin/python3 "${job[@]}")
echo "$lego_out"
echo "   took $(python3 -c "print(f'{$(date +%s.%N) - $start:.1f}')") s under Lego"
if [[ "$lego_out" == "$local_out" ]]; then
  echo "== output identical to the local run"
else
  echo "== OUTPUT DIFFERS from the local run" >&2
  exit 1
fi
pmon_id=$("$lego" status --json | python3 -c 'import json,sys; print([c["id"] for c in json.load(sys.stdin) if c["kind"]=="pmon"][0])')
echo "== lego stats --id $pmon_id (the process monitor's counters)"
"$lego" stats --id "$pmon_id" | grep -E "pmon_(faults|excache|zero|fetched|prefetch|evicted|writeback|remote_freed|fault_latency|processes)"
echo "== files in a vNode: a job writes its result into vNode 'demo' (FUSE on the pmon -> the buffer cache on"
echo "   an mmon -> the smon's disk); sync makes it durable on the smon"
"$lego" vnode create demo
"$lego" run --vnode demo -- /bin/sh -c "/usr/bin/python3 $root/examples/sort_records.py 2000 > sorted.txt && sync sorted.txt && sha256sum sorted.txt && ls -l"
"$lego" vnode ls
echo "== the same file, as the smon keeps it on its disk"
sha256sum "$LEGO_STATE_DIR"/data/smon-0/vnodes/*/sorted.txt
victim=$("$lego" status --json | python3 -c 'import json,sys; print([c["pid"] for c in json.load(sys.stdin) if c["name"]=="mmon-1"][0])')
echo "== kill -9 mmon-1 (pid $victim); the gm notices missed heartbeats"
kill -9 "$victim"
start=$(date +%s.%N)
for _ in $(seq 1 50); do
  if "$lego" status --json | python3 -c 'import json,sys; sys.exit(0 if any(c["name"]=="mmon-1" and c["state"]=="dead" for c in json.load(sys.stdin)) else 1)'; then
    break
  fi
  sleep 0.2
done
echo "mmon-1 marked dead $(python3 -c "print(f'{$(date +%s.%N) - $start:.1f}')") s after kill -9"
"$lego" status
echo "== lego restart mmon-1 (same flags and data dir; it registers again, with an empty pool)"
"$lego" restart mmon-1
"$lego" status
echo "== lego down"
"$lego" down
