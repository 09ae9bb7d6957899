#!/usr/bin/env bash
# Builds the example WASM plugins reproducibly and copies them to plugins/examples/wasm/.
# plugins/host/tests/examples.rs rebuilds with the same settings and compares the bytes.
#   rustup target add wasm32-unknown-unknown   # once
set -euo pipefail
cd "$(dirname "$0")/../.."
export CARGO_PROFILE_RELEASE_DEBUG=0 CARGO_PROFILE_RELEASE_STRIP=true CARGO_PROFILE_RELEASE_LTO=true \
       CARGO_PROFILE_RELEASE_CODEGEN_UNITS=1 CARGO_PROFILE_RELEASE_OPT_LEVEL=s CARGO_PROFILE_RELEASE_PANIC=abort \
       CARGO_PROFILE_RELEASE_INCREMENTAL=false
cargo build --release --locked --target wasm32-unknown-unknown -p price-range-filter -p native-tag-filter \
  --target-dir target/wasm-examples
mkdir -p plugins/examples/wasm
out=target/wasm-examples/wasm32-unknown-unknown/release
cp "$out/price_range_filter.wasm" plugins/examples/wasm/price_range_filter.wasm
# The native example's source builds as a WASM module too (same logic, other runtime).
cp "$out/native_tag_filter.wasm" plugins/examples/wasm/tag_set_filter.wasm
ls -l plugins/examples/wasm/
