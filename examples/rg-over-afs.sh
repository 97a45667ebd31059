#!/usr/bin/env bash
# An example a user recognises: ripgrep, unmodified from crates.io and built for
# wasm32-wasip2 (examples/build-example.sh), searches an AFS directory on the local OpenAFS
# test cell through `afs-wasm run --dir AFSDIR::/data`: the guest sees a plain preopened
# directory (wasi:filesystem), which the host serves from the AFS cache, coherently.
#
#   1. a few text files go into a new AFS directory, two stored by afs-wasm, one by a
#      third party (OpenAFS's afsio);
#   2. rg searches /data twice: the first run compiles the 20 MB rg.wasm (wasmtime,
#      Cranelift) and keeps the code in $XDG_CACHE_HOME/afs-wasm; the second one loads it
#      from there (`-C cache=n` would compile every time); both timed;
#   3. the third party changes a file (appends a line) and adds one; rg, run again, finds
#      the new lines. (Each rg run is an afs-wasm process of its own, an AFS client that
#      starts with an empty cache; a guest that keeps running and follows a third party's
#      changes through callback breaks is testcell/demo.sh's mmap-reader.)
#
# ripgrep needs no flag for WASI: it finds one CPU there and searches with one thread
# (-j2 would fail: no threads in wasip2), and it reads files with read(), never mmap.
#
# Like testcell/demo.sh: afs-wasm needs no privilege, so run this as an ordinary user once
# the cell is up (`sudo testcell/cell.sh up`); run as root, every afs-wasm process runs as
# the unprivileged user afs-wasm-test (testcell/as-test-user).
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
rg_wasm="$(examples/build-example.sh)"
cargo build --release -q -p afs-wasm-host
afs=("${as_user[@]}" target/release/afs-wasm --cellservdb "$AFS_CELLSERVDB" --thiscell "$AFS_THISCELL")
d="$AFS_TEST_DIR/rg-demo"
files=(cache-manager.txt fileserver.txt todo.txt volserver.txt)

tmp="$(mktemp -d)"
if ((${#as_user[@]})); then chown "$(testcell/as-test-user --user):" "$tmp"; fi
# A compiled-code cache of its own, empty: the first run really compiles.
export XDG_CACHE_HOME="$tmp/cache"
cleanup() {
    local f
    for f in "${files[@]}"; do "${afs[@]}" rm "$d/$f" 2>/dev/null || true; done
    "${afs[@]}" rmdir "$d" 2>/dev/null || true
}
trap 'cleanup; rm -rf "$tmp"' EXIT
cleanup # what an interrupted run left behind

# Runs "$@", then prints how long it took.
timed() {
    local t0=$EPOCHREALTIME rc=0
    "$@" || rc=$?
    local t1=$EPOCHREALTIME
    printf '# (%s s)\n' "$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }')"
    return $rc
}
rg() {
    "${afs[@]}" run --dir "$d::/data:ro" "$rg_wasm" "$@"
}
say() { printf '\n# %s\n' "$*"; }

echo "# afs-wasm runs as $("${as_user[@]}" id -un) (uid $("${as_user[@]}" id -u)), without privileges"
echo "# ${rg_wasm#"$PWD/"}: $(($(stat -c %s "$rg_wasm") / 1024 / 1024)) MiB, wasm32-wasip2"

say "afs-wasm mkdir $d; afs-wasm put two files; a third party (afsio) writes a third"
"${afs[@]}" mkdir "$d"
cat > "$tmp/fileserver.txt" <<'EOF'
The fileserver keeps a callback for every file a client has cached.
When another client stores the file, the fileserver breaks the callback.
Volumes are served by the fileserver; the volserver moves and dumps them.
EOF
cat > "$tmp/cache-manager.txt" <<'EOF'
The cache manager serves reads from its cache while it holds a callback.
A broken callback makes it fetch the file's status again, then its data.
EOF
cat > "$tmp/todo.txt" <<'EOF'
TODO: try ripgrep over AFS
EOF
"${afs[@]}" put "$tmp/fileserver.txt" "$d/fileserver.txt"
"${afs[@]}" put "$tmp/cache-manager.txt" "$d/cache-manager.txt"
"${cell[@]}" afsio-put "$tmp/todo.txt" "$d/todo.txt"
"${afs[@]}" ls "$d"

say "first run, compiles rg.wasm: afs-wasm run --dir $d::/data:ro rg.wasm -n --sort path callback /data"
timed rg -n --sort path callback /data
echo "# compiled code cached: $(du -sh "$XDG_CACHE_HOME/afs-wasm" | cut -f1) in \$XDG_CACHE_HOME/afs-wasm"

say "second run, same command: the compiled code comes from the cache"
timed rg -n --sort path callback /data

say "a third party (afsio) appends a line to todo.txt and writes volserver.txt"
echo 'DONE: a third party appended this line (callback)' > "$tmp/todo-more.txt"
"${cell[@]}" afsio append -file "$d/todo.txt" < "$tmp/todo-more.txt"
printf 'The volserver clones a volume; a clone needs no callback of its own.\n' \
    > "$tmp/volserver.txt"
"${cell[@]}" afsio-put "$tmp/volserver.txt" "$d/volserver.txt"

say "rg again: the new lines are found"
timed rg -n --sort path callback /data

say "rg --version; rg --files; rg -c"
rg --version | head -1
rg --files --sort path /data
rg -c --sort path callback /data
