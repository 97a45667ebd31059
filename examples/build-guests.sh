#!/usr/bin/env bash
# Builds the example guests in release mode and prints the paths of their .wasm files (one a
# line, on stdout; everything else goes to stderr):
#   * components for wasm32-wasip2 (all the Rust guests);
#   * core modules for wasm32-wasip1 of the guests that are plain std (fs-suite);
#   * fs-suite-c, C through wasi-libc, with Debian's clang-14 (a wasm32-wasi core module), into
#     target/wasm32-wasi-c/. Installs clang-14, lld-14, wasi-libc and
#     libclang-rt-14-dev-wasm32 with apt if they are missing; not root, it skips fs-suite-c
#     then (with a warning) rather than fail.
# Usage: examples/build-guests.sh [extra cargo build arguments]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

target=wasm32-wasip2
guests=(mmap-reader mmap-writer plugin-guest mmap-probe mmap-bench mmap-abuse fs-suite afs-http http-abuse)
p1_target=wasm32-wasip1
p1_guests=(fs-suite)
c_packages=(clang-14 lld-14 wasi-libc libclang-rt-14-dev-wasm32)
clang=clang-14
# wasi-libc's headers and libraries: /usr/include/wasm32-wasi, /usr/lib/wasm32-wasi.
c_sysroot=/usr

for t in "$target" "$p1_target"; do
    if ! rustup target list --installed | grep -qx "$t"; then
        rustup target add "$t" >&2
    fi
done

packages=()
for g in "${guests[@]}"; do
    packages+=(-p "$g")
done
cargo build --release --target "$target" "${packages[@]}" "$@"

packages=()
for g in "${p1_guests[@]}"; do
    packages+=(-p "$g")
done
cargo build --release --target "$p1_target" "${packages[@]}" "$@"

missing=()
for p in "${c_packages[@]}"; do
    dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -qx 'install ok installed' ||
        missing+=("$p")
done
build_c=true
if [[ ${#missing[@]} -gt 0 ]]; then
    if [[ $(id -u) -eq 0 ]]; then
        echo "build-guests.sh: missing ${missing[*]}: installing packages" >&2
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -q >&2
        apt-get install -y -q --no-install-recommends "${c_packages[@]}" >&2
    else
        # Not root (testcell/demo.sh, bench.sh need no C guest): go on without it.
        echo "build-guests.sh: warning: missing ${missing[*]} (run as root to install):" \
            "fs-suite-c not built" >&2
        build_c=false
    fi
fi

dir="${CARGO_TARGET_DIR:-$PWD/target}"
if $build_c; then
    mkdir -p "$dir/wasm32-wasi-c"
    "$clang" --target=wasm32-wasi --sysroot="$c_sysroot" -O2 -Wall -Wextra \
        -o "$dir/wasm32-wasi-c/fs-suite-c.wasm" examples/fs-suite-c/fs_suite.c
fi

for g in "${guests[@]}"; do
    echo "$dir/$target/release/$g.wasm"
done
for g in "${p1_guests[@]}"; do
    echo "$dir/$p1_target/release/$g.wasm"
done
if $build_c; then
    echo "$dir/wasm32-wasi-c/fs-suite-c.wasm"
fi
