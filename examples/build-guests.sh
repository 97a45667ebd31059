#!/usr/bin/env bash
# Builds the example guests (components for wasm32-wasip2) in release mode and prints the paths
# of their .wasm files. Usage: examples/build-guests.sh [extra cargo build arguments]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

target=wasm32-wasip2
guests=(mmap-reader mmap-writer plugin-guest mmap-probe mmap-bench mmap-abuse)

if ! rustup target list --installed | grep -qx "$target"; then
    rustup target add "$target"
fi

packages=()
for g in "${guests[@]}"; do
    packages+=(-p "$g")
done
cargo build --release --target "$target" "${packages[@]}" "$@"

dir="${CARGO_TARGET_DIR:-$PWD/target}"
for g in "${guests[@]}"; do
    echo "$dir/$target/release/$g.wasm"
done
