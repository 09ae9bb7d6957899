#!/usr/bin/env bash
# Send and pull throughput of two builds of the broker, alternating on the same
# machine (BENCHMARKS.md, "Broker end to end"): each run on a fresh store, 1 KiB
# bodies, 4 connections x 16 in flight, 2 s warm-up then 8 s measured, gathering a
# connection's ready requests into one write (`send`) and writing each request with
# its own write (`send-wpr`); pulls of a 200,000-message prefill with 2 connections;
# gRPC sends of RocketMQ 5 clients (`grpc-send`, `grpc_load`, 4 x 16 in flight).
#
#   bench/scripts/compare_builds.sh BASE_RELEASE_DIR NEW_RELEASE_DIR [rounds]
#   MODES="grpc-send" bench/scripts/compare_builds.sh ...   # some of the modes only
#
# Each directory holds a `broker`, a `wire_load` and a `grpc_load` (copy the same
# generators into both to compare brokers alone). Prints one line per run:
# round, build, mode, msgs/s, p99 ms, and the broker's CPU per message in µs (user +
# system time over the measured window; sends only).
set -euo pipefail
base=$1 new=$2 rounds=${3:-3}
port=${PORT:-21911}
grpc_port=${GRPC_PORT:-21981}
modes=${MODES:-send send-wpr pull}
work=$(mktemp -d "${TMPDIR:-/tmp}/ferromq-compare.XXXXXX")
pid=
trap 'kill -9 $pid 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"' EXIT

run() { # BIN MODE ARGS...
  local bin=$1 mode=$2; shift 2
  rm -rf "$work/store"
  # The store ignores the machine's disk usage (a nearly full disk must not refuse).
  FERROMQ_BROKER_BIND_ADDRESS=127.0.0.1 FERROMQ_BROKER_BROKER_IP1=127.0.0.1 FERROMQ_BROKER_LISTEN_PORT=$port \
  FERROMQ_BROKER_HA_LISTEN_PORT=0 FERROMQ_BROKER_NAMESRV_ADDR=127.0.0.1:1 FERROMQ_BROKER_GRPC_SERVER_PORT=$grpc_port \
  FERROMQ_BROKER_STORE__STORE_PATH_ROOT_DIR="$work/store" \
  FERROMQ_BROKER_STORE__DISK_SPACE_WARNING_LEVEL_RATIO=1.0 FERROMQ_BROKER_STORE__DISK_SPACE_CLEAN_FORCIBLY_RATIO=1.0 \
  FERROMQ_BROKER_STORE__DISK_MAX_USED_SPACE_RATIO=95 "$@" \
    "$bin/broker" >"$work/broker.out" 2>"$work/broker.err" &
  pid=$!
  for _ in $(seq 1 100); do grep -q listening "$work/broker.out" 2>/dev/null && break; sleep 0.1; done
  local out
  local send=("$bin/wire_load" --broker 127.0.0.1:$port --mode send --connections 4 --inflight 16 --duration 8s
    --warmup 2s --json --server-pid "$pid")
  case $mode in
    pull) out=$("$bin/wire_load" --broker 127.0.0.1:$port --mode pull --connections 2 --prefill 200000 --duration 8s --json) ;;
    send) out=$("${send[@]}") ;;
    send-wpr) out=$("${send[@]}" --write-per-request) ;;
    grpc-send) out=$("$bin/grpc_load" --endpoint 127.0.0.1:$grpc_port --topic BenchGrpc --connections 4 --inflight 16 \
      --duration 8s --warmup 2s --json --server-pid "$pid") ;;
  esac
  kill -9 $pid; wait $pid 2>/dev/null || true
  echo "$out"
}

for round in $(seq 1 "$rounds"); do
  if (( round % 2 )); then order="base new"; else order="new base"; fi
  for which in $order; do
    bin=$base; [[ $which == new ]] && bin=$new
    for mode in $modes; do
      out=$(run "$bin" "$mode")
      rate=$(echo "$out" | grep -o '"msgs_per_sec":[0-9.]*' | cut -d: -f2)
      p99=$(echo "$out" | grep -o '"p99":[0-9.]*' | head -1 | cut -d: -f2)
      cpu=$(echo "$out" | grep -o '"server_cpu_us_per_msg":[0-9.]*' | cut -d: -f2 || true)
      printf '%s %s %s %.0f %s %s\n' "$round" "$which" "$mode" "$rate" "$p99" "${cpu:--}"
    done
  done
done
