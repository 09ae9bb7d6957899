# Shared by the bench scripts that run a name server and brokers from release
# binaries: sourced after `set -euo pipefail`, with a name for the temporary
# directory as its argument. Sets `bin` (release binaries, or $BIN; $BROKER names
# another broker binary), `work` (a temporary directory removed on exit) and `pids`
# (processes killed on exit). The scripts' ports stay below 32768, out of Linux's
# ephemeral range, so that no client connection of an earlier run holds one.
bin=${BIN:-$(pwd)/target/release}
work=$(mktemp -d "${TMPDIR:-/tmp}/ferromq-$1.XXXXXX")
pids=()
cleanup() { for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

# Waits up to 30 s for PATTERN in FILE; otherwise prints FILE (and its .err twin) and exits.
wait_line() { # FILE PATTERN
  for _ in $(seq 1 300); do grep -q "$2" "$1" 2>/dev/null && return; sleep 0.1; done
  echo "timed out waiting for '$2' in $1" >&2; cat "$1" >&2
  if [[ -f ${1%.out}.err ]]; then grep -v "^  " "${1%.out}.err" | head -20 >&2; fi
  exit 1
}

# A name server on 127.0.0.1:29876.
start_namesrv() {
  env FERROMQ_NAMESRV_BIND_ADDRESS=127.0.0.1 FERROMQ_NAMESRV_LISTEN_PORT=29876 HOME="$work" \
    FERROMQ_NAMESRV_KV_CONFIG_PATH="$work/kv.json" "$bin/namesrv" >"$work/ns.out" 2>&1 &
  pids+=($!)
  wait_line "$work/ns.out" "listening on"
}

# A broker registering with it, on 127.0.0.1:PORT, with a fresh store in
# $work/store-NAME that ignores the disk's usage, and extra `FERROMQ_BROKER_*=value`
# settings. Sets `broker_pid`.
start_broker() { # NAME PORT HA_PORT [SETTING=value ...]
  local name=$1 port=$2 ha=$3; shift 3
  env FERROMQ_BROKER_BIND_ADDRESS=127.0.0.1 FERROMQ_BROKER_BROKER_IP1=127.0.0.1 \
    FERROMQ_BROKER_NAMESRV_ADDR=127.0.0.1:29876 FERROMQ_BROKER_LISTEN_PORT="$port" \
    FERROMQ_BROKER_HA_LISTEN_PORT="$ha" FERROMQ_BROKER_GRPC_SERVER_PORT="${GRPC_PORT:--1}" \
    FERROMQ_BROKER_STORE__STORE_PATH_ROOT_DIR="$work/store-$name" \
    FERROMQ_BROKER_STORE__DISK_SPACE_WARNING_LEVEL_RATIO=1.0 \
    FERROMQ_BROKER_STORE__DISK_SPACE_CLEAN_FORCIBLY_RATIO=1.0 FERROMQ_BROKER_STORE__DISK_MAX_USED_SPACE_RATIO=95 \
    "$@" "${BROKER:-$bin/broker}" >"$work/$name.out" 2>"$work/$name.err" &
  broker_pid=$!
  pids+=("$broker_pid")
  wait_line "$work/$name.out" "listening on"
}

# Kills everything started and removes the stores and logs (the rest of $work stays).
stop_all() {
  for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true; pids=()
  rm -rf "${work:?}"/store-* "$work/nats" "$work"/*.out "$work"/*.err "$work/kv.json"
}

# The first number after "NAME": in JSON on stdin.
field() { grep -o "\"$1\":[0-9.]*" | head -1 | cut -d: -f2; }

# One line for a load generator's JSON result (wire_load, nats_load); exits if the run
# had errors.
report() { # ROUND SYSTEM JSON
  if [[ $(echo "$3" | field errors) != 0 ]]; then echo "errors in the run: $3" >&2; exit 1; fi
  printf '%s %-13s %7.0f msgs/s  p99 %sms  server %5.2f us/msg  client %5.2f us/msg\n' "$1" "$2" \
    "$(echo "$3" | field msgs_per_sec)" "$(echo "$3" | field p99)" \
    "$(echo "$3" | field server_cpu_us_per_msg)" "$(echo "$3" | field client_cpu_us_per_msg)"
}
