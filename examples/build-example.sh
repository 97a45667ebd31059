#!/usr/bin/env bash
# Builds a well-known, unmodified CLI from crates.io for WASI, for examples/rg-over-afs.sh:
# ripgrep (rg), pinned, with its own Cargo.lock (--locked), as a wasm32-wasip2 component.
# Prints the path of the .wasm on stdout (everything else goes to stderr):
#   target/wasm-examples/bin/rg.wasm
# Idempotent: when that .wasm exists and was built from the pinned version, it only prints
# the path (no network, no cargo). The build has its own target directory
# (target/wasm-examples/build), so it does not touch the workspace's build. It needs only
# rustup and cargo (it adds the wasm32-wasip2 target if it is missing) and crates.io.
# Usage: examples/build-example.sh [-f]     (-f: build again even if the .wasm exists)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

crate=ripgrep
version=15.2.0
bin=rg
target=wasm32-wasip2

root="$PWD/target/wasm-examples"
wasm="$root/bin/$bin.wasm"
# cargo install records what it installed in $root/.crates.toml, e.g.
#   "ripgrep 15.2.0 (registry+https://github.com/rust-lang/crates.io-index)" = ["rg.wasm"]
stamp="\"$crate $version (registry+"

force=false
if [[ ${1:-} == -f ]]; then
    force=true
fi

if ! $force && [[ -f $wasm ]] && grep -qF "$stamp" "$root/.crates.toml" 2>/dev/null; then
    echo "$wasm"
    exit 0
fi

if ! rustup target list --installed | grep -qx "$target"; then
    rustup target add "$target" >&2
fi

# A target directory of its own, kept (cargo install otherwise builds in a temporary one
# and deletes it), and apart from the workspace's: no shared build lock, nothing evicted.
export CARGO_TARGET_DIR="$root/build"
start=$SECONDS
cargo install --locked --force --root "$root" --target "$target" "$crate@$version" >&2
echo "build-example.sh: built $crate $version for $target in $((SECONDS - start)) s" >&2
[[ -f $wasm ]] || { echo "build-example.sh: error: no $wasm after the build" >&2; exit 1; }
echo "$wasm"
