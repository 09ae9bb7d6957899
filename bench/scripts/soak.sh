#!/usr/bin/env bash
# Sustained sends across many segment rolls (BENCHMARKS.md, "Sustained sends"): one
# broker on a fresh store (ASYNC_FLUSH, 1 GiB commit-log segments, retention
# deleting segments older than 30 s so that the disk does not fill), driven by
# `wire_load --mode send` (4 connections x 16 in flight, 1 KiB bodies) for
# MINUTES one-minute runs back to back. Prints each minute's sends/s, p99 and server
# CPU per message, each minute against the first, and how many segments were
# started (the commit log's end offset over the segment size).
#
#   cargo build --release -p broker -p namesrv -p bench && bench/scripts/soak.sh [minutes]
set -euo pipefail
minutes=${1:-5}
source "$(dirname "$0")/common.sh" soak

start_namesrv
# Usage above 10 % counts as "over": segments older than file_reserved_time are then
# deleted at each clean run, at any hour.
start_broker broker 29911 29912 FERROMQ_BROKER_STORE__DISK_MAX_USED_SPACE_RATIO=10 \
  FERROMQ_BROKER_STORE__FILE_RESERVED_TIME=30s
first_rate='' first_p99=''
for m in $(seq 1 "$minutes"); do
  j=$("$bin/wire_load" --broker 127.0.0.1:29911 --connections 4 --inflight 16 --json --mode send \
    --duration 60s --warmup 0s --server-pid "$broker_pid")
  if [[ $(echo "$j" | field errors) != 0 ]]; then echo "errors in the run: $j" >&2; exit 1; fi
  rate=$(echo "$j" | field msgs_per_sec) p99=$(echo "$j" | field p99)
  first_rate=${first_rate:-$rate} first_p99=${first_p99:-$p99}
  last=$(ls "$work/store-broker/commitlog" | grep -v tmp | sort | tail -1)
  printf 'minute %d  %7.0f msgs/s (%.2f of the first)  p99 %sms (%.2f of the first)  server %5.2f us/msg  segments started %d\n' \
    "$m" "$rate" "$(echo "$rate / $first_rate" | bc -l)" "$p99" "$(echo "$p99 / $first_p99" | bc -l)" \
    "$(echo "$j" | field server_cpu_us_per_msg)" "$(( 10#$last / (1 << 30) ))"
done
