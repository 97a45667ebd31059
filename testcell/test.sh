#!/usr/bin/env bash
# Runs every test: lint, unit tests, and the integration tests against a real
# OpenAFS cell that this script brings up (installing OpenAFS if needed), with
# the example guests built for wasm32-wasip2.
#
# Run as root (the cell needs it). The test binaries themselves, and every afs-wasm
# process they start, run as the unprivileged user afs-wasm-test (testcell/as-test-user is
# cargo's runner): the host must work as an ordinary user, with a userfaultfd for user-mode
# faults only. The tests reach the cell through `sudo -n testcell/cell.sh`, which the user
# may run and nothing else. Before the tests this checks that the user really has no
# privilege (no capability, no /dev/userfaultfd) and forces vm.unprivileged_userfaultfd = 0
# while they run (restoring it after).
set -euo pipefail
cd "$(dirname "$0")/.."
repo="$PWD"
die() { printf 'test.sh: error: %s\n' "$*" >&2; exit 1; }
root=false
[[ $(id -u) -eq 0 ]] && root=true
# Both cells: the open one most tests use, and the one that requires authentication
# (an MIT KDC, rxkad; host/tests/auth.rs).
# The one-server cell, even if a run killed midway left the second fileserver up
# (host/tests/replication.rs starts and stops it).
if $root; then
    testcell/cell.sh up
    testcell/cell.sh fs2-down
    testcell/cell.sh --auth up
else
    sudo -n "$repo/testcell/cell.sh" up
    sudo -n "$repo/testcell/cell.sh" fs2-down
    sudo -n "$repo/testcell/cell.sh" --auth up
fi
guests=(afs-guest mmap-reader mmap-writer plugin-guest mmap-probe mmap-bench mmap-abuse fs-suite afs-http http-abuse)
cargo fmt --all --check
cargo clippy --all-targets --locked -- -D warnings
cargo clippy --target wasm32-wasip2 --all-targets --locked "${guests[@]/#/-p}" -- -D warnings
wasm="$(examples/build-guests.sh --locked)"
printf '%s\n' "$wasm"

runner=()
if $root; then
    testcell/as-test-user --setup
    user="$(testcell/as-test-user --user)"
    # No way around user-mode-only for the tests: vm.unprivileged_userfaultfd = 0 (Debian's
    # default) while they run.
    sysctl_file=/proc/sys/vm/unprivileged_userfaultfd
    [[ -r $sysctl_file ]] || die "$sysctl_file is missing: this kernel has no userfaultfd"
    sysctl_was="$(cat "$sysctl_file")"
    tmp="$(mktemp -d /tmp/afs-wasm-test.XXXXXX)"
    cleanup() {
        [[ $(cat "$sysctl_file") == "$sysctl_was" ]] || echo "$sysctl_was" > "$sysctl_file"
        rm -rf "$tmp"
    }
    trap cleanup EXIT
    [[ $sysctl_was == 0 ]] || echo 0 > "$sysctl_file"
    testcell/as-test-user --check
    # The tests' temporary files go to a directory of the user's own.
    chown "$user:" "$tmp"
    export AFS_WASM_TEST_TMPDIR="$tmp"
    # The user must be able to read what the tests open: the cell's env file and the
    # files it names, the guests, and the test binaries' directory.
    env_file="$(testcell/cell.sh env)"
    mapfile -t wasm_files <<<"$wasm"
    auth_env="$(testcell/cell.sh --auth env)"
    testcell/as-test-user --check-readable "$auth_env" \
        "$(sed -n 's/^AFS_CELLSERVDB=//p' "$auth_env")" \
        "$(sed -n 's/^AFS_THISCELL=//p' "$auth_env")" \
        "$(sed -n 's/^AFS_KRB5_CONFIG=//p' "$auth_env")" \
        "$(sed -n 's/^AFS_ALICE_KEYTAB=//p' "$auth_env")" \
        "$(sed -n 's/^AFS_BOB_KEYTAB=//p' "$auth_env")" \
        "$(sed -n 's/^AFS_SVC_KEYTAB=//p' "$auth_env")"
    testcell/as-test-user --check-readable "$env_file" \
        "$(sed -n 's/^AFS_CELLSERVDB=//p' "$env_file")" \
        "$(sed -n 's/^AFS_THISCELL=//p' "$env_file")" \
        "${wasm_files[@]}" "${CARGO_TARGET_DIR:-$repo/target}/debug"
    # The unit test opens_with_minor_and_wp_on_shmem (host/src/uffd.rs) checks this.
    export AFS_WASM_TEST_UFFD_MODE=user-mode-only
    triple="$(rustc -vV | sed -n 's/^host: //p')"
    [[ -n $triple ]] || die "no host triple in rustc -vV"
    # As a TOML array, the runner's path may hold spaces.
    runner=(--config "target.$triple.runner=['$repo/testcell/as-test-user']")
    echo "test.sh: test binaries run as $user through testcell/as-test-user" >&2
else
    echo "test.sh: not root: the tests run as $(id -un), the cell through sudo -n" >&2
fi
# Integration tests share one cell; cell-breaking tests serialize themselves.
cargo test --locked "${runner[@]}" -- --test-threads=2
# The coherence tests again with an authenticated reader and writer: as alice on the auth
# cell, over rxkad crypt (host/tests/common/mod.rs, AFS_TEST_AS). No -p: the same features as
# above, so nothing is built again.
AFS_TEST_AS=alice cargo test --locked "${runner[@]}" \
    --test callbacks --test mmap --test stores -- --test-threads=2
