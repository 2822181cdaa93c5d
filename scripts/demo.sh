#!/usr/bin/env bash
# The main job (README, first command): installs dependencies, builds, brings up the embedded local cluster
# (1 gm, 1 pmon, 2 mmon, 1 smon on loopback), shows `lego status` and `lego stats`, kills one memory monitor
# to show failure detection, and takes the cluster down, leaving nothing behind.
#
# Until disaggregated memory lands (issue 3), this is the whole of what Lego runs: the control plane.
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
echo "== lego stats --id 1 (one memory monitor's counters)"
"$lego" stats --id 1
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
echo "== lego down"
"$lego" down
