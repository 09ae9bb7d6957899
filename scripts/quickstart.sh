#!/usr/bin/env bash
# FerroMQ quick start: build, start a name server and a broker in the background,
# send messages with the Rust SDK and receive them with a push consumer.
#
#   scripts/quickstart.sh          # start (or reuse) namesrv + broker + console, send 10, receive 10
#   scripts/quickstart.sh stop     # stop the servers this script started
#   scripts/quickstart.sh --once   # the same, then stop them all (nothing left running)
#
# The servers keep running after the first form, like RocketMQ's own quick start
# (mqnamesrv, mqbroker, then mqshutdown), so the other examples and any RocketMQ
# client can use them at NAMESRV_ADDR=127.0.0.1:9876. Their logs, store and state
# live in a fresh temporary directory; the pids are kept in target/quickstart/.
#
# Ports: NAMESRV_PORT (default 9876), BROKER_PORT (default 10911) and
# BROKER_HA_PORT (default BROKER_PORT + 1, RocketMQ's convention);
# FERROMQ_QUICKSTART_STATE moves the pid files (tests/tests/client_quickstart.rs).
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
STATE=${FERROMQ_QUICKSTART_STATE:-$ROOT/target/quickstart}
NAMESRV_PORT=${NAMESRV_PORT:-9876}
BROKER_PORT=${BROKER_PORT:-10911}
BROKER_HA_PORT=${BROKER_HA_PORT:-$((BROKER_PORT + 1))}
CONSOLE_PORT=${CONSOLE_PORT:-8080}
# The gRPC endpoint RocketMQ 5 clients connect to (0 picks a free port).
GRPC_PORT=${GRPC_PORT:-8081}
NAMESRV_ADDR=127.0.0.1:$NAMESRV_PORT
export NAMESRV_ADDR
CARGO=${CARGO:-cargo}
BIN=${CARGO_TARGET_DIR:-$ROOT/target}/debug

say() { printf '\033[1m==> %s\033[0m\n' "$*"; }

alive() { [[ -n "${1:-}" ]] && kill -0 "$1" 2>/dev/null; }

stop_servers() {
    local stopped=0
    for name in console broker namesrv; do
        local pidfile=$STATE/$name.pid
        [[ -f $pidfile ]] || continue
        local pid
        pid=$(cat "$pidfile")
        if alive "$pid"; then
            kill -TERM "$pid"
            for _ in $(seq 1 100); do alive "$pid" || break; sleep 0.1; done
            alive "$pid" && kill -KILL "$pid"
            say "stopped $name (pid $pid)"
            stopped=1
        fi
        rm -f "$pidfile"
    done
    [[ $stopped == 1 ]] || say "nothing to stop"
}

# Waits up to 60 s for the ready line $2 (a fixed string) that the server prints on
# stdout (captured in $1, whatever RUST_LOG says); on failure shows its log ($1 with
# .out replaced by .log).
wait_for() {
    local out=$1 text=$2 pid=$3 log=${1%.out}.log
    for _ in $(seq 1 600); do
        grep -qF "$text" "$out" 2>/dev/null && return 0
        if ! alive "$pid"; then
            echo "the process exited; its log ($log):" >&2
            tail -n 30 "$log" >&2
            exit 1
        fi
        sleep 0.1
    done
    echo "timed out waiting for '$text' from pid $pid; its log ($log):" >&2
    tail -n 30 "$log" >&2
    exit 1
}

# Refuses to start a broker that would refuse every send: the store stops taking
# messages when its file system is fuller than broker.store.disk_space_warning_level_ratio
# (RocketMQ's diskSpaceWarningLevelRatio, default 0.90). Same figure as `df`.
check_disk() {
    local dir=$1
    local ratio=${FERROMQ_BROKER_STORE__DISK_SPACE_WARNING_LEVEL_RATIO:-0.90}
    local used
    used=$(df --output=pcent "$dir" | tail -n 1 | tr -dc '0-9')
    if awk -v u="$used" -v r="$ratio" 'BEGIN { exit !(u / 100 > r) }'; then
        echo "the disk holding $dir is ${used}% used, above the broker's limit of ${ratio} (broker.store.disk_space_warning_level_ratio): every send would be refused; free space, or set FERROMQ_BROKER_STORE__DISK_SPACE_WARNING_LEVEL_RATIO (e.g. 0.99) or TMPDIR to another disk" >&2
        exit 1
    fi
}

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

case "${1:-}" in
    stop) stop_servers; exit 0 ;;
    --once | "") ;;
    *) echo "usage: $0 [stop | --once]" >&2; exit 2 ;;
esac
ONCE=0
[[ "${1:-}" == --once ]] && ONCE=1

say "building namesrv, broker, the console and the client examples"
"$CARGO" build --quiet -p namesrv -p broker -p console
"$CARGO" build --quiet -p client --examples

mkdir -p "$STATE"
if alive "$(cat "$STATE/namesrv.pid" 2>/dev/null)" && alive "$(cat "$STATE/broker.pid" 2>/dev/null)" \
    && alive "$(cat "$STATE/console.pid" 2>/dev/null)"; then
    WORK=$(cat "$STATE/workdir")
    say "reusing the running name server, broker and console (logs in $WORK)"
else
    stop_servers >/dev/null
    for port in "$NAMESRV_PORT" "$BROKER_PORT" "$BROKER_HA_PORT" "$GRPC_PORT" "$CONSOLE_PORT"; do
        [[ $port == 0 ]] && continue
        if port_busy "$port"; then
            echo "port $port is in use: stop what runs there, or set NAMESRV_PORT / BROKER_PORT / GRPC_PORT / CONSOLE_PORT" >&2
            exit 1
        fi
    done
    WORK=$(mktemp -d "${TMPDIR:-/tmp}/ferromq-quickstart.XXXXXX")
    echo "$WORK" >"$STATE/workdir"
    check_disk "$WORK"

    say "starting the name server on $NAMESRV_ADDR"
    FERROMQ_NAMESRV_LISTEN_PORT=$NAMESRV_PORT \
    FERROMQ_NAMESRV_KV_CONFIG_PATH=$WORK/namesrv/kvConfig.json \
        nohup "$BIN/namesrv" >"$WORK/namesrv.out" 2>"$WORK/namesrv.log" </dev/null &
    echo $! >"$STATE/namesrv.pid"
    wait_for "$WORK/namesrv.out" "listening on" "$(cat "$STATE/namesrv.pid")"

    say "starting the broker on port $BROKER_PORT"
    FERROMQ_BROKER_LISTEN_PORT=$BROKER_PORT \
    FERROMQ_BROKER_HA_LISTEN_PORT=$BROKER_HA_PORT \
    FERROMQ_BROKER_GRPC_SERVER_PORT=$GRPC_PORT \
    FERROMQ_BROKER_STORE__STORE_PATH_ROOT_DIR=$WORK/store \
    FERROMQ_BROKER_STORE__MAPPED_FILE_SIZE_COMMIT_LOG=67108864 \
    FERROMQ_BROKER_TELEMETRY__LOG_LEVEL=info \
        nohup "$BIN/broker" -n "$NAMESRV_ADDR" >"$WORK/broker.out" 2>"$WORK/broker.log" </dev/null &
    echo $! >"$STATE/broker.pid"
    wait_for "$WORK/broker.out" "listening on" "$(cat "$STATE/broker.pid")"
    wait_for "$WORK/broker.out" "registered with" "$(cat "$STATE/broker.pid")"

    say "starting the web console on port $CONSOLE_PORT"
    nohup "$BIN/console" --namesrv "$NAMESRV_ADDR" --listen "127.0.0.1:$CONSOLE_PORT" \
        >"$WORK/console.out" 2>"$WORK/console.log" </dev/null &
    echo $! >"$STATE/console.pid"
    wait_for "$WORK/console.out" "listening on" "$(cat "$STATE/console.pid")"
fi
CONSOLE_URL="http://$(sed -n 's/^listening on //p' "$WORK/console.out" | head -1)/"
say "the web console is at $CONSOLE_URL"

say "sending 10 messages to TopicTest (examples/quickstart_producer.rs)"
"$BIN/examples/quickstart_producer" 10 TopicTest

say "receiving them (examples/push_consumer.rs)"
"$BIN/examples/push_consumer" 10 TopicTest

if [[ $ONCE == 1 ]]; then
    stop_servers
    # The store is the bulk of the directory (a 64 MiB segment at least); keep the logs.
    rm -rf "$WORK/store" "$WORK/namesrv"
    say "done; logs are in $WORK"
else
    cat <<EOF

The name server ($NAMESRV_ADDR, pid $(cat "$STATE/namesrv.pid")), the broker
(127.0.0.1:$BROKER_PORT, pid $(cat "$STATE/broker.pid")) and the web console
($CONSOLE_URL, pid $(cat "$STATE/console.pid")) are still running.
  web console:     $CONSOLE_URL
  gRPC endpoint:   127.0.0.1:$(sed -n 's/^grpc on .*://p' "$WORK/broker.out" | head -1) (RocketMQ 5 clients)
  logs and store:  $WORK
  try:             NAMESRV_ADDR=$NAMESRV_ADDR cargo run -p client --example lite_pull_consumer
  stop them:       scripts/quickstart.sh stop
EOF
fi
