#!/usr/bin/env bash
# Protocol benchmark: write and read the same 100 MiB file with afs-wasm and with
# OpenAFS's afsio on the local test cell, and print MB/s and ratios.
# Usage: testcell/bench.sh [MiB] [rounds]
set -euo pipefail
cd "$(dirname "$0")/.."
mib=${1:-100}
rounds=${2:-3}
testcell/cell.sh up >&2
# afsio crosses the same veth as afs-wasm, not the namespace's loopback.
export AFSIO_NET=host
set -a; . "$(testcell/cell.sh env)"; set +a
cargo build --release -q -p afs-wasm-host
afs=(target/release/afs-wasm --cellservdb "$AFS_CELLSERVDB" --thiscell "$AFS_THISCELL")
work="$AFS_TESTCELL_RUN/tmp/bench"
mkdir -p "$work"
src="$work/data"
head -c $((mib << 20)) /dev/urandom > "$src"
want=$(md5sum < "$src")
path="$AFS_TEST_DIR/bench-$mib"
"${afs[@]}" put /dev/null "$path"

secs() { local s e; s=$(date +%s.%N); "$@" >/dev/null; e=$(date +%s.%N); echo "$e - $s" | bc -l; }
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
check() { # who: the file's md5 after their write must be the source's
    [[ $("${afs[@]}" cat "$path" | md5sum) == "$want" ]] || { echo "bench: $1 stored wrong bytes" >&2; exit 1; }
    [[ $(testcell/cell.sh afsio read -file "$path" | md5sum) == "$want" ]] || { echo "bench: afsio read wrong bytes after $1" >&2; exit 1; }
}

declare -A t
for ((r = 0; r < rounds; r++)); do
    t[ours_w]+="$(secs "${afs[@]}" put "$src" "$path")"$'\n'
    check afs-wasm
    t[ours_r]+="$(secs "${afs[@]}" cat "$path")"$'\n'
    # afsio cannot truncate (its appends would land after the old end): empty the
    # file first, untimed.
    "${afs[@]}" put /dev/null "$path"
    t[afsio_w]+="$(secs testcell/cell.sh afsio-put "$src" "$path" -force)"$'\n'
    check afsio
    t[afsio_r]+="$(secs testcell/cell.sh afsio read -file "$path")"$'\n'
done
"${afs[@]}" rm "$path"
rm -rf "$work"

rate() { echo "scale=1; $mib * 1048576 / $(printf '%s' "${t[$1]}" | median) / 1000000" | bc -l; }
ow=$(rate ours_w); orr=$(rate ours_r); aw=$(rate afsio_w); ar=$(rate afsio_r)
printf '%s MiB file, median of %s rounds, whole-process times, md5-verified\n' "$mib" "$rounds"
printf '%-10s %12s %12s\n' "" "write MB/s" "read MB/s"
printf '%-10s %12s %12s\n' afs-wasm "$ow" "$orr" afsio "$aw" "$ar"
printf '%-10s %11.2fx %11.2fx\n' ratio "$(echo "$ow / $aw" | bc -l)" "$(echo "$orr / $ar" | bc -l)"
