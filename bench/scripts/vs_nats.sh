#!/usr/bin/env bash
# FerroMQ against NATS JetStream on the send path (BENCHMARKS.md, "Against NATS
# JetStream"): max acknowledged sends/s, p99, and the CPU the server and the load
# generator each spend per message (from /proc/<pid>/stat over the measured
# window), one broker of each on a fresh store per run, alternating within each round.
#
#   apt-get install nats-server   # Debian's, 2.9.10 here
#   cargo build --release -p broker -p namesrv -p bench && bench/scripts/vs_nats.sh [rounds]
#
# Both generators are async Rust with one connection per 16 in flight (4 x 16),
# 1 KiB bodies, 2 s warm-up, 8 s measured. FerroMQ: ASYNC_FLUSH (acknowledged once
# in the page cache), `wire_load --mode send` (SEND_MESSAGE_V2, SEND_OK awaited),
# twice: `ferromq` gathers a connection's ready requests into one writev (as the SDK
# does), `ferromq-wpr` writes each request with its own write (as a client flushing
# every send does).
# NATS: JetStream file storage, one replica, default sync interval (acknowledged
# once in the page cache), `nats_load` (publish, stream ack awaited).
set -euo pipefail
rounds=${1:-3}
command -v nats-server >/dev/null || { echo "nats-server is not installed (apt-get install nats-server)" >&2; exit 1; }
source "$(dirname "$0")/common.sh" vs-nats

ferromq() { # ROUND [wire_load flags]
  start_namesrv
  start_broker broker 29911 29912
  local label=ferromq
  if [[ $# -gt 1 ]]; then label=ferromq-wpr; fi
  report "$1" "$label" "$("$bin/wire_load" --broker 127.0.0.1:29911 --connections 4 --inflight 16 --json \
    --mode send --duration 8s --warmup 2s --server-pid "$broker_pid" "${@:2}")"
  stop_all
}

nats() { # ROUND
  nats-server -a 127.0.0.1 -p 24222 -js -sd "$work/nats" >"$work/nats.out" 2>&1 &
  local server=$!
  pids+=("$server")
  wait_line "$work/nats.out" "Server is ready"
  report "$1" nats "$("$bin/nats_load" --server nats://127.0.0.1:24222 --connections 4 --inflight 16 --json \
    --duration 8s --warmup 2s --server-pid "$server")"
  stop_all
}

ferromq_wpr() { ferromq "$1" --write-per-request; }

systems=(ferromq ferromq_wpr nats)
for round in $(seq 1 "$rounds"); do
  for i in 0 1 2; do "${systems[$(( (round + i) % 3 ))]}" "$round"; done
done
