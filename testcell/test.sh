#!/usr/bin/env bash
# Runs every test: lint, unit tests, and the integration tests against a real
# OpenAFS cell that this script brings up (installing OpenAFS if needed), with
# the example guests built for wasm32-wasip2.
set -euo pipefail
cd "$(dirname "$0")/.."
testcell/cell.sh up
guests=(afs-guest mmap-reader mmap-writer plugin-guest mmap-probe mmap-bench)
cargo fmt --all --check
cargo clippy --all-targets --locked -- -D warnings
cargo clippy --target wasm32-wasip2 --all-targets --locked "${guests[@]/#/-p}" -- -D warnings
examples/build-guests.sh --locked
# Integration tests share one cell; cell-breaking tests serialize themselves.
cargo test --locked -- --test-threads=2
