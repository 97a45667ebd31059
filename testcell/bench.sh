#!/usr/bin/env bash
# Protocol benchmark on the local test cell; one run, figures on stdout.
#  - throughput: write and read the same 100 MiB file with afs-wasm and with OpenAFS's
#    afsio, MB/s and ratios;
#  - latency: change notification, from OpenAFS's afsio write returning to `afs-wasm
#    watch` reporting the change (p50/p99/max over BENCH_CHANGES changes), and the delay
#    the watch itself reports (callback break arrival -> report);
#  - mmap: guests mapping a 64 MiB file (BENCH_MAP_MIB): warm mapped scan vs the same scan
#    of plain guest memory, cold first scan vs afsio reading the file, faults and time per
#    fault of a full scan after a third-party change, and the delay from an afsio write
#    returning to a reader guest printing the new byte (BENCH_CHANGES writes).
#  - wasi: unmodified std::fs guests (fs-suite) over `afs-wasm run --dir`: a cold
#    sequential read of a MiB-sized file against `afs-wasm cat`, the cached re-read and
#    open+stat of 1,000 cached files against stock wasmtime-wasi over tmpfs, and (with
#    BENCH_PROGRAM=PROGRAM.wasm) a large program's first and second start-up.
#  - rxkad: on the auth cell (cell.sh --auth), write and read the same 100 MiB file in a
#    volume anyone may write, anonymously (rxnull) and as alice at the clear, auth and crypt
#    levels, MB/s and ratios to rxnull; and fcrypt's speed on one core.
#  - idle: the CPU time an idle `afs-wasm watch` and an idle mapped reader guest (reading
#    its byte once a second) use over BENCH_IDLE_SECS (default 30) seconds.
#  - serve: requests/s and p50/p99 latency of examples/afs-http served by afs-wasm over an
#    AFS directory against stock wasmtime-wasi-http over a local copy, at 1, 16 and 64
#    connections (BENCH_SERVE_SECS per run, default 5); then freshness under load: while 16
#    connections request the page, a second AFS client rewrites the template every 100 ms
#    (BENCH_SERVE_CHANGES times, default 50), p50/p99/max from each callback break's
#    arrival to the first response showing the change, and a check that no response
#    started after a break showed older data.
#  - scale: 1,000 instances mapping one 64 MiB file (the host's Pss growth against that of
#    instances mapping nothing), 10,000 files mapped by 100 instances through a fileserver
#    restart that drops callback state (reset arrival to every mapping zapped, then the
#    revalidation of all), and a storm of 10,000 breaks from another client (host CPU,
#    every file then read fresh by every instance). Restarts the fileserver.
#  - replication: with the second fileserver (cell.sh fs2-up, fs2-down after), a volume
#    with read-only clones on both: failover (a reader of the clone while the fileserver
#    it reads from stops; the longest wait for a read, p50/p99 over 20 runs, against
#    OpenAFS's afsio over 5 runs) and the time from `vos release` to a mapping guest
#    seeing the released byte.
# Usage: [BENCH=all|throughput|latency|mmap|wasi|rxkad|idle|serve|scale|replication] [BENCH_CHANGES=100] testcell/bench.sh [MiB] [rounds]
set -euo pipefail
cd "$(dirname "$0")/.."
mib=${1:-100}
rounds=${2:-3}
section=${BENCH:-all}
changes=${BENCH_CHANGES:-100}
die() { echo "bench: $*" >&2; exit 1; }
case $section in all | throughput | latency | mmap | wasi | rxkad | idle | serve | scale | replication) ;; *) die "BENCH must be all, throughput, latency, mmap, wasi, rxkad, idle, serve, scale or replication" ;; esac
[[ $changes =~ ^[1-9][0-9]*$ ]] || die "BENCH_CHANGES must be a positive number"
testcell/cell.sh up >&2
# afsio crosses the same veth as afs-wasm, not the namespace's loopback.
export AFSIO_NET=host
set -a
# shellcheck source=/dev/null
. "$(testcell/cell.sh env)"
set +a
cargo build --release -q -p afs-wasm-host
afs=(target/release/afs-wasm --cellservdb "$AFS_CELLSERVDB" --thiscell "$AFS_THISCELL")
work="$AFS_TESTCELL_RUN/tmp/bench.$$"
mkdir -p "$work"

# On any exit: stop the watch, remove what we made in AFS and locally.
watch_pid=
afs_paths=()
cleanup() {
    if [[ -n $watch_pid ]]; then kill "$watch_pid" 2>/dev/null || true; wait "$watch_pid" 2>/dev/null || true; fi
    if ((${#afs_paths[@]})); then "${afs[@]}" rm "${afs_paths[@]}" 2>/dev/null || true; fi
    rm -rf "$work"
}
trap cleanup EXIT

throughput() {
    local src="$work/data" want path="$AFS_TEST_DIR/bench-$mib" r
    head -c $((mib << 20)) /dev/urandom > "$src"
    want=$(md5sum < "$src")
    "${afs[@]}" put /dev/null "$path"
    afs_paths+=("$path")

    secs() { local s e; s=$(date +%s.%N); "$@" >/dev/null; e=$(date +%s.%N); echo "$e - $s" | bc -l; }
    median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
    check() { # who: the file's md5 after their write must be the source's
        [[ $("${afs[@]}" cat "$path" | md5sum) == "$want" ]] || die "$1 stored wrong bytes"
        [[ $(testcell/cell.sh afsio read -file "$path" | md5sum) == "$want" ]] || die "afsio read wrong bytes after $1"
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
    # The page cache: one process reads the file twice; -v logs each read's time
    # and the bytes fetched from the fileserver.
    local log refetched first_s cached_s
    log=$(NO_COLOR=1 "${afs[@]}" -v cat "$path" "$path" 2>&1 >/dev/null | sed 's/\x1b\[[0-9;]*m//g')
    refetched=$(sed -n 's/.*FetchData [0-9]* (\([0-9]*\) bytes).*/\1/p' <<<"$log")
    first_s=$(grep ' read ' <<<"$log" | sed -n '1s/.*secs=\([0-9.e-]*\).*/\1/p')
    cached_s=$(grep ' read ' <<<"$log" | sed -n '2s/.*secs=\([0-9.e-]*\).*/\1/p')
    rm -f "$src"

    rate() { echo "scale=1; $mib * 1048576 / $(printf '%s' "${t[$1]}" | median) / 1000000" | bc -l; }
    local ow orr aw ar
    ow=$(rate ours_w); orr=$(rate ours_r); aw=$(rate afsio_w); ar=$(rate afsio_r)
    printf '%s MiB file, median of %s rounds, whole-process times, md5-verified\n' "$mib" "$rounds"
    printf '%-10s %12s %12s\n' "" "write MB/s" "read MB/s"
    printf '%-10s %12s %12s\n' afs-wasm "$ow" "$orr" afsio "$aw" "$ar"
    printf '%-10s %11.2fx %11.2fx\n' ratio "$(echo "$ow / $aw" | bc -l)" "$(echo "$orr / $ar" | bc -l)"
    printf '\npage cache, one process reading the file twice (in-process times):\n'
    printf '  first read %s MB/s, cached re-read %s MB/s; bytes fetched for both: %s (file: %s)\n' \
        "$(printf '%.1f' "$(echo "$mib * 1048576 / $first_s / 1000000" | bc -l)")" \
        "$(printf '%.1f' "$(echo "$mib * 1048576 / $cached_s / 1000000" | bc -l)")" \
        "$refetched" "$((mib << 20))"
}

now_us() { printf '%s\n' "${EPOCHREALTIME//[!0-9]/}"; } # wall clock, unix microseconds, no fork

# Change-notification latency. `afs-wasm watch --timestamps` holds a callback promise on
# a small file and prints each change with the wall-clock time of its report; afsio
# overwrites the file (same length, new bytes) BENCH_CHANGES times, 100 ms apart, and we
# note the time right after each afsio-put returns. The i-th report is the i-th write's
# (we wait for it before the next write, and check that the data version moves by one
# per report). afsio-put first probes with an empty append: that breaks the callback too
# but does not move the data version, so the watch prints nothing for it.
latency() {
    local path="$AFS_TEST_DIR/bench-latency-$$" v="$work/v" out="$work/watch.out" err="$work/watch.err"
    local i
    printf 'change %08d\n' 0 > "$v"
    "${afs[@]}" put "$v" "$path"
    afs_paths+=("$path")
    # The watch stops by itself after $changes reports; timeout is only a backstop.
    timeout $((changes + 60)) "${afs[@]}" watch --timestamps --count "$changes" "$path" \
        > "$out" 2> "$err" &
    watch_pid=$!
    wait_for 'the watch to start ("watching" on stderr)' 10 grep -q '^watching' "$err"
    : > "$work/started"; : > "$work/returned"
    for ((i = 1; i <= changes; i++)); do
        printf 'change %08d\n' "$i" > "$v"
        now_us >> "$work/started"
        testcell/cell.sh afsio-put "$v" "$path" -force ||
            die "afsio-put of change $i/$changes failed (is someone restarting the fileserver?)"
        now_us >> "$work/returned"
        wait_for "report of change $i/$changes" 5 has_lines "$out" "$i"
        sleep 0.1
    done
    local rc=0
    wait "$watch_pid" || rc=$?
    watch_pid=
    ((rc == 0)) || { cat "$err" >&2; die "the watch exited with status $rc"; }
    [[ $("${afs[@]}" cat "$path") == "change $(printf %08d "$changes")" ]] ||
        die "afs-wasm cat does not return afsio's last write"
    python3 - "$out" "$work/started" "$work/returned" "$changes" <<'PY'
import math, re, sys
out, started, returned, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
line_re = re.compile(r" dv=(\d+) length=(\d+) delay=(\S+) at=(\d+)$")
reports = [line_re.search(l.rstrip("\n")) for l in open(out)]
rets = [int(x) for x in open(returned).read().split()]
starts = [int(x) for x in open(started).read().split()]
if len(reports) != n or len(rets) != n or len(starts) != n or not all(reports):
    sys.exit(f"bench: {len(reports)} report lines, {len(rets)} writes, want {n} well-formed each")
dvs = [int(m[1]) for m in reports]
if any(b != a + 1 for a, b in zip(dvs, dvs[1:])):
    sys.exit(f"bench: data versions do not move by one per report: {dvs}")
lat = sorted((int(m[4]) - r) / 1000 for m, r in zip(reports, rets))
own = sorted(float(m[3].removesuffix("ms")) for m in reports if m[3] != "-")

def pct(v, p):  # nearest rank
    return v[max(0, math.ceil(p / 100 * len(v)) - 1)]

def row(name, v):
    print(f"  {name:<38} {pct(v, 50):8.2f} {pct(v, 99):8.2f} {v[-1]:8.2f} {v[0]:8.2f}")

print(f"change notification, {n} afsio writes of {reports[0][2]} bytes, 100 ms apart (ms; p = nearest rank)")
print(f"  {'':<38} {'p50':>8} {'p99':>8} {'max':>8} {'min':>8}")
row("afsio-put returns -> watch reports", lat)
if own:
    row(f"break arrives -> watch reports ({len(own)})", own)
row("afsio-put's duration (for scale)", sorted((r - s) / 1000 for s, r in zip(starts, rets)))
neg = sum(1 for x in lat if x < 0)
if neg:
    print(f"  {neg} of {n} negative: reported before afsio-put (the cell.sh script around afsio) had returned")
print(f"  target p99 < 20 ms: {'met' if pct(lat, 99) < 20 else 'NOT met'}")
PY
}

has_lines() { (($(wc -l < "$1") >= $2)); } # FILE N: FILE has at least N complete lines

wait_for() { # WHAT SECONDS CMD...: poll CMD every 10 ms; fail if the watch dies or time runs out
    local what=$1 end=$((EPOCHSECONDS + $2)) secs=$2
    shift 2
    until "$@"; do
        if ! kill -0 "$watch_pid" 2>/dev/null; then
            "$@" && return 0
            cat "$work/watch.err" >&2
            die "the watch exited before $what"
        fi
        ((EPOCHSECONDS <= end)) || die "no $what within ${secs} s"
        sleep 0.01
    done
}

mmap() {
    examples/build-guests.sh -q > /dev/null
    cargo build --release -q -p afs-wasm-host --bin afs-wasm --example mmap_bench
    target/release/examples/mmap_bench testcell/cell.sh "$AFS_TEST_DIR" "${BENCH_MAP_MIB:-64}" "$changes"
}

wasi() {
    examples/build-guests.sh -q > /dev/null
    cargo build --release -q -p afs-wasm-host --bin afs-wasm --example wasi_bench
    target/release/examples/wasi_bench "$AFS_TEST_DIR" "$mib"
}

serve() {
    examples/build-guests.sh -q > /dev/null
    cargo build --release -q -p afs-wasm-host --example http_bench
    target/release/examples/http_bench "$AFS_TEST_DIR" "${BENCH_SERVE_SECS:-5}" "${BENCH_SERVE_CHANGES:-50}"
}

scale() {
    examples/build-guests.sh -q > /dev/null
    cargo build --release -q -p afs-wasm-host --example scale_bench
    target/release/examples/scale_bench testcell/cell.sh "$AFS_TEST_DIR"
}

replication() {
    examples/build-guests.sh -q > /dev/null
    cargo build --release -q -p afs-wasm-host --example replication_bench
    testcell/cell.sh fs2-up >&2
    local rc=0
    target/release/examples/replication_bench testcell/cell.sh || rc=$?
    testcell/cell.sh fs2-down >&2
    return $rc
}

rxkad() {
    testcell/cell.sh --auth up >&2
    local env src want path r level who
    env="$(testcell/cell.sh --auth env)"
    get() { sed -n "s/^$1=//p" "$env"; }
    local cell_args=(--cellservdb "$(get AFS_CELLSERVDB)" --thiscell "$(get AFS_THISCELL)" --cell "$(get AFS_CELL)")
    local auth=(env AFS_WASM_TOKENS="$work/tokens" KRB5_CONFIG="$(get AFS_KRB5_CONFIG)"
        target/release/afs-wasm "${cell_args[@]}")
    "${auth[@]}" login --keytab "$(get AFS_ALICE_KEYTAB)" --principal "alice@$(get AFS_REALM)" >&2
    path="$(get AFS_OPEN_DIR)/bench-rxkad-$$"
    src="$work/data"
    head -c $((mib << 20)) /dev/urandom > "$src"
    want=$(md5sum < "$src")
    secs() { local s e; s=$(date +%s.%N); "$@" >/dev/null; e=$(date +%s.%N); echo "$e - $s" | bc -l; }
    median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
    # The fileserver's CPU time per transfer: at crypt it, not we, sets the pace.
    local fs_pid hz
    fs_pid="$(cut -d' ' -f1 "$(get AFS_TESTCELL_RUN)/pids/dafileserver")"
    hz=$(getconf CLK_TCK)
    fs_secs() { # VAR CMD...: runs CMD, appends its wall time to t[VAR], the fileserver's CPU to t[fs_VAR]
        local var=$1 c0 c1
        shift
        c0=$(cpu_ticks "$fs_pid")
        t[$var]+="$(secs "$@")"$'\n'
        c1=$(cpu_ticks "$fs_pid")
        t[fs_$var]+="$(echo "($c1 - $c0) / $hz" | bc -l)"$'\n'
    }
    declare -A t
    local kinds=(rxnull clear auth crypt)
    for ((r = 0; r < rounds; r++)); do
        for level in "${kinds[@]}"; do
            if [[ $level == rxnull ]]; then who=(--anonymous); else who=(--level "$level"); fi
            fs_secs "w_$level" "${auth[@]}" "${who[@]}" put "$src" "$path"
            fs_secs "r_$level" "${auth[@]}" "${who[@]}" cat "$path"
            [[ $("${auth[@]}" "${who[@]}" cat "$path" | md5sum) == "$want" ]] ||
                die "$level: read back wrong bytes"
        done
    done
    "${auth[@]}" rm "$path" || true
    rm -f "$src"
    rate() { echo "scale=1; $mib * 1048576 / $(printf '%s' "${t[$1]}" | median) / 1000000" | bc -l; }
    printf '%s MiB file on the auth cell, median of %s rounds, whole-process times, md5-verified\n' "$mib" "$rounds"
    printf '%-8s %11s %11s %9s %9s %17s\n' "" "write MB/s" "read MB/s" "write" "read" "fileserver CPU s"
    local w0 r0 w rr
    w0=$(rate w_rxnull); r0=$(rate r_rxnull)
    for level in "${kinds[@]}"; do
        w=$(rate "w_$level"); rr=$(rate "r_$level")
        printf '%-8s %11s %11s %8.2fx %8.2fx %8.2f / %5.2f\n' "$level" "$w" "$rr" \
            "$(echo "$w / $w0" | bc -l)" "$(echo "$rr / $r0" | bc -l)" \
            "$(printf '%s' "${t[fs_w_$level]}" | median)" "$(printf '%s' "${t[fs_r_$level]}" | median)"
    done
    cargo build --release -q -p rx --example fcrypt_speed
    target/release/examples/fcrypt_speed
}

cpu_ticks() { # PID: user+system clock ticks the process used so far
    local f
    read -ra f < "/proc/$1/stat"
    # Fields after the parenthesised name: utime and stime are fields 14 and 15.
    echo $((f[13] + f[14]))
}

# The idle cost of the client: it should sleep until something happens (a datagram,
# a timer it set), not wake on a tick.
idle() {
    local path="$AFS_TEST_DIR/bench-idle-$$" secs=${BENCH_IDLE_SECS:-30} hz pid t0 t1 name
    local wasm=target/wasm32-wasip2/release
    hz=$(getconf CLK_TCK)
    examples/build-guests.sh -q > /dev/null
    printf 'x' > "$work/idle"
    "${afs[@]}" put "$work/idle" "$path"
    afs_paths+=("$path")
    echo "idle CPU over ${secs} s (user+system time / wall time; ${hz} Hz ticks)"
    for name in watch reader; do
        case $name in
            watch) "${afs[@]}" watch "$path" > /dev/null 2>&1 & ;;
            reader) "${afs[@]}" run --grant "$AFS_TEST_DIR:ro" "$wasm/mmap-reader.wasm" "$path" \
                > /dev/null 2>&1 & ;;
        esac
        pid=$!
        watch_pid=$pid
        sleep 3 # settle: start-up, the first fetch and fault
        t0=$(cpu_ticks "$pid")
        sleep "$secs"
        t1=$(cpu_ticks "$pid")
        kill "$pid"; wait "$pid" 2>/dev/null || true
        watch_pid=
        python3 -c "import sys; t=(int(sys.argv[2])-int(sys.argv[1]))/int(sys.argv[3]); s=int(sys.argv[4]); print(f'  {sys.argv[5]:<40} {t*1000:8.1f} ms CPU in {s} s = {100*t/s:6.3f}% of a core')" \
            "$t0" "$t1" "$hz" "$secs" \
            "$([[ $name == watch ]] && echo 'afs-wasm watch (no changes)' || echo 'mapped reader guest (1 read/s)')"
    done
}

case $section in
    all) throughput; echo; latency; echo; mmap; echo; wasi; echo; rxkad; echo; serve; echo; scale; echo; replication; echo; idle ;;
    replication) replication ;;
    serve) serve ;;
    scale) scale ;;
    rxkad) rxkad ;;
    idle) idle ;;
    wasi) wasi ;;
    throughput) throughput ;;
    latency) latency ;;
    mmap) mmap ;;
esac
