#!/usr/bin/env bash
# Send rate of a freshly started broker, second by second (BENCHMARKS.md, "Send
# path: warming segments at the writer's pace"): a fresh store, then N consecutive
# 1-s `wire_load` sends measurements (4 x 16 in flight, 1 KiB), printed in
# thousands of msgs/s. The first seconds show a warm-up dip, segment rolls show as
# dips later (1 GiB segments: one roll every ~7 s at 150k msgs/s).
#
#   cargo build --release -p broker -p bench && bench/scripts/warmup_series.sh [seconds]
#
# BROKER=path runs another broker binary (to compare two builds in one run).
set -euo pipefail
root=$(pwd)
seconds=${1:-20}
bin=${BIN:-$root/target/release}
broker=${BROKER:-$bin/broker}
work=$(mktemp -d "${TMPDIR:-/tmp}/ferromq-warmup.XXXXXX")
env FERROMQ_BROKER_BIND_ADDRESS=127.0.0.1 FERROMQ_BROKER_LISTEN_PORT=39911 FERROMQ_BROKER_HA_LISTEN_PORT=39912 \
  FERROMQ_BROKER_STORE__STORE_PATH_ROOT_DIR="$work/store" FERROMQ_BROKER_STORE__DISK_SPACE_WARNING_LEVEL_RATIO=1.0 \
  FERROMQ_BROKER_STORE__DISK_SPACE_CLEAN_FORCIBLY_RATIO=1.0 FERROMQ_BROKER_STORE__DISK_MAX_USED_SPACE_RATIO=95 \
  HOME="$work" "$broker" >"$work/broker.out" 2>"$work/broker.err" &
pid=$!
trap 'kill -9 $pid 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"' EXIT
for _ in $(seq 1 200); do grep -q "listening on" "$work/broker.out" 2>/dev/null && break; sleep 0.05; done
rates=()
for _ in $(seq 1 "$seconds"); do
  r=$("$bin/wire_load" --broker 127.0.0.1:39911 --json --mode send --duration 1s --warmup 0s |
    grep -o '"msgs_per_sec":[0-9]*' | cut -d: -f2)
  rates+=("$((r / 1000))")
done
echo "${rates[*]}"
