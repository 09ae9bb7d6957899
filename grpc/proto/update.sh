#!/usr/bin/env bash
# Replaces apache/rocketmq/v2/*.proto with the files Apache RocketMQ publishes in its
# Node.js client package (rocketmq-client-nodejs on npm, Apache-2.0), checking the
# package's digest first. The files are taken as published, never edited.
set -euo pipefail
cd "$(dirname "$0")"
version=1.0.8
sha256=1173e2a41aa26ba3c199a3e9684fdeeea6d3cd64cc1ae0f53fe40bd59d27f08d
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
curl -sSfL -o "$tmp/pkg.tgz" "https://registry.npmjs.org/rocketmq-client-nodejs/-/rocketmq-client-nodejs-$version.tgz"
echo "$sha256  $tmp/pkg.tgz" | sha256sum -c --quiet
tar xzf "$tmp/pkg.tgz" -C "$tmp"
cp "$tmp"/package/proto/apache/rocketmq/v2/*.proto apache/rocketmq/v2/
cp "$tmp/package/LICENSE" LICENSE
sha256sum apache/rocketmq/v2/*.proto > SHA256SUMS
echo "protos of rocketmq-client-nodejs $version in place"
