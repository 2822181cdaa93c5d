#!/usr/bin/env bash
# Configures and builds Lego.
#   scripts/build.sh [release|debug|sanitize]     default: release (RelWithDebInfo)
# Build trees: build/ (release), build-debug/, build-sanitize/ (ASan+UBSan). Binaries land in BUILD/src/.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
mode=${1:-release}
case $mode in
  release) dir=$root/build; type=RelWithDebInfo; extra=() ;;
  debug) dir=$root/build-debug; type=Debug; extra=() ;;
  sanitize) dir=$root/build-sanitize; type=Sanitize; extra=(-DLEGO_BUILD_BENCH=OFF) ;;
  *) echo "usage: $0 [release|debug|sanitize]" >&2; exit 2 ;;
esac
cmake -S "$root" -B "$dir" -G Ninja -DCMAKE_BUILD_TYPE="$type" "${extra[@]}" >/dev/null
cmake --build "$dir"
