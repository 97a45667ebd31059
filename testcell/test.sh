#!/usr/bin/env bash
# Runs every test: lint, unit tests, and the integration tests against a real
# OpenAFS cell that this script brings up (installing OpenAFS if needed).
set -euo pipefail
cd "$(dirname "$0")/.."
testcell/cell.sh up
cargo fmt --all --check
cargo clippy --workspace --all-targets --locked -- -D warnings
# Integration tests share one cell; cell-breaking tests serialize themselves.
cargo test --workspace --locked -- --test-threads=2
