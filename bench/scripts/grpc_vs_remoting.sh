#!/usr/bin/env bash
# The gRPC endpoint (RocketMQ 5 clients) against the remoting port (4.x clients) on the
# send path (BENCHMARKS.md, "gRPC endpoint"): acknowledged sends/s, p99, and the CPU
# the broker and the generator each spend per message, one broker on a fresh store per
# run, alternating within each round.
#
#   cargo build --release -p broker -p namesrv -p bench && bench/scripts/grpc_vs_remoting.sh [rounds]
#
# Both generators are async Rust, 4 connections x 16 sends in flight, 1 KiB bodies,
# 2 s warm-up, 8 s measured, ASYNC_FLUSH. remoting: `wire_load --mode send`
# (SEND_MESSAGE_V2, SEND_OK awaited). grpc: `grpc_load` (SendMessage over HTTP/2, its
# SendResultEntry awaited), which the broker turns into the same SEND_MESSAGE_V2 over
# an in-process connection.
#
# Then consumption: remoting `wire_load --mode pull` (32-message pulls of a pre-filled
# topic, no offsets committed: the cheapest way to read) against gRPC `grpc_load
# --mode receive` (ReceiveMessage of 32 and one AckMessage for them, as a 5.x simple
# consumer does: each message hidden, checkpointed in the revive queue, then acked).
set -euo pipefail
rounds=${1:-3}
source "$(dirname "$0")/common.sh" grpc-vs-remoting

remoting() { # ROUND
  start_namesrv
  start_broker broker 29911 29912
  report "$1" remoting "$("$bin/wire_load" --broker 127.0.0.1:29911 --connections 4 --inflight 16 --json \
    --mode send --duration 8s --warmup 2s --server-pid "$broker_pid")"
  stop_all
}

grpc() { # ROUND
  start_namesrv
  GRPC_PORT=29981 start_broker broker 29911 29912
  report "$1" grpc "$("$bin/grpc_load" --endpoint 127.0.0.1:29981 --topic BenchGrpc --connections 4 \
    --inflight 16 --json --duration 8s --warmup 2s --server-pid "$broker_pid")"
  stop_all
}

remoting_pull() { # ROUND
  start_namesrv
  start_broker broker 29911 29912
  report "$1" remoting-pull "$("$bin/wire_load" --broker 127.0.0.1:29911 --connections 4 --queues 4 --json \
    --mode pull --prefill 200000 --duration 8s --warmup 2s --server-pid "$broker_pid")"
  stop_all
}

grpc_receive() { # ROUND
  start_namesrv
  GRPC_PORT=29981 start_broker broker 29911 29912
  report "$1" grpc-receive "$("$bin/grpc_load" --endpoint 127.0.0.1:29981 --topic BenchGrpc --connections 4 \
    --inflight 16 --json --mode receive --prefill 1500000 --duration 8s --warmup 2s --server-pid "$broker_pid")"
  stop_all
}

# ONLY=send or ONLY=receive runs one half.
systems=(remoting grpc)
if [[ ${ONLY:-} != receive ]]; then
  for round in $(seq 1 "$rounds"); do
    for i in 0 1; do "${systems[$(( (round + i) % 2 ))]}" "$round"; done
  done
fi
if [[ ${ONLY:-} != send ]]; then
  readers=(remoting_pull grpc_receive)
  for round in $(seq 1 "$rounds"); do
    for i in 0 1; do "${readers[$(( (round + i) % 2 ))]}" "$round"; done
  done
fi
