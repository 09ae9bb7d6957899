#!/usr/bin/env bash
# Pull throughput of WASM filter plugins against the built-in TAG filter: a trivial
# one (accepts everything) declaring it reads no field, the same declaring it reads
# tags (so the broker parses every record, as the TAG filter's exact check does: the
# ABI's cost alone), and the tag-set example (a real filter); one release broker, one
# pre-filled topic, alternating runs (BENCHMARKS.md, "Pull throughput with a filter
# plugin"). Run from the repository root:
#
#   cargo build --release -p broker -p bench && bench/scripts/plugin_pull.sh [rounds]
#
# BIN names another build's release directory (to compare two builds on the same
# machine); PORT another port.
set -euo pipefail
root=$(pwd)
bin=${BIN:-$root/target/release}
pairs=${1:-6}
port=${PORT:-21911}
work=$(mktemp -d)
trap 'kill "${broker_pid:-}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"' EXIT

"$bin/trivial_filter" "$work/accept_all.wasm"
"$bin/trivial_filter" "$work/accept_all_tags.wasm" tags
cat > "$work/broker.toml" <<TOML
[plugins]
watch = false
[[plugins.plugin]]
name = "trivial"
kind = "filter"
runtime = "wasm"
path = "$work/accept_all.wasm"
limits = { max_batch = 1024 }
[[plugins.plugin]]
name = "trivial-tags"
kind = "filter"
runtime = "wasm"
path = "$work/accept_all_tags.wasm"
limits = { max_batch = 1024 }
[[plugins.plugin]]
name = "all-tags"
kind = "filter"
runtime = "wasm"
path = "$root/plugins/examples/wasm/tag_set_filter.wasm"
config = { tags = "bench" }
limits = { max_batch = 1024 }
TOML

# The store ignores the machine's disk usage: a nearly full disk must not turn the
# prefill into refusals or forced deletions.
FERROMQ_BROKER_LISTEN_PORT=$port FERROMQ_BROKER_HA_LISTEN_PORT=0 \
FERROMQ_BROKER_BIND_ADDRESS=127.0.0.1 FERROMQ_BROKER_BROKER_IP1=127.0.0.1 \
FERROMQ_BROKER_NAMESRV_ADDR=127.0.0.1:1 FERROMQ_BROKER_STORE__STORE_PATH_ROOT_DIR="$work/store" \
FERROMQ_BROKER_STORE__DISK_SPACE_WARNING_LEVEL_RATIO=1.0 FERROMQ_BROKER_STORE__DISK_SPACE_CLEAN_FORCIBLY_RATIO=1.0 \
FERROMQ_BROKER_STORE__DISK_MAX_USED_SPACE_RATIO=95 \
  "$bin/broker" -c "$work/broker.toml" >"$work/broker.out" 2>"$work/broker.err" &
broker_pid=$!
for _ in $(seq 1 100); do grep -q listening "$work/broker.out" && break; sleep 0.1; done

load="$bin/wire_load --broker 127.0.0.1:$port --mode pull"
# 1.2 M messages of 1 KiB on 8 queues, all tagged "bench".
$load --prefill 1200000 --duration 1s --warmup 0s --group warm >/dev/null
for round in $(seq 1 "$pairs"); do
  if (( round % 2 )); then order="TAG PLUGIN:trivial PLUGIN:trivial-tags PLUGIN:all-tags"
  else order="PLUGIN:all-tags PLUGIN:trivial-tags PLUGIN:trivial TAG"; fi
  for ty in $order; do
    rate=$($load --prefill 0 --duration 3s --warmup 1s --group "g$round${ty//[^a-zA-Z]/}" \
      --expression bench --expression-type "$ty" --json | grep -o '"msgs_per_sec":[0-9]*' | cut -d: -f2)
    echo "$round $ty $rate"
  done
done
