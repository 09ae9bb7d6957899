#!/usr/bin/env bash
# TLS's cost (BENCHMARKS.md, "Security (TLS)"): max sync sends/s of one broker over
# TLS (an enforcing port, TLS 1.3 with the cipher suite rustls picks first) against
# the same broker in plain TCP, rotating the order within each round, fresh store
# per run; then new connections per second (TCP connect, handshake, one heartbeat
# answered, close) over TLS and in plain TCP.
#
#   cargo build --release -p broker -p namesrv -p bench && bench/scripts/tls.sh [rounds]
#
# Sends: 1 KiB bodies, 4 connections x 16 in flight, 2 s warm-up, 8 s measured.
# Connections: 4 loops, 5 s measured. The certificate is a fresh self-signed P-256
# one (not a CA: rustls refuses a CA certificate as a server's own).
set -euo pipefail
rounds=${1:-3}
source "$(dirname "$0")/common.sh" tls-bench

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 -subj /CN=127.0.0.1 \
  -addext subjectAltName=IP:127.0.0.1 -addext basicConstraints=critical,CA:FALSE -keyout "$work/key.pem" -out "$work/cert.pem" 2>/dev/null

start() { # TLS_MODE
  start_namesrv
  start_broker broker 29911 29912 FERROMQ_BROKER_STORE__MAPPED_FILE_SIZE_COMMIT_LOG=268435456 \
    FERROMQ_BROKER_TLS__MODE="$1" FERROMQ_BROKER_TLS__CERT_PATH="$work/cert.pem" \
    FERROMQ_BROKER_TLS__KEY_PATH="$work/key.pem"
}

run() { # ROUND tls|plain
  local mode=disabled tls=()
  if [[ $2 == tls ]]; then mode=enforcing; tls=(--tls-ca "$work/cert.pem"); fi
  start "$mode"
  out=$("$bin/wire_load" --broker 127.0.0.1:29911 --connections 4 --inflight 16 --json --mode send \
    --duration 8s --warmup 2s "${tls[@]}")
  if [[ $(echo "$out" | field errors) != 0 ]]; then echo "errors in the run: $out" >&2; exit 1; fi
  echo "$1 send_$2 $(echo "$out" | field msgs_per_sec | cut -d. -f1) p99 $(echo "$out" | field p99)ms"
  out=$("$bin/wire_load" --broker 127.0.0.1:29911 --connections 4 --json --mode connect \
    --duration 5s --warmup 1s "${tls[@]}")
  if [[ $(echo "$out" | field errors) != 0 ]]; then echo "errors in the run: $out" >&2; exit 1; fi
  echo "$1 connect_$2 $(echo "$out" | field msgs_per_sec | cut -d. -f1) p99 $(echo "$out" | field p99)ms"
  stop_all
}

modes=(plain tls)
for round in $(seq 1 "$rounds"); do
  for i in 0 1; do run "$round" "${modes[$(( (round + i) % 2 ))]}"; done
done
