#!/usr/bin/env bash
# Controller mode's acknowledgement cost (BENCHMARKS.md, "Failover (controller mode)"):
# send throughput and p99 of a broker set with allAckInSyncStateSet and two slaves
# (three brokers in controller mode under a one-node controller group) against a
# SYNC_MASTER with one slave, alternating within each round, fresh stores per run.
#
#   cargo build --release -p broker -p namesrv -p controller -p admin -p bench \
#     && bench/scripts/controller_mode.sh [rounds]
#
# Each run: max sync sends/s (1 KiB, 4 connections x 16 in flight, 2 s warm-up, 8 s
# measured) against the master, with its p99. Everything shares the machine's cores.
set -euo pipefail
rounds=${1:-3}
source "$(dirname "$0")/common.sh" ctl-bench

set_env=(FERROMQ_BROKER_BROKER_NAME=broker-b FERROMQ_BROKER_REGISTER_NAME_SERVER_PERIOD=1000ms
  FERROMQ_BROKER_STORE__MAPPED_FILE_SIZE_COMMIT_LOG=268435456)

# The set's brokers: start_set_broker NAME PORT HA_PORT EXTRA_ENV...
start_set_broker() { local name=$1 port=$2 ha=$3; shift 3; start_broker "$name" "$port" "$ha" "${set_env[@]}" "$@"; }
# Between setups everything goes, the controller's store too.
stop_all() { for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; pids=(); rm -rf "${work:?}"/*; }
load() { "$bin/wire_load" --broker "$1" --connections 4 --inflight 16 --json --mode send --duration 8s --warmup 2s; }

run_sync_master() {
  start_namesrv
  start_set_broker m 29911 29912 FERROMQ_BROKER_BROKER_ROLE=SYNC_MASTER FERROMQ_BROKER_BROKER_ID=0
  start_set_broker s 29921 29922 FERROMQ_BROKER_BROKER_ROLE=SLAVE FERROMQ_BROKER_BROKER_ID=1 \
    FERROMQ_BROKER_HA_MASTER_ADDRESS=127.0.0.1:29912
  for _ in $(seq 1 100); do "$bin/ferromq-admin" -n 127.0.0.1:29876 haStatus -b 127.0.0.1:29911 2>/dev/null \
    | grep -q "127.0.0.1" && break; sleep 0.2; done
  out=$(load 127.0.0.1:29911)
  echo "$1 sync_master $(echo "$out" | field msgs_per_sec | cut -d. -f1) p99 $(echo "$out" | field p99)ms"
  stop_all
}

run_all_ack() {
  env FERROMQ_CONTROLLER_CONTROLLER_DLEGER_PEERS=n0-127.0.0.1:29878 FERROMQ_CONTROLLER_CONTROLLER_DLEGER_SELF_ID=n0 \
    FERROMQ_CONTROLLER_CONTROLLER_STORE_PATH="$work/ctl" HOME="$work" "$bin/controller" >"$work/ctl.out" 2>&1 &
  pids+=($!)
  wait_line "$work/ctl.out" "listening on"
  start_namesrv
  for i in 1 2 3; do
    start_set_broker "b$i" "2993$i" "2994$i" FERROMQ_BROKER_ENABLE_CONTROLLER_MODE=true \
      FERROMQ_BROKER_CONTROLLER_ADDR=127.0.0.1:29878 FERROMQ_BROKER_ALL_ACK_IN_SYNC_STATE_SET=true \
      FERROMQ_BROKER_CHECK_SYNC_STATE_SET_PERIOD=500ms FERROMQ_BROKER_SYNC_BROKER_METADATA_PERIOD=500ms
  done
  local master=""
  for _ in $(seq 1 150); do
    state=$("$bin/ferromq-admin" getSyncStateSet -a 127.0.0.1:29878 -b broker-b 2>/dev/null || true)
    if [[ $(echo "$state" | grep -c "InSyncReplica:") == 3 ]]; then
      master=$(echo "$state" | grep "#MasterAddr" | cut -f2); break
    fi
    sleep 0.2
  done
  [[ -n $master ]] || { echo "no master with three in sync" >&2; exit 1; }
  out=$(load "$master")
  echo "$1 all_ack_2_slaves $(echo "$out" | field msgs_per_sec | cut -d. -f1) p99 $(echo "$out" | field p99)ms"
  stop_all
}

for round in $(seq 1 "$rounds"); do
  if (( round % 2 )); then run_sync_master "$round"; run_all_ack "$round"; else run_all_ack "$round"; run_sync_master "$round"; fi
done
