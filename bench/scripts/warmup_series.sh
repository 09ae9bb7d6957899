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
seconds=${1:-20}
source "$(dirname "$0")/common.sh" warmup
start_namesrv
start_broker broker 29911 29912
rates=()
for _ in $(seq 1 "$seconds"); do
  r=$("$bin/wire_load" --broker 127.0.0.1:29911 --json --mode send --duration 1s --warmup 0s |
    grep -o '"msgs_per_sec":[0-9]*' | cut -d: -f2)
  rates+=("$((r / 1000))")
done
echo "${rates[*]}"
