#!/usr/bin/env bash
# How long `ferromq-admin` takes against a name server and three brokers: the whole
# process (start, ask, print, exit), as an operator or a script meets it.
# `clusterList` asks the name server and then every broker concurrently.
#
#   cargo build --release -p namesrv -p broker -p admin
#   bench/scripts/admin_latency.sh [RUNS]
#
# Prints each command's median and worst wall time over RUNS runs (default 50).
set -euo pipefail
source "$(dirname "$0")/common.sh" admin-latency
runs=${1:-50}

start_namesrv
start_broker a 20911 20912 FERROMQ_BROKER_BROKER_NAME=broker-a
start_broker b 21911 21912 FERROMQ_BROKER_BROKER_NAME=broker-b
start_broker c 22911 22912 FERROMQ_BROKER_BROKER_NAME=broker-c
admin=("$bin/ferromq-admin" -n 127.0.0.1:29876)
# All three registered before timing.
for _ in $(seq 1 100); do
  [[ $("${admin[@]}" clusterList | grep -c "127.0.0.1:2[012]911") == 3 ]] && break
  sleep 0.1
done
"${admin[@]}" updateTopic -t AdminLatency -q 4 >/dev/null

time_cmd() { # NAME ARGS...
  local name=$1; shift
  local samples=()
  for _ in $(seq 1 "$runs"); do
    local t0 t1
    t0=$(date +%s%N)
    "${admin[@]}" "$@" >/dev/null
    t1=$(date +%s%N)
    samples+=($(((t1 - t0) / 1000)))
  done
  printf '%s\n' "${samples[@]}" | sort -n | awk -v name="$name" '
    { v[NR] = $1 }
    END { printf "%-20s median %6.1f ms   max %6.1f ms   (%d runs)\n", name, v[int((NR + 1) / 2)] / 1000, v[NR] / 1000, NR }'
}

time_cmd clusterList clusterList
time_cmd topicList topicList
time_cmd topicStatus topicStatus -t AdminLatency
time_cmd brokerStatus brokerStatus -b 127.0.0.1:20911
