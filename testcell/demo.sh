#!/usr/bin/env bash
# The main job until guest mmaps land: bring up the local OpenAFS test cell and
# use the afs-wasm file commands against it.
set -euo pipefail
cd "$(dirname "$0")/.."
testcell/cell.sh up >&2
set -a; . "$(testcell/cell.sh env)"; set +a
cargo build --release -q -p afs-wasm-host
afs=(target/release/afs-wasm --cellservdb "$AFS_CELLSERVDB" --thiscell "$AFS_THISCELL")
run() { printf '\n$ afs-wasm %s\n' "$*"; "${afs[@]}" "$@"; }
f="$AFS_TEST_DIR/hello.txt"
mkdir -p "$AFS_TESTCELL_RUN/tmp"
printf 'hello from afs-wasm\n' > "$AFS_TESTCELL_RUN/tmp/demo-hello"
# afsio cannot truncate: its change has the same length.
printf 'hello from afsio!!!\n' > "$AFS_TESTCELL_RUN/tmp/demo-change"
run put "$AFS_TESTCELL_RUN/tmp/demo-hello" "$f"
run ls -l "$AFS_TEST_DIR"
run stat "$f"
run cat "$f"
printf '\n# a third party (OpenAFS afsio) changes the file while we watch it:\n'
"${afs[@]}" watch --count 1 "$f" &
watcher=$!
sleep 1
testcell/cell.sh afsio-put "$AFS_TESTCELL_RUN/tmp/demo-change" "$f" -force
wait "$watcher"
run cat "$f"
run rm "$f"
