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
run put README.md "$AFS_TEST_DIR/README.md"
run ls -l "$AFS_TEST_DIR"
run stat "$AFS_TEST_DIR/README.md"
run cat "$AFS_TEST_DIR/README.md" | head -5
printf '\n# a third party (OpenAFS afsio) changes the file while we watch it:\n'
"${afs[@]}" watch --count 1 "$AFS_TEST_DIR/README.md" &
watcher=$!
sleep 1
printf 'changed by afsio\n' > "$AFS_TESTCELL_RUN/tmp/demo-change"
testcell/cell.sh afsio-put "$AFS_TESTCELL_RUN/tmp/demo-change" "$AFS_TEST_DIR/README.md" -force
wait "$watcher"
run rm "$AFS_TEST_DIR/README.md"
