#!/usr/bin/env bash
# Installs every dependency Lego needs on Debian 12, as root. Idempotent: running it again changes nothing.
#   scripts/setup.sh            install packages only
# Each package is here for a reason (see ../shared/DESIGN.md "Chosen dependencies" and docs/decisions/).
set -euo pipefail

if [[ $(id -u) -ne 0 ]]; then
  echo "setup.sh: must run as root (it installs Debian packages with apt-get)" >&2
  exit 1
fi

PACKAGES=(
  # toolchain
  build-essential cmake ninja-build pkg-config git
  clang-14 libclang-rt-14-dev clang-format clang-tidy
  # transport, storage mounts, async I/O
  libucx-dev ucx-utils libfuse3-dev fuse3 liburing-dev libjemalloc-dev
  # libraries named in DESIGN.md
  libcli11-dev libtoml11-dev libfmt-dev libspdlog-dev nlohmann-json3-dev prometheus-cpp-dev
  # tests and benchmarks
  libgtest-dev libgmock-dev googletest libbenchmark-dev
  # tools used by tests (process inspection, curl for the metrics endpoint, gdb for the stacks of a daemon
  # that stopped answering in a failed test)
  procps curl iproute2 python3 gdb
  # storage tests and benchmarks (vNode mounts: tar, sqlite3, fio)
  tar sqlite3 fio
  # the benchmark suite (bench/run): its real programs and its plots
  redis-server redis-tools zstd python3-matplotlib
)

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if ((${#missing[@]} == 0)); then
  echo "setup.sh: all ${#PACKAGES[@]} packages already installed"
  exit 0
fi

echo "setup.sh: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}"
# bench/run starts its own redis-server on a free port: the Debian package's service, which it enables and
# starts on systemd machines, is not needed. Stop it only if this run installed it.
if [[ " ${missing[*]} " == *" redis-server "* ]] && command -v systemctl >/dev/null && [[ -d /run/systemd/system ]]; then
  systemctl disable --now redis-server >/dev/null 2>&1 || true
fi
echo "setup.sh: done"
