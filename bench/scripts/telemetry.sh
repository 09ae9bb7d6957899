#!/usr/bin/env bash
# Cost of telemetry on the send path (BENCHMARKS.md, "Telemetry"): one release
# broker, a fresh store per run, runs alternating between
#   off       metrics DISABLE, traces none (the defaults)
#   prom      metricsExporterType PROM
#   trace1    spans exported over OTLP/gRPC to otlp_sink, 1 % of sends traced
#   trace100  the same, every send traced
# each measuring max sync sends/s (1 KiB, 4 connections x 16 in flight, 2 s warm-up,
# 8 s measured). Then the scrape: a PROM broker with 1,000 topics read by 10 groups
# each (10,000 rocketmq_messages_out_total series), 20 scrapes back to back; and the
# send p99 at half the maximum rate without and with a scraper reading /metrics every
# second.
#
#   cargo build --release -p broker -p bench && bench/scripts/telemetry.sh [rounds]
#
# PART=scrape runs only the scrape measurements.
set -euo pipefail
root=$(pwd)
rounds=${1:-5}
bin=${BIN:-$root/target/release}
work=$(mktemp -d "${TMPDIR:-/tmp}/ferromq-telemetry.XXXXXX")
pids=()
cleanup() { for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

"$bin/otlp_sink" --listen 127.0.0.1:34317 >"$work/sink.out" &
pids+=($!)

# start_broker EXTRA_ENV...: a fresh broker on 127.0.0.1:31911 (metrics on 31957).
start_broker() {
  rm -rf "$work/store"
  env FERROMQ_BROKER_BIND_ADDRESS=127.0.0.1 FERROMQ_BROKER_BROKER_IP1=127.0.0.1 \
    FERROMQ_BROKER_LISTEN_PORT=31911 FERROMQ_BROKER_HA_LISTEN_PORT=0 FERROMQ_BROKER_GRPC_SERVER_PORT=-1 FERROMQ_BROKER_NAMESRV_ADDR=127.0.0.1:1 \
    FERROMQ_BROKER_STORE__STORE_PATH_ROOT_DIR="$work/store" \
    FERROMQ_BROKER_STORE__DISK_SPACE_WARNING_LEVEL_RATIO=1.0 FERROMQ_BROKER_STORE__DISK_SPACE_CLEAN_FORCIBLY_RATIO=1.0 \
    FERROMQ_BROKER_STORE__DISK_MAX_USED_SPACE_RATIO=95 FERROMQ_BROKER_TELEMETRY__METRICS__PROM_EXPORTER_PORT=31957 \
    "$@" "$bin/broker" >"$work/broker.out" 2>"$work/broker.err" &
  broker=$!
  for _ in $(seq 1 100); do grep -q listening "$work/broker.out" 2>/dev/null && return; sleep 0.1; done
  echo "broker did not start" >&2; cat "$work/broker.err" >&2; exit 1
}
stop_broker() { kill -9 "$broker" 2>/dev/null || true; wait "$broker" 2>/dev/null || true; }
field() { grep -o "\"$1\":[0-9.]*" | head -1 | cut -d: -f2; }

prom=(FERROMQ_BROKER_TELEMETRY__METRICS__EXPORTER_TYPE=PROM)
traces=(FERROMQ_BROKER_TELEMETRY__TRACES__EXPORTER=otlp FERROMQ_BROKER_TELEMETRY__TRACES__ENDPOINT=http://127.0.0.1:34317)
load="$bin/wire_load --broker 127.0.0.1:31911 --connections 4 --inflight 16 --json"
for round in $(seq 1 "$rounds"); do
  [[ ${PART:-all} == scrape ]] && break
  if (( round % 2 )); then order="off prom trace1 trace100"; else order="trace100 trace1 prom off"; fi
  for setup in $order; do
    case $setup in
      off) start_broker ;;
      prom) start_broker "${prom[@]}" ;;
      trace1) start_broker "${traces[@]}" FERROMQ_BROKER_TELEMETRY__TRACES__SAMPLE_RATIO=0.01 ;;
      trace100) start_broker "${traces[@]}" FERROMQ_BROKER_TELEMETRY__TRACES__SAMPLE_RATIO=1.0 ;;
    esac
    out=$($load --mode send --duration 8s --warmup 2s)
    echo "$round $setup $(echo "$out" | field msgs_per_sec | cut -d. -f1) p99 $(echo "$out" | field p99)ms"
    stop_broker
  done
done
[[ ${PART:-all} == scrape ]] || echo "sink $(tail -1 "$work/sink.out")"

# The scrape of a large broker, and its effect on the send p99.
start_broker "${prom[@]}"
echo "populate $($bin/wire_load --broker 127.0.0.1:31911 --mode populate --topics 1000 --groups 10 \
  --scrape http://127.0.0.1:31957/metrics)"
max=$($load --mode send --duration 8s --warmup 2s | field msgs_per_sec)
half=$(printf '%.0f' "$(echo "$max / 2" | bc -l)")
for round in $(seq 1 "$rounds"); do
  for scraper in without with; do
    extra=(); [[ $scraper == with ]] && extra=(--scrape http://127.0.0.1:31957/metrics --scrape-every 1s)
    out=$($load --mode send --rate "$half" --duration 8s --warmup 2s "${extra[@]}")
    echo "$round half-rate $half $scraper-scraper p99 $(echo "$out" | field p99)ms scrape $(echo "$out" | grep -o '"scrape_ms":{[^}]*}' || true)"
  done
done
stop_broker
