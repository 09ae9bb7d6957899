#!/usr/bin/env bash
# ACL's cost on the send path (BENCHMARKS.md, "Security"): max sync sends/s and p99
# of one broker with aclEnable (every request signed by the load generator, checked
# against plain_acl.yml: signature, then the topic's PUB) against the same broker
# with ACL off, both with a signing client (`signed_off`: the broker's own cost)
# and with an unsigned one (`off`: the client's signing too), rotating the order
# within each round, fresh store per run.
#
#   cargo build --release -p broker -p namesrv -p bench && bench/scripts/acl.sh [rounds]
#
# Each run: 1 KiB bodies, 4 connections x 16 in flight, 2 s warm-up, 8 s measured.
# The load generator signs on the same machine (as a signing client would).
set -euo pipefail
rounds=${1:-3}
source "$(dirname "$0")/common.sh" acl-bench

cat >"$work/plain_acl.yml" <<'YAML'
accounts:
  - accessKey: benchmark
    secretKey: benchmark-secret
    # Admin, to create the topic; with topicPerms, so each send is still checked
    # resource by resource.
    admin: true
    defaultTopicPerm: DENY
    topicPerms: [ "BenchmarkLoad=PUB" ]
YAML

start() { # ACL_ENABLE
  start_namesrv
  start_broker broker 29911 29912 FERROMQ_BROKER_STORE__MAPPED_FILE_SIZE_COMMIT_LOG=268435456 \
    FERROMQ_BROKER_ACL_ENABLE="$1" FERROMQ_BROKER_ACL_FILE="$work/plain_acl.yml"
}

run() { # ROUND on|signed_off|off
  local acl=false creds=()
  if [[ $2 != off ]]; then creds=(--access-key benchmark --secret-key benchmark-secret); fi
  if [[ $2 == on ]]; then acl=true; fi
  start "$acl"
  out=$("$bin/wire_load" --broker 127.0.0.1:29911 --connections 4 --inflight 16 --json --mode send \
    --duration 8s --warmup 2s "${creds[@]}")
  if [[ $(echo "$out" | field errors) != 0 ]]; then echo "errors in the run: $out" >&2; exit 1; fi
  echo "$1 acl_$2 $(echo "$out" | field msgs_per_sec | cut -d. -f1) p99 $(echo "$out" | field p99)ms"
  stop_all
}

modes=(off signed_off on)
for round in $(seq 1 "$rounds"); do
  for i in 0 1 2; do run "$round" "${modes[$(( (round + i) % 3 ))]}"; done
done
