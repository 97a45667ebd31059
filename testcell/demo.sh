#!/usr/bin/env bash
# The main job: the seed scenario on the local OpenAFS test cell. Two `afs-wasm run`
# processes (two AFS clients) run wasm guests against one AFS file: mmap-writer maps it
# read-write, increments byte 0, syncs, every second; mmap-reader maps it read-only and
# prints byte 0 every second. The reader follows the writer with no call of its own: the
# fileserver breaks the reader host's callback, the host strips the guest's mapping, and
# the guest's next read faults into the revalidate hook, which fetches the new byte.
# Then OpenAFS's own afsio writes the file, and the reader follows it too.
#
# afs-wasm needs no privilege: run this as an ordinary user once the cell is up
# (`sudo testcell/cell.sh up`); the cell's own script then runs through sudo. Run as root,
# it runs every afs-wasm process as the unprivileged user afs-wasm-test
# (testcell/as-test-user), so the demo shows unprivileged operation either way.
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ $(id -u) -eq 0 ]]; then
    cell=(testcell/cell.sh)
    testcell/as-test-user --setup
    as_user=(testcell/as-test-user)
else
    cell=(sudo "$PWD/testcell/cell.sh")
    as_user=()
fi
"${cell[@]}" up >&2
set -a; . "$(testcell/cell.sh env)"; set +a
examples/build-guests.sh -q >/dev/null
cargo build --release -q -p afs-wasm-host
afs=("${as_user[@]}" target/release/afs-wasm --cellservdb "$AFS_CELLSERVDB" --thiscell "$AFS_THISCELL")
wasm=target/wasm32-wasip2/release
f="$AFS_TEST_DIR/seed-counter"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
if ((${#as_user[@]})); then chown "$(testcell/as-test-user --user):" "$tmp"; fi
echo "# afs-wasm runs as $("${as_user[@]}" id -un) (uid $("${as_user[@]}" id -u)), without privileges"
printf '\x00' > "$tmp/seed-zero"
"${afs[@]}" put "$tmp/seed-zero" "$f"

echo "# reader: afs-wasm run --grant $AFS_TEST_DIR:ro mmap-reader.wasm $f"
"${afs[@]}" run --grant "$AFS_TEST_DIR:ro" "$wasm/mmap-reader.wasm" "$f" --count 9 \
    | sed -u 's/^/reader: /' &
reader=$!
sleep 1.5
echo "# writer: afs-wasm run --grant $AFS_TEST_DIR:rw mmap-writer.wasm $f --count 5"
"${afs[@]}" run --grant "$AFS_TEST_DIR:rw" "$wasm/mmap-writer.wasm" "$f" --count 5 \
    | sed -u 's/^/writer: /'
echo "# a third party, OpenAFS's afsio, writes 0xaa"
printf '\xaa' > "$tmp/seed-aa"
"${cell[@]}" afsio-put "$tmp/seed-aa" "$f" -force
wait "$reader"
"${afs[@]}" rm "$f"
