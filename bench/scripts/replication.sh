#!/usr/bin/env bash
# Replication figures (BENCHMARKS.md, "Replication"): a release master and slave of
# broker-a on loopback, fresh stores per run, and wire_load against the master.
#
#   cargo build --release -p broker -p bench && bench/scripts/replication.sh [rounds]
#
# Per round, alternating SYNC_MASTER and ASYNC_MASTER:
#   1. max sends/s (1 KiB, 4 connections x 16 in flight);
#   2. p99 at half that rate;
#   3. (ASYNC_MASTER) replication lag at half the maximum: bytes, sampled every 10 ms
#      from the master's haStatus, and ms, as long-polling consumers of the slave see
#      new messages (produce-to-consume through the slave).
# Then once: slave catch-up throughput (a fresh slave copying a pre-filled master's
# last segments) against the disk's sequential write speed (dd, fdatasync'd) in the
# same run. Master, slave and load generator share the machine's cores.
set -euo pipefail
root=$(pwd)
rounds=${1:-3}
bin=${BIN:-$root/target/release}
work=$(mktemp -d "${TMPDIR:-/tmp}/ferromq-ha-bench.XXXXXX")
pids=()
cleanup() { for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

# Ignore the machine's disk usage (a nearly full disk must not turn the load into refusals).
common_env=(FERROMQ_BROKER_BIND_ADDRESS=127.0.0.1 FERROMQ_BROKER_BROKER_IP1=127.0.0.1
  FERROMQ_BROKER_NAMESRV_ADDR=127.0.0.1:1 FERROMQ_BROKER_BROKER_NAME=broker-a
  FERROMQ_BROKER_STORE__MAPPED_FILE_SIZE_COMMIT_LOG=268435456
  FERROMQ_BROKER_STORE__DISK_SPACE_WARNING_LEVEL_RATIO=1.0
  FERROMQ_BROKER_STORE__DISK_SPACE_CLEAN_FORCIBLY_RATIO=1.0
  FERROMQ_BROKER_STORE__DISK_MAX_USED_SPACE_RATIO=95)

# start_broker NAME PORT HA_PORT ROLE ID [MASTER_HA]
start_broker() {
  local name=$1 port=$2 ha=$3 role=$4 id=$5 master=${6:-}
  rm -rf "$work/$name"
  env "${common_env[@]}" FERROMQ_BROKER_LISTEN_PORT="$port" FERROMQ_BROKER_HA_LISTEN_PORT="$ha" \
    FERROMQ_BROKER_BROKER_ROLE="$role" FERROMQ_BROKER_BROKER_ID="$id" \
    ${master:+FERROMQ_BROKER_HA_MASTER_ADDRESS=$master} \
    FERROMQ_BROKER_STORE__STORE_PATH_ROOT_DIR="$work/$name" \
    "$bin/broker" >"$work/$name.out" 2>"$work/$name.err" &
  pids+=($!)
  for _ in $(seq 1 100); do grep -q listening "$work/$name.out" 2>/dev/null && return; sleep 0.1; done
  echo "$name did not start" >&2; cat "$work/$name.err" >&2; exit 1
}
stop_all() { for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; pids=(); }
field() { grep -o "\"$1\":[0-9.]*" | head -1 | cut -d: -f2; }
p99() { grep -o '"p99":[0-9.]*' | head -1 | cut -d: -f2; }

load="$bin/wire_load --broker 127.0.0.1:31911 --connections 4 --inflight 16 --json"
for round in $(seq 1 "$rounds"); do
  for role in SYNC_MASTER ASYNC_MASTER; do
    start_broker master 31911 31912 "$role" 0
    start_broker slave 31921 0 SLAVE 1 127.0.0.1:31912
    max=$($load --mode send --duration 8s --warmup 2s | tee "$work/max.json" | field msgs_per_sec)
    half=$(printf '%.0f' "$(echo "$max / 2" | bc -l)")
    p=$($load --mode send --rate "$half" --duration 8s --warmup 2s | p99)
    line="$round $role max ${max%.*}/s p99_at_half ${p}ms"
    if [[ $role == ASYNC_MASTER ]]; then
      lag=$($load --mode e2e --rate "$half" --duration 8s --warmup 2s --pull-broker 127.0.0.1:31921 \
        --ha-lag-from 127.0.0.1:31911)
      line="$line lag_bytes_p99 $(echo "$lag" | grep -o '"replication_lag_bytes":{[^}]*}' | p99) lag_ms_p99 $(echo "$lag" | grep -o '"latency_ms":{[^}]*}' | p99)"
    fi
    echo "$line"
    stop_all
  done
done

# Catch-up: a connected slave is frozen (SIGSTOP) while the master takes ~20 s of
# sends, then thawed; wire_load times it from its first progress to the master's end.
start_broker master 31911 31912 ASYNC_MASTER 0
start_broker slave 31921 0 SLAVE 1 127.0.0.1:31912
slave_pid=${pids[-1]}
$load --mode send --duration 2s --warmup 0s >/dev/null   # connected and following
kill -STOP "$slave_pid"
$load --mode send --duration 20s --warmup 0s >/dev/null
"$bin/wire_load" --broker 127.0.0.1:31911 --pull-broker 127.0.0.1:31921 --mode catch-up --duration 120s \
  > "$work/catchup.json" &
catch=$!
kill -CONT "$slave_pid"
wait "$catch"
echo "catch-up $(cat "$work/catchup.json")"
stop_all
# The disk's sequential write speed, same disk, same run (1 GiB, fdatasync'd).
echo "disk $(dd if=/dev/zero of="$work/dd" bs=1M count=1024 conv=fdatasync 2>&1 | tail -1)"
