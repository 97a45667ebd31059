#!/usr/bin/env bash
# cell.sh - run a real OpenAFS 1.8.9 cell on this machine for tests and benchmarks.
#
# The servers (ptserver, vlserver, DAFS salvageserver + dafileserver, davolserver) run without
# bosserver inside private namespaces held by one "holder" process:
#   * net: a veth pair; servers on 10.254.0.2/30 inside, 10.254.0.1/30 on the host side. The
#     namespace has no other route: nothing the servers or tools send can leave the machine.
#   * mount: per-run directories (testcell/run/...) are bind-mounted over /etc/openafs,
#     /var/lib/openafs/{db,local}, /var/log/openafs and /vicepa, plus a resolv.conf
#     (nameserver 127.0.0.1), an /etc/hosts (localhost only) and an nsswitch.conf (hosts: files)
#     so that nothing run inside sends DNS queries. KRB5_CONFIG points at a krb5.conf without DNS.
#   * uts: the hostname is the server address (ubik takes its own address from the hostname).
# No authentication: NoAuth file, -noauth on vos/pts. The pts host entry 10.254.0.0 (a wildcard
# for the client network) is a member of system:administrators, so anonymous clients get full
# rights. Volumes: root.afs (mount point "$CELL" -> root.cell), root.cell (mount point "test"
# -> test), test.
#
# `cell.sh --auth COMMAND` runs the same commands on a second cell that requires
# authentication (its own namespaces, addresses 10.254.1.0/30 and run dir testcell/run-auth):
# an MIT KDC inside its namespace, the AFS service key in KeyFileExt, users alice, bob and
# admin with pts entries, ACLs on the volume roots, and no NoAuth: anonymous clients get only
# what system:anyuser may do, and vos/pts need -localauth (which this script adds). Both cells
# can run at once.
#
# Usage: cell.sh [--auth] COMMAND [ARGS...]; see usage() below or testcell/README.md.
set -euo pipefail

TC_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
SELF="$TC_DIR/$(basename "${BASH_SOURCE[0]}")"
AUTH=false
if [[ ${1:-} == --auth ]]; then
    AUTH=true
    shift
fi
if $AUTH; then
    RUN="$TC_DIR/run-auth"
    CELL="${AFS_TESTCELL_AUTH_NAME:-auth.afs-wasm.invalid}"
    SERVER=10.254.1.2
    HOSTADDR=10.254.1.1
    CLIENTNET=10.254.1.0
    SERVER2=10.254.1.6
    HOSTADDR2=10.254.1.5
    VETH_HOST=afsa0
    VETH_NS=afsa1
    SELF_CMD="$SELF --auth"
else
    RUN="$TC_DIR/run"
    CELL="${AFS_TESTCELL_NAME:-test.afs-wasm.invalid}"
    SERVER=10.254.0.2
    HOSTADDR=10.254.0.1
    CLIENTNET=10.254.0.0   # pts host entry: wildcard for 10.254.0.x
    # The second fileserver (fs2-up): a second /30 on the same veth, in the same network
    # namespace, with a mount and UTS namespace of its own (testcell/two-fileservers.md).
    SERVER2=10.254.0.6
    HOSTADDR2=10.254.0.5
    VETH_HOST=afsw0
    VETH_NS=afsw1
    SELF_CMD="$SELF"
fi
# The Kerberos realm: the cell name upper-cased, which OpenAFS servers take as their local
# realm when there is no krb.conf.
REALM="$(printf '%s' "$CELL" | tr '[:lower:]' '[:upper:]')"
KDC_PORT=88
# Test users of the auth cell: name, pts id, password.
AUTH_USERS=("admin 1000 admin-pw" "alice 1001 alice-pw" "bob 1002 bob-pw" "svc 1003 svc-pw")
# svc is a service whose tickets live SVC_LIFE_S seconds only (its principal's maximum): the
# tests see a keytab identity renew itself, and a plain token expire, within a minute.
SVC_LIFE_S=20
PART=/vicepa
LIBEXEC=/usr/lib/openafs
NFT_TABLE=afswasm_loss
# Order matters: stopped in reverse.
SERVERS=(ptserver vlserver salvageserver dafileserver davolserver)
# The second fileserver's servers, recorded as fs2-NAME, in the holder fs2-holder.
FS2_SERVERS=(salvageserver dafileserver davolserver)
FS2="$RUN/fs2"
if $AUTH; then
    SERVERS=(krb5kdc "${SERVERS[@]}")
fi
KDC="$RUN/kdc"
# vos and pts: -noauth, until the auth cell has been switched to authentication.
auth_flag() {
    if $AUTH && [[ -f $RUN/auth-on ]]; then echo -localauth; else echo -noauth; fi
}

export DEBIAN_FRONTEND=noninteractive

log() { printf 'cell.sh: %s\n' "$*" >&2; }
die() { printf 'cell.sh: error: %s\n' "$*" >&2; exit 1; }

usage() {
    cat <<EOF
usage: cell.sh [--auth] COMMAND [ARGS...]
  --auth               act on the cell that requires authentication (see the top of this file)
  up                   start the cell (idempotent: no-op if already up and healthy)
  down                 stop everything (servers, holder, veth); fine if nothing runs
  status               show state; exit 0 if up and healthy, 1 if broken, 3 if down
  env                  print the path of the env file ($RUN/env)
  fs-restart keep|drop restart the fileserver keeping (fsstate.dat) or dropping client state
  fs-stop | fs-start   stop (SIGQUIT, saves state) / start the fileserver
  fs2-up | fs2-down    start a second fileserver and volserver on $SERVER2 and replicate
                       root.cell on both / undo all that (the one-server cell again)
  fs2-stop | fs2-start stop (SIGQUIT) / start the second fileserver
  loss PERCENT         drop PERCENT% of UDP to and from port 7000 (0 removes the rules)
  loss-replies PERCENT drop PERCENT% of the fileserver's replies and acks to clients outside the
                       namespace (our client), keeping its own callback calls (0 removes it)
  link down|up         take the veth link down / up (partition)
  afsio ARGS...        run OpenAFS afsio as a third-party client (inside the namespaces)
  afsio-put LOCAL AFSPATH [-force]
                       store a local file with afsio, working around the 1.8.9 bugs
  afsio-get AFSPATH LOCAL
                       fetch a file with afsio
  vos ARGS... | pts ARGS...
                       run vos / pts inside the namespaces (adds -noauth, or -localauth
                       on the auth cell)
  exec CMD...          run any command inside the namespaces (cell config, no DNS)
  capture start FILE | capture stop
                       record the cell's UDP traffic on the veth with tcpdump into FILE
                       (a pcap file, readable by all once stopped)
Cell name: \$AFS_TESTCELL_NAME (default test.afs-wasm.invalid), currently $CELL.
EOF
}

# ---------------------------------------------------------------------------------------------
# Process bookkeeping: run/pids/NAME holds "PID STARTTIME"; a PID only counts as ours if its
# start time (field 22 of /proc/PID/stat) still matches, so a recycled PID is never signalled.

starttime() { # PID -> start time or nothing
    local stat
    stat="$(cat "/proc/$1/stat" 2>/dev/null)" || return 1
    stat="${stat##*) }"
    # shellcheck disable=SC2086
    set -- $stat
    [[ $1 != Z && $1 != X ]] || return 1   # a zombie is dead
    printf '%s\n' "${20}"
}

record_pid() { # NAME PID
    local st
    st="$(starttime "$2")" || die "process $1 ($2) died right after start"
    mkdir -p "$RUN/pids"
    printf '%s %s\n' "$2" "$st" > "$RUN/pids/$1"
}

pid_of() { # NAME -> PID if alive and ours
    local f="$RUN/pids/$1" pid st cur
    [[ -f $f ]] || return 1
    read -r pid st < "$f" || return 1
    cur="$(starttime "$pid")" || return 1
    [[ $cur == "$st" ]] || return 1
    printf '%s\n' "$pid"
}

wait_gone() { # PID TIMEOUT_TENTHS
    local i
    for ((i = 0; i < $2; i++)); do
        [[ -e /proc/$1 ]] || return 0
        # A zombie child of ours would never go away on its own; we never wait on them here
        # because servers are not our children (setsid'd and reparented), so just poll.
        sleep 0.1
    done
    [[ ! -e /proc/$1 ]]
}

kill_name() { # NAME SIGNAL TIMEOUT_TENTHS: signal, wait, SIGKILL if needed
    local pid
    pid="$(pid_of "$1")" || { rm -f "$RUN/pids/$1"; return 0; }
    kill -s "$2" "$pid" 2>/dev/null || true
    if ! wait_gone "$pid" "$3"; then
        log "$1 ($pid) did not exit after SIG$2; sending SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
        wait_gone "$pid" 50 || die "$1 ($pid) does not die"
    fi
    rm -f "$RUN/pids/$1"
}

holder() { pid_of holder; }

elapsed() { # START (an $EPOCHREALTIME) -> seconds since, 0.1 s precision
    local now=$EPOCHREALTIME ms
    ms=$(( (${now/./} - ${1/./}) / 1000 ))
    printf '%d.%d' $((ms / 1000)) $((ms % 1000 / 100))
}

# Run a command inside the namespaces with the cell's environment.
in_ns() {
    local h
    h="$(holder)" || die "the cell is not up (no holder process); run: $SELF_CMD up"
    nsenter -t "$h" -m -u -n --wd="$PWD" -- \
        env KRB5_CONFIG="$RUN/sys/krb5.conf" AFS_TESTCELL_INSIDE=1 "$@"
}

# Same, but only the mount and UTS namespaces: the process uses the host's network (talks to
# 10.254.0.2 through the veth, like our own client).
in_mnt() {
    local h
    h="$(holder)" || die "the cell is not up (no holder process); run: $SELF_CMD up"
    nsenter -t "$h" -m -u --wd="$PWD" -- \
        env KRB5_CONFIG="$RUN/sys/krb5.conf" AFS_TESTCELL_INSIDE=1 "$@"
}

show_log() { # LOGFILE-BASENAME...
    local f
    for f in "$@"; do
        for p in "$RUN/log/$f" "$RUN/log/$f.out"; do
            [[ -s $p ]] || continue
            printf -- '--- tail of %s ---\n' "$p" >&2
            tail -n 25 "$p" >&2
        done
    done
}

fail_start() { # NAME LOG MESSAGE
    log "$3"
    show_log "$2"
    exit 1
}

# ---------------------------------------------------------------------------------------------
# Installation and configuration

ensure_packages() {
    local missing=() cmd
    for cmd in /usr/lib/openafs/{ptserver,vlserver,dafileserver,davolserver,salvageserver} \
               /usr/bin/{afsio,vos,pts,rxdebug}; do
        [[ -x $cmd ]] || missing+=("$cmd")
    done
    for cmd in nft nsenter unshare flock ip python3; do
        command -v "$cmd" >/dev/null || missing+=("$cmd")
    done
    [[ ${#missing[@]} -eq 0 ]] || {
        log "missing ${missing[*]}: installing packages"
        [[ $(id -u) -eq 0 ]] || die "need root to install packages"
        apt-get update -q >&2
        apt-get install -y -q --no-install-recommends \
            openafs-fileserver openafs-dbserver openafs-client nftables iproute2 util-linux \
            python3 krb5-config- >&2
    }
    $AUTH && ensure_kerberos
    if ! command -v tcpdump >/dev/null; then
        log "missing tcpdump (for cell.sh capture): installing it"
        apt-get install -y -q --no-install-recommends tcpdump >&2 || {
            apt-get update -q >&2
            apt-get install -y -q --no-install-recommends tcpdump >&2
        }
    fi
    return 0
}

# MIT Kerberos (KDC, kadmin.local, kinit) for the auth cell. Installing krb5-config makes DNS
# SRV queries at configure time (its debconf script runs `host -t srv _kerberos._tcp.REALM`),
# so the packages are downloaded first and then installed offline in a mount namespace whose
# resolv.conf points at 127.0.0.1: nothing leaves the machine (shared/rxkad.md, section 1).
KRB5_PACKAGES=(krb5-kdc krb5-admin-server krb5-user)
ensure_kerberos() {
    local cmd missing=()
    for cmd in /usr/sbin/krb5kdc /usr/sbin/kdb5_util /usr/sbin/kadmin.local /usr/bin/kinit; do
        [[ -x $cmd ]] || missing+=("$cmd")
    done
    [[ ${#missing[@]} -eq 0 ]] && return 0
    log "missing ${missing[*]}: installing MIT Kerberos without DNS"
    [[ $(id -u) -eq 0 ]] || die "need root to install packages"
    apt-get install -y -q --no-install-recommends --download-only "${KRB5_PACKAGES[@]}" >&2 || {
        apt-get update -q >&2
        apt-get install -y -q --no-install-recommends --download-only "${KRB5_PACKAGES[@]}" >&2
    }
    mkdir -p "$RUN/sys"
    printf 'nameserver 127.0.0.1\noptions timeout:1 attempts:1\n' > "$RUN/sys/resolv-install.conf"
    printf 'krb5-config krb5-config/default_realm string %s\nkrb5-config krb5-config/add_servers boolean false\n' \
        "$REALM" | debconf-set-selections
    unshare --mount --propagation private -- sh -ec "
        mount --bind '$RUN/sys/resolv-install.conf' /etc/resolv.conf
        apt-get install -y -q --no-install-recommends --no-download ${KRB5_PACKAGES[*]}" >&2
}

write_config() {
    local d
    # Wipe the previous run.
    mkdir -p "$RUN"
    find "$RUN" -mindepth 1 -maxdepth 1 -exec rm -rf {} +
    mkdir -p "$RUN"/{etc/openafs/server,db,local,log,vicepa,sys,client,pids,tmp}
    chmod 700 "$RUN/db" "$RUN/local"
    for d in "$RUN/etc/openafs" "$RUN/etc/openafs/server" "$RUN/client"; do
        printf '%s\n' "$CELL" > "$d/ThisCell"
        printf '>%s #afs-wasm test cell\n%s #%s\n' "$CELL" "$SERVER" "$SERVER" > "$d/CellServDB"
    done
    : > "$RUN/etc/openafs/server/UserList"
    : > "$RUN/local/NoAuth"
    printf '%s\n' "$SERVER" > "$RUN/local/NetInfo"
    : > "$RUN/vicepa/AlwaysAttach"
    patch_afsio
    printf 'nameserver 127.0.0.1\n' > "$RUN/sys/resolv.conf"
    printf '127.0.0.1 localhost\n%s %s\n' "$SERVER" "$SERVER" > "$RUN/sys/hosts"
    printf 'passwd: files\ngroup: files\nshadow: files\nhosts: files\nnetworks: files\n' \
        > "$RUN/sys/nsswitch.conf"
    # For the servers and tools inside; the clients' copy (client/krb5.conf) is the same.
    # Nothing is looked up in DNS: the KDC's address is given.
    cat > "$RUN/sys/krb5.conf" <<EOF
[libdefaults]
	default_realm = $REALM
	dns_lookup_realm = false
	dns_lookup_kdc = false
	dns_canonicalize_hostname = false
	rdns = false
[realms]
$($AUTH && printf '\t%s = {\n\t\tkdc = %s:%s\n\t}\n' "$REALM" "$SERVER" "$KDC_PORT")
[domain_realm]
EOF
    cp "$RUN/sys/krb5.conf" "$RUN/client/krb5.conf"
}

write_env() {
    local tmp="$RUN/env.tmp"
    cat > "$tmp" <<EOF
AFS_CELL=$CELL
AFS_SERVER=$SERVER
AFS_SERVER2=$SERVER2
AFS_CLIENT_ADDR=$HOSTADDR
AFS_CELLSERVDB=$RUN/client/CellServDB
AFS_THISCELL=$RUN/client/ThisCell
AFS_TEST_DIR=/afs/$CELL/test
AFS_TESTCELL=$SELF
AFS_TESTCELL_RUN=$RUN
EOF
    if $AUTH; then
        cat >> "$tmp" <<EOF
AFS_TESTCELL_AUTH=1
AFS_REALM=$REALM
AFS_KRB5_CONFIG=$RUN/client/krb5.conf
AFS_KDC=$SERVER:$KDC_PORT
AFS_ALICE_KEYTAB=$RUN/client/alice.keytab
AFS_BOB_KEYTAB=$RUN/client/bob.keytab
AFS_SVC_KEYTAB=$RUN/client/svc.keytab
AFS_ALICE_PASSWORD=alice-pw
AFS_BOB_PASSWORD=bob-pw
AFS_SVC_PASSWORD=svc-pw
AFS_SVC_LIFE_S=$SVC_LIFE_S
AFS_ALICE_DIR=/afs/$CELL/alice
AFS_PUBLIC_DIR=/afs/$CELL/public
AFS_OPEN_DIR=/afs/$CELL/open
EOF
    fi
    mv "$tmp" "$RUN/env"
}

# ---------------------------------------------------------------------------------------------
# Namespaces and network

# The veth and the addresses are machine-wide, but a cell belongs to one checkout (its run
# dir): the host side of the veth carries the alias "afs-wasm-testcell:RUNDIR" of its owner, and
# one checkout never deletes another's live cell (it would cut that cell off in mid-test).
OWNER_TAG="afs-wasm-testcell:$RUN"

veth_owner() { # -> the alias of the host side of the veth, or nothing; fails if no veth
    local out
    out="$(ip -d link show "$VETH_HOST" 2>/dev/null)" || return 1
    printf '%s\n' "$out" | sed -n 's/^ *alias //p'
}

# Before starting: remove our stale veth, or a stale one of another checkout; refuse to touch
# the veth of another checkout's live cell.
claim_net() {
    local owner other pid st cur
    owner="$(veth_owner)" || return 0
    if [[ $owner != "$OWNER_TAG" ]]; then
        [[ $owner == afs-wasm-testcell:* ]] ||
            die "interface $VETH_HOST exists and was not made by this script (alias '$owner'): another test cell (an older cell.sh?) may be using it; stop that one, or remove it with: ip link del $VETH_HOST"
        other="${owner#afs-wasm-testcell:}"
        if read -r pid st < "$other/pids/holder" 2>/dev/null &&
            cur="$(starttime "$pid")" && [[ $cur == "$st" ]]; then
            die "the test cell of another checkout is running ($other, holder pid $pid) and uses $SERVER; stop it first: $(dirname "$other")/cell.sh down"
        fi
        log "removing the stale veth of $other"
    fi
    ip link del "$VETH_HOST" 2>/dev/null || true
}

# After stopping: remove our veth (if it still exists and is ours), and the blackhole route
# once no veth is left.
release_net() {
    local owner
    if owner="$(veth_owner)"; then
        [[ $owner == "$OWNER_TAG" ]] && ip link del "$VETH_HOST" 2>/dev/null
    fi
    if ! ip link show "$VETH_HOST" >/dev/null 2>&1; then
        ip route del blackhole "$CLIENTNET/30" metric 4242 2>/dev/null || true
    fi
    return 0
}

start_holder() {
    local h i
    for p in /etc/openafs /var/lib/openafs/db /var/lib/openafs/local /var/log/openafs "$PART"; do
        # Mount targets must exist on the host; they stay empty there.
        [[ -d $p ]] || mkdir -p "$p"
    done
    setsid unshare --mount --uts --net --propagation private -- sleep infinity \
        </dev/null >/dev/null 2>&1 9>&- &
    h=$!
    # unshare execs sleep in the same process; wait until it has (comm == sleep).
    for ((i = 0; i < 50; i++)); do
        [[ $(cat "/proc/$h/comm" 2>/dev/null) == sleep ]] && break
        sleep 0.02
    done
    [[ $(cat "/proc/$h/comm" 2>/dev/null) == sleep ]] || die "namespace holder did not start"
    record_pid holder "$h"

    # Network: veth pair, host side in the root namespace.
    claim_net
    ip link add "$VETH_HOST" type veth peer name "$VETH_NS" netns "$h"
    ip link set dev "$VETH_HOST" alias "$OWNER_TAG"
    sysctl -qw "net.ipv6.conf.$VETH_HOST.disable_ipv6=1" 2>/dev/null || true
    ip addr add "$HOSTADDR/30" dev "$VETH_HOST"
    ip link set "$VETH_HOST" up
    # If the connected route ever disappears, 10.254.0.0/30 must not fall back to the default
    # route (and leave the machine): a blackhole route with a worse metric catches it.
    ip route add blackhole "$CLIENTNET/30" metric 4242 2>/dev/null || true
    nsenter -t "$h" -n -- sh -c "
        sysctl -qw net.ipv6.conf.all.disable_ipv6=1 2>/dev/null || true
        ip link set lo up &&
        ip addr add $SERVER/30 dev $VETH_NS &&
        ip link set $VETH_NS up"
    nsenter -t "$h" -u -- hostname "$SERVER"

    # Mounts, private to the holder's mount namespace.
    nsenter -t "$h" -m -- sh -ec "
        mount --bind '$RUN/etc/openafs' /etc/openafs
        mount --bind '$RUN/db' /var/lib/openafs/db
        mount --bind '$RUN/local' /var/lib/openafs/local
        mount --bind '$RUN/log' /var/log/openafs
        mount --bind '$RUN/vicepa' '$PART'
        mount --bind '$RUN/sys/resolv.conf' /etc/resolv.conf
        mount --bind '$RUN/sys/hosts' /etc/hosts
        mount --bind '$RUN/sys/nsswitch.conf' /etc/nsswitch.conf"
}

# Start a server inside the namespaces, detached (own session), output to run/log/NAME.out.
start_server() { # NAME ARGS...
    start_server_in holder "" "$RUN/log" "$@"
}

# Start a server in the namespaces of holder HOLDER, recorded as PREFIX+NAME, its output in
# LOGDIR/NAME.out.
start_server_in() { # HOLDER PREFIX LOGDIR NAME ARGS...
    local on="$1" prefix="$2" logdir="$3" name="$4" h pid bin
    shift 4
    h="$(pid_of "$on")" || die "no $on"
    bin="$LIBEXEC/$name"
    [[ $name == krb5kdc ]] && bin=/usr/sbin/krb5kdc
    (
        cd /
        exec setsid nsenter -t "$h" -m -u -n -- \
            env KRB5_CONFIG="$RUN/sys/krb5.conf" KRB5_KDC_PROFILE="$KDC/kdc.conf" "$bin" "$@" \
            </dev/null >>"$logdir/$name.out" 2>&1 9>&-
    ) &
    pid=$!
    # Wait for the exec chain (subshell -> setsid -> nsenter -> server) to reach the server.
    for ((i = 0; i < 100; i++)); do
        [[ $(cat "/proc/$pid/comm" 2>/dev/null) == "${name:0:15}" ]] && break
        [[ -e /proc/$pid ]] || break
        sleep 0.01
    done
    [[ -e /proc/$pid ]] || fail_start "$name" "$(logname_of "$name")" "$name exited at once"
    record_pid "$prefix$name" "$pid"
    # Not a job of this shell: killing it later (setup_auth) must not print "Killed".
    disown "$pid" 2>/dev/null || true
}

logname_of() {
    case $1 in
        ptserver) echo PtLog ;;
        vlserver) echo VLLog ;;
        dafileserver | fileserver) echo FileLog ;;
        davolserver | volserver) echo VolserLog ;;
        salvageserver) echo SalsrvLog ;;
        *) echo "$1" ;;
    esac
}

check_alive() { # NAME
    pid_of "$1" >/dev/null || fail_start "$1" "$(logname_of "$1")" "$1 died"
}

fs_answers() {
    in_ns rxdebug "$SERVER" 7000 -version >/dev/null 2>&1
}

wait_fs() { # TIMEOUT_TENTHS
    local i
    for ((i = 0; i < $1; i++)); do
        check_alive dafileserver
        fs_answers && return 0
        sleep 0.1
    done
    fail_start dafileserver FileLog "the fileserver does not answer on $SERVER:7000"
}

# -rxbind: each binds its NetInfo address only, so that a second fileserver and volserver
# (fs2-up) can bind the same ports on the second address.
start_fileserver() { # extra args
    start_server dafileserver -p 32 -rxbind "$@"
}

# ---------------------------------------------------------------------------------------------
# The second fileserver (testcell/two-fileservers.md)

fs2_answers() {
    in_ns rxdebug "$SERVER2" 7000 -version >/dev/null 2>&1
}

fs2_start_fileserver() { # extra args
    start_server_in fs2-holder fs2- "$FS2/log" dafileserver -p 32 -rxbind "$@"
    local i
    for ((i = 0; i < 300; i++)); do
        pid_of fs2-dafileserver >/dev/null || fail_start dafileserver "../fs2/log/FileLog" "the second fileserver died"
        fs2_answers && return 0
        sleep 0.1
    done
    fail_start dafileserver "../fs2/log/FileLog" "the second fileserver does not answer on $SERVER2:7000"
}

# Starts a second fileserver and volserver on $SERVER2: its own mount and UTS namespace in
# the cell's network namespace, its own partition, registered in the VLDB.
cmd_fs2_up() {
    local h h2 i
    h="$(holder)" || die "the cell is not up; run: $SELF_CMD up"
    if pid_of fs2-dafileserver >/dev/null && fs2_answers; then
        log "the second fileserver is already up"
        return 0
    fi
    cmd_fs2_down --vldb-too
    mkdir -p "$FS2/etc" "$FS2/local" "$FS2/log" "$FS2/vicepa"
    rm -rf "$FS2/etc/openafs"
    cp -r "$RUN/etc/openafs" "$FS2/etc/openafs"
    printf '%s\n' "$SERVER2" > "$FS2/local/NetInfo"
    $AUTH && [[ -e $RUN/auth-on ]] || touch "$FS2/local/NoAuth"
    touch "$FS2/vicepa/AlwaysAttach"
    ip addr add "$HOSTADDR2/30" dev "$VETH_HOST" 2>/dev/null || true
    ip route add blackhole "$HOSTADDR2/30" metric 4242 2>/dev/null || true
    nsenter -t "$h" -n -- ip addr add "$SERVER2/30" dev "$VETH_NS" 2>/dev/null || true
    setsid nsenter -t "$h" -n -- unshare --mount --uts --propagation private -- sleep infinity \
        </dev/null >/dev/null 2>&1 9>&- &
    h2=$!
    for ((i = 0; i < 100; i++)); do
        [[ $(cat "/proc/$h2/comm" 2>/dev/null) == sleep ]] && break
        sleep 0.02
    done
    [[ $(cat "/proc/$h2/comm" 2>/dev/null) == sleep ]] || die "the second holder did not start"
    record_pid fs2-holder "$h2"
    disown "$h2" 2>/dev/null || true
    nsenter -t "$h2" -u -- hostname "$SERVER2"
    nsenter -t "$h2" -m -- sh -ec "
        mount --bind '$FS2/etc/openafs' /etc/openafs
        mount --bind '$FS2/local' /var/lib/openafs/local
        mount --bind '$FS2/log' /var/log/openafs
        mount --bind '$FS2/vicepa' '$PART'
        mount --bind '$RUN/sys/resolv.conf' /etc/resolv.conf
        mount --bind '$RUN/sys/hosts' /etc/hosts
        mount --bind '$RUN/sys/nsswitch.conf' /etc/nsswitch.conf"
    start_server_in fs2-holder fs2- "$FS2/log" salvageserver
    fs2_start_fileserver
    for ((i = 0; i < 300; i++)); do
        vos_ listaddrs -noresolve 2>/dev/null | grep -qx "$SERVER2" && break
        sleep 0.1
    done
    ((i < 300)) || die "the second fileserver did not register in the VLDB"
    start_server_in fs2-holder fs2- "$FS2/log" davolserver -rxbind
    for ((i = 0; i < 300; i++)); do
        vos_ listpart "$SERVER2" >/dev/null 2>&1 && break
        sleep 0.1
    done
    ((i < 300)) || die "the second volserver does not answer"
    # A replicated cell's layout: root.cell's read-only clone on both servers, so that
    # /afs/CELL is read-only, #vol. mount points in it lead to read-only clones, and
    # /afs/.CELL is the read-write root.cell. (afsio, which goes to root.cell's read-only
    # clone too, still reaches /afs/CELL/test: test has no clone.)
    vos_ addsite "$SERVER" a root.cell >/dev/null
    vos_ addsite "$SERVER2" a root.cell >/dev/null
    vos_ release root.cell >/dev/null || die "vos release root.cell failed"
    log "second fileserver up on $SERVER2; root.cell replicated on both"
}

# Whether root.cell has a read-only site on SERVER.
ro_site_on() { # SERVER
    vos_ listvldb -name root.cell -noresolve 2>/dev/null |
        grep -q "server $1 partition /vicepa RO Site"
}

cmd_fs2_down() { # [--vldb-too]: also restore the VLDB (not needed when the cell goes down)
    local i h
    if [[ ${1:-} == --vldb-too ]] && pid_of holder >/dev/null; then
        # The one-server cell again: root.cell unreplicated (clone and site; a release
        # killed midway leaves its entry locked) ...
        vos_ unlock root.cell >/dev/null 2>&1 || true
        if ro_site_on "$SERVER"; then
            vos_ remove -server "$SERVER" -partition a -id root.cell.readonly >/dev/null ||
                die "could not remove root.cell.readonly from $SERVER"
        fi
        if ro_site_on "$SERVER2"; then
            vos_ remove -server "$SERVER2" -partition a -id root.cell.readonly >/dev/null 2>&1 ||
                vos_ remsite "$SERVER2" a root.cell >/dev/null ||
                die "could not remove root.cell's site on $SERVER2"
        fi
        # ... and no volume entry names the second server.
        if vos_ listaddrs -noresolve 2>/dev/null | grep -qx "$SERVER2"; then
            vos_ delentry -server "$SERVER2" >/dev/null 2>&1 || true
            vos_ changeaddr -remove "$SERVER2" >/dev/null 2>&1 || true
        fi
    fi
    for ((i = ${#FS2_SERVERS[@]} - 1; i >= 0; i--)); do
        kill_name "fs2-${FS2_SERVERS[i]}" KILL 50
    done
    kill_name fs2-holder KILL 50
    if h="$(holder)"; then
        nsenter -t "$h" -n -- ip addr del "$SERVER2/30" dev "$VETH_NS" 2>/dev/null || true
    fi
    ip addr del "$HOSTADDR2/30" dev "$VETH_HOST" 2>/dev/null || true
    ip route del blackhole "$HOSTADDR2/30" metric 4242 2>/dev/null || true
    rm -rf "$FS2"
    return 0
}

# ---------------------------------------------------------------------------------------------
# Volumes and mount points

vos_() { in_ns vos "$@" "$(auth_flag)"; }
pts_() { in_ns pts "$@" "$(auth_flag)"; }

# Make mount point NAME -> #TARGET. in volume DESTVOL: afsio (1.8.9) can only create a new file
# at the top of root.cell (path "/NAME"; see afsio_put), so the file is created in root.cell,
# root.cell is dumped, the file's vnode is turned into a mount point (dumpedit.py) and the dump
# is restored as DESTVOL (which may be root.cell itself).
make_mountpoint() { # DESTVOL NAME TARGET
    local dest="$1" name="$2" target="$3" dump="$RUN/tmp/mp.dump"
    printf '#%s.' "$target" | in_ns /usr/bin/afsio write -file "/$name" >/dev/null ||
        die "afsio could not create /$name in root.cell"
    vos_ dump -id root.cell -file "$dump.in" >/dev/null 2>"$RUN/tmp/vos.err" ||
        { cat "$RUN/tmp/vos.err" >&2; die "vos dump root.cell failed"; }
    python3 "$TC_DIR/dumpedit.py" "$dump.in" "$dump" "#$target." >/dev/null
    if [[ $dest == root.cell ]]; then
        vos_ restore "$SERVER" a root.cell -file "$dump" -overwrite full >/dev/null 2>"$RUN/tmp/vos.err"
    else
        vos_ restore "$SERVER" a "$dest" -file "$dump" >/dev/null 2>"$RUN/tmp/vos.err"
    fi || { cat "$RUN/tmp/vos.err" >&2; die "vos restore $dest failed"; }
    rm -f "$dump" "$dump.in"
}

setup_volumes() {
    vos_ create "$SERVER" a root.cell -maxquota 0 >/dev/null
    # root.afs = a copy of root.cell holding the mount point $CELL -> root.cell ...
    make_mountpoint root.afs "$CELL" root.cell
    # ... then a fresh root.cell with the mount point test -> test.
    vos_ remove "$SERVER" a root.cell >/dev/null
    vos_ create "$SERVER" a root.cell -maxquota 0 >/dev/null
    make_mountpoint root.cell test test
    vos_ create "$SERVER" a test -maxquota 0 >/dev/null
}

# ---------------------------------------------------------------------------------------------
# Authentication (the auth cell only)

# The KDC's database, the AFS service principal afs/CELL@REALM (AES-256 key, exported to the
# servers' rxkad.keytab) and the test users with passwords; alice's, bob's and svc's keys also
# go to keytabs the clients may read (client/NAME.keytab), for `login --keytab`. Run inside the
# namespaces, so that no Kerberos library can reach DNS.
setup_kdc() {
    local u name pw
    mkdir -p "$KDC"
    chmod 700 "$KDC"
    : > "$KDC/kadm5.acl"
    cat > "$KDC/kdc.conf" <<EOF
[kdcdefaults]
	kdc_listen = $SERVER:$KDC_PORT
	kdc_tcp_listen = $SERVER:$KDC_PORT
[realms]
	$REALM = {
		database_name = $KDC/principal
		key_stash_file = $KDC/stash
		acl_file = $KDC/kadm5.acl
		master_key_type = aes256-cts-hmac-sha1-96
		supported_enctypes = aes256-cts-hmac-sha1-96:normal aes128-cts-hmac-sha1-96:normal
	}
[logging]
	kdc = FILE:$RUN/log/kdc.log
	default = FILE:$RUN/log/krb5lib.log
EOF
    in_ns env KRB5_KDC_PROFILE="$KDC/kdc.conf" kdb5_util create -s -r "$REALM" \
        -P "$(head -c 24 /dev/urandom | base64)" >/dev/null 2>&1 ||
        die "kdb5_util create failed"
    {
        echo "addprinc -randkey -e aes256-cts-hmac-sha1-96:normal afs/$CELL@$REALM"
        for u in "${AUTH_USERS[@]}"; do
            read -r name _ pw <<<"$u"
            echo "addprinc -pw $pw $name@$REALM"
        done
        echo "ktadd -k $RUN/etc/openafs/server/rxkad.keytab -norandkey afs/$CELL@$REALM"
        echo "ktadd -k $RUN/client/alice.keytab -norandkey alice@$REALM"
        echo "ktadd -k $RUN/client/bob.keytab -norandkey bob@$REALM"
        echo "modprinc -maxlife \"$SVC_LIFE_S seconds\" svc@$REALM"
        echo "ktadd -k $RUN/client/svc.keytab -norandkey svc@$REALM"
    } | in_ns env KRB5_KDC_PROFILE="$KDC/kdc.conf" kadmin.local >"$RUN/log/kadmin.out" 2>&1 ||
        { cat "$RUN/log/kadmin.out" >&2; die "kadmin.local failed"; }
    # Test credentials, readable by the unprivileged test user.
    chmod 644 "$RUN/client/alice.keytab" "$RUN/client/bob.keytab" "$RUN/client/svc.keytab"
}

kdc_answers() {
    local h
    h="$(holder)" || return 1
    nsenter -t "$h" -n ss -Hlun "sport = :$KDC_PORT" 2>/dev/null | grep -q .
}

start_kdc() {
    local i
    start_server krb5kdc -n
    for ((i = 0; i < 100; i++)); do
        check_alive krb5kdc
        kdc_answers && return 0
        sleep 0.05
    done
    fail_start krb5kdc kdc.log "the KDC does not listen on $SERVER:$KDC_PORT"
}

# Sets the ACL of VOLUME's root directory to ENTRIES (pts id:rights) by a dump, edited, and
# restored over the volume: no stock tool can store an ACL without the kernel module.
set_root_acl() { # VOLUME ID:RIGHTS...
    local vol="$1" dump="$RUN/tmp/acl.dump"
    shift
    vos_ dump -id "$vol" -file "$dump.in" >/dev/null 2>"$RUN/tmp/vos.err" ||
        { cat "$RUN/tmp/vos.err" >&2; die "vos dump $vol failed"; }
    python3 "$TC_DIR/dumpedit.py" --acl "$dump.in" "$dump" "$@" >/dev/null
    vos_ restore "$SERVER" a "$vol" -file "$dump" -overwrite full >/dev/null 2>"$RUN/tmp/vos.err" ||
        { cat "$RUN/tmp/vos.err" >&2; die "vos restore $vol failed"; }
    rm -f "$dump" "$dump.in"
}

# Users, volumes and ACLs while the cell still runs without authentication, then the switch:
# the service key into KeyFileExt, admin in UserList, the client network out of
# system:administrators, NoAuth gone, the servers restarted (vlserver without -noauth).
#   /afs/CELL/test    system:authuser rlidwk        (authenticated scratch space)
#   /afs/CELL/alice   alice rlidwka                  (nobody else)
#   /afs/CELL/public  alice rlidwka, bob rl, system:anyuser rl
#   /afs/CELL/open    system:anyuser rlidwk          (anonymous and authenticated alike:
#                     system:authuser rlidwka         the rxnull baseline of BENCH=rxkad and
#                                                     the AFS_TEST_AS runs, whose harness
#                                                     checks for the a right: authenticated)
# and system:administrators rlidwka everywhere; root.afs and root.cell system:anyuser rl.
setup_auth() {
    local u name id i
    local admins=-204:127 anyuser=-101 authuser=-102
    for u in "${AUTH_USERS[@]}"; do
        read -r name id _ <<<"$u"
        pts_ createuser -name "$name" -id "$id" >/dev/null
    done
    pts_ adduser -user admin -group system:administrators >/dev/null
    vos_ create "$SERVER" a alice -maxquota 0 >/dev/null
    vos_ create "$SERVER" a public -maxquota 0 >/dev/null
    vos_ create "$SERVER" a open -maxquota 0 >/dev/null
    make_mountpoint root.cell alice alice
    make_mountpoint root.cell public public
    make_mountpoint root.cell open open
    set_root_acl root.afs "$admins" "$anyuser:9"
    set_root_acl root.cell "$admins" "$anyuser:9"
    set_root_acl test "$admins" "$authuser:63"
    set_root_acl alice "$admins" 1001:127
    set_root_acl public "$admins" 1001:127 1002:9 "$anyuser:9"
    set_root_acl open "$admins" "$anyuser:63" "$authuser:127"

    in_ns akeyconvert >/dev/null 2>"$RUN/tmp/akeyconvert.err" ||
        { cat "$RUN/tmp/akeyconvert.err" >&2; die "akeyconvert failed"; }
    echo admin > "$RUN/etc/openafs/server/UserList"
    pts_ removeuser -user "$CLIENTNET" -group system:administrators >/dev/null
    rm -f "$RUN/local/NoAuth"
    touch "$RUN/auth-on"
    for ((i = ${#SERVERS[@]} - 1; i >= 0; i--)); do
        [[ ${SERVERS[i]} == krb5kdc ]] || kill_name "${SERVERS[i]}" KILL 50
    done
    start_server ptserver
    start_server vlserver
    start_server salvageserver
    start_fileserver
    wait_fs 300
    start_server davolserver -rxbind
    # Ubik elects itself again; until then vos and pts calls fail.
    for ((i = 0; i < 300; i++)); do
        check_alive ptserver
        check_alive vlserver
        check_alive davolserver
        pts_ examine alice >/dev/null 2>&1 && vos_ listvldb -name test >/dev/null 2>&1 &&
            vos_ listpart "$SERVER" >/dev/null 2>&1 && break
        sleep 0.1
    done
    ((i < 300)) || fail_start vlserver VLLog "the servers did not come back with authentication"
}

# ---------------------------------------------------------------------------------------------
# Commands

healthy() {
    local n
    [[ -f $RUN/ready && -f $RUN/env ]] || return 1
    holder >/dev/null || return 1
    [[ $(veth_owner) == "$OWNER_TAG" ]] || return 1
    for n in "${SERVERS[@]}"; do pid_of "$n" >/dev/null || return 1; done
    fs_answers
}

anything_running() {
    local f
    [[ -d $RUN/pids ]] || return 1
    for f in "$RUN"/pids/*; do
        [[ -e $f ]] || continue
        pid_of "$(basename "$f")" >/dev/null && return 0
    done
    return 1
}

cmd_up() {
    local t0 i out
    [[ $(id -u) -eq 0 ]] || die "must run as root"
    if healthy; then
        # The env file as this version of the script writes it.
        write_env
        log "cell $CELL is already up"
        return 0
    fi
    t0=$EPOCHREALTIME
    if anything_running; then
        log "cell is partly up: taking it down first"
        cmd_down
    fi
    claim_net   # fail early if another checkout's cell is running
    ensure_packages
    write_config
    start_holder
    if $AUTH; then
        setup_kdc
        start_kdc
    fi

    start_server ptserver
    start_server vlserver -noauth
    # Wait for ubik (the first write succeeds ~4 s after start); the first write is the pts
    # host entry for the client network, which must exist before any client connects.
    for ((i = 0; i < 300; i++)); do
        check_alive ptserver
        check_alive vlserver
        if out="$(pts_ createuser -name "$CLIENTNET" 2>&1)"; then break; fi
        [[ $out == *"already exists"* ]] && break
        sleep 0.1
    done
    ((i < 300)) || fail_start ptserver PtLog "ptserver/ubik not ready after 30 s: $out"
    pts_ adduser -user "$CLIENTNET" -group system:administrators >/dev/null ||
        fail_start ptserver PtLog "pts adduser $CLIENTNET system:administrators failed"

    start_server salvageserver
    start_fileserver
    wait_fs 300
    for ((i = 0; i < 300; i++)); do
        vos_ listaddrs -noresolve 2>/dev/null | grep -qx "$SERVER" && break
        sleep 0.1
    done
    ((i < 300)) || fail_start dafileserver FileLog "the fileserver did not register in the VLDB"

    start_server davolserver -rxbind
    for ((i = 0; i < 300; i++)); do
        check_alive davolserver
        vos_ listpart "$SERVER" >/dev/null 2>&1 && break
        sleep 0.1
    done
    ((i < 300)) || fail_start davolserver VolserLog "the volserver does not answer"

    setup_volumes
    $AUTH && setup_auth
    write_env
    touch "$RUN/ready"
    log "cell $CELL up in $(elapsed "$t0") s; env: $RUN/env"
}

cmd_down() {
    local i
    rm -f "$RUN/ready"
    cmd_fs2_down
    for ((i = ${#SERVERS[@]} - 1; i >= 0; i--)); do
        # Nothing worth saving: SIGKILL is immediate (the fileserver ignores SIGTERM anyway).
        kill_name "${SERVERS[i]}" KILL 50
    done
    kill_name holder KILL 50
    # The netns dies with its last process, taking the veth pair with it; clean up anyway.
    release_net
    return 0
}

cmd_status() {
    local n pid h rc=0
    if ! anything_running; then
        echo "cell $CELL: down"
        return 3
    fi
    echo "cell $CELL ($SERVER), run dir $RUN"
    for n in holder "${SERVERS[@]}"; do
        if pid="$(pid_of "$n")"; then
            printf '  %-14s pid %s\n' "$n" "$pid"
        else
            printf '  %-14s NOT RUNNING\n' "$n"
            rc=1
        fi
    done
    if [[ $(veth_owner) != "$OWNER_TAG" ]]; then
        printf '  veth           %s is missing or not ours (%s)\n' "$VETH_HOST" "$(veth_owner)"
        rc=1
    fi
    if h="$(holder)"; then
        printf '  link           %s\n' \
            "$(nsenter -t "$h" -n ip -br link show "$VETH_NS" 2>/dev/null | awk '{print $2}')"
        if nsenter -t "$h" -n nft list table inet "$NFT_TABLE" >/dev/null 2>&1; then
            printf '  loss           %s%%\n' "$(cat "$RUN/loss" 2>/dev/null || echo '?')"
        else
            printf '  loss           none\n'
        fi
    fi
    if fs_answers; then echo "  fileserver answers"; else echo "  fileserver does NOT answer"; rc=1; fi
    [[ -f $RUN/ready ]] || { echo "  setup not finished"; rc=1; }
    [[ $rc -eq 0 ]] && echo "  healthy; env: $RUN/env"
    return $rc
}

fs_stop() {
    pid_of dafileserver >/dev/null || { log "fileserver not running"; return 0; }
    # SIGQUIT: graceful shutdown, saves hosts and callbacks in fsstate.dat.
    kill_name dafileserver QUIT 600
}

cmd_fs_restart() {
    case "${1:-}" in
        keep)
            fs_stop
            start_fileserver
            ;;
        drop)
            fs_stop
            rm -f "$RUN/local/fsstate.dat"
            start_fileserver -fs-state-dont-restore
            ;;
        *) die "usage: cell.sh fs-restart keep|drop" ;;
    esac
    wait_fs 300
}

# Replaces the namespace's nft table TABLE by one with the body read from stdin, or only
# removes it when PERCENT is 0; $RUN/STATE remembers the percentage (for status).
replace_loss_table() { # TABLE STATE PERCENT
    local table=$1 state=$2 p=$3 h body
    body="$(cat)"
    h="$(holder)" || die "the cell is not up"
    nsenter -t "$h" -n nft delete table inet "$table" 2>/dev/null || true
    rm -f "$RUN/$state"
    [[ $p -eq 0 ]] && return 0
    printf 'table inet %s {\n%s\n}\n' "$table" "$body" | nsenter -t "$h" -n nft -f -
    echo "$p" > "$RUN/$state"
}

cmd_loss() {
    local p="${1:-}"
    [[ $p =~ ^[0-9]+$ && $p -le 100 ]] || die "usage: cell.sh loss PERCENT (0-100)"
    replace_loss_table "$NFT_TABLE" loss "$p" <<EOF
    chain in {
        type filter hook input priority 0;
        udp dport 7000 numgen random mod 100 < $p drop
    }
    chain out {
        type filter hook output priority 0;
        udp sport 7000 numgen random mod 100 < $p drop
    }
EOF
}

# Loss of the fileserver's answers only: its reply and ACK packets (flags byte without
# CLIENT_INITIATED) leaving through the veth, i.e. to our client on the host side, while the
# callback calls the fileserver makes to that client (CLIENT_INITIATED set) all pass. This is
# what makes a break overtake the reply that granted the promise it breaks. The Rx flags byte
# is at UDP payload offset 21: transport header bit offset 8*(8+21) = 232. afsio running
# inside the namespace talks over lo and is not slowed (with AFSIO_NET=host it would be).
# Its own table, so `loss` and `loss-replies` do not undo each other; both rules count
# (`nft list table inet afswasm_loss_replies` inside the namespace shows the counters).
NFT_TABLE_REPLIES=afswasm_loss_replies

cmd_loss_replies() {
    local p="${1:-}"
    [[ $p =~ ^[0-9]+$ && $p -le 100 ]] || die "usage: cell.sh loss-replies PERCENT (0-100)"
    replace_loss_table "$NFT_TABLE_REPLIES" loss-replies "$p" <<EOF
    chain out {
        type filter hook output priority 0;
        oifname "$VETH_NS" udp sport 7000 @th,232,8 & 0x01 == 0x01 counter
        oifname "$VETH_NS" udp sport 7000 @th,232,8 & 0x01 == 0x00 numgen random mod 100 < $p counter drop
    }
EOF
}

cmd_link() {
    local h
    h="$(holder)" || die "the cell is not up"
    case "${1:-}" in
        # The namespace side goes down: the host side keeps its address and route (NO-CARRIER),
        # so packets to 10.254.0.2 are dropped at the veth instead of taking the default route.
        down) nsenter -t "$h" -n ip link set "$VETH_NS" down ;;
        up)
            nsenter -t "$h" -n ip link set "$VETH_NS" up
            # Wait for carrier on both ends.
            for ((i = 0; i < 50; i++)); do
                ip -br link show "$VETH_HOST" | grep -q 'LOWER_UP' && break
                sleep 0.05
            done
            ;;
        *) die "usage: cell.sh link down|up" ;;
    esac
}

# afsio (OpenAFS 1.8.9) as a third-party client. It runs inside all three namespaces (mount:
# sees the cell's /etc/openafs and the DNS-safe resolv.conf/hosts/nsswitch.conf; net: it can
# reach nothing but the cell, and the interfaces it reports to the fileserver in
# TellMeAboutYourself are only 10.254.0.2 and lo, never the machine's real ones). Inside, its
# packets go over the namespace's loopback, not the veth: `link down` does not cut it off, but
# `loss` does (the nft rules match the fileserver port in both directions). Set
# AFSIO_NET=host to run it in the host network namespace instead (then it uses 10.254.0.1
# through the veth like our own client, and reports the host's interfaces to the fileserver;
# the namespace has no route to them, so nothing leaves the machine either way).
#
# afsio path syntax (libafscp, DIRMODE_CELL): "/afs/NAME/..." starts at the root of root.afs
# and looks NAME up there (so /afs/$CELL/test/f = root.afs -> mount point $CELL -> root.cell
# -> mount point test -> volume test -> f); any other path ("test/f") is relative to the root
# of root.cell (for `write` of a new file directly under root.cell use "/f": a path without
# "/" is refused). Mount points are followed, also as the last component (reading
# /afs/$CELL/test gives EISDIR). Files by FID: afsio fidread -fid VOLUME.VNODE.UNIQUE.
# Subcommands: read, write, append, fidread, fidwrite, fidappend, lock, fidlock; options
# -file PATH, -md5 (prints an md5 sum), -verbose (rates), -force (write over an existing file).
# Data goes through stdin/stdout. `cell.sh afsio` exits 1 when afsio printed an error (afsio
# itself exits 0 even then).
#
# Bugs of the Debian 1.8.9 build, and what this script does about them:
#  * `write` of a NEW file segfaults (exit 139) unless the path is "/NAME" (directly under
#    root.cell): BreakUpPath does `*dirName[dirNameLen] = '\0'` (fixed upstream by commit
#    a1abcc97d "afsio: Index into dirName properly in BreakUpPath", 2023). It crashes before
#    sending anything: no file is created, so a second write does not help. `up` therefore
#    makes run/bin/afsio, a copy of /usr/bin/afsio with exactly that instruction fixed (8
#    bytes at 0x7493, only if /usr/bin/afsio has the known sha256), and `cell.sh afsio` uses
#    it. AFSIO_STOCK=1 runs the unmodified /usr/bin/afsio instead.
#  * more than 64 MiB in one write/append corrupts the file (the offset counts the first
#    64 MiB twice): afsio-put writes 64 MiB, then appends the rest 64 MiB per process.
#  * -force does not truncate: overwriting a longer file keeps its old length and tail.
AFSIO_SHA256=f94ab5c664daefd9a9e2dafbec9497c030b52312f4336ee1b12ddf87808903c8
AFSIO_PATCH_OFF=$((0x7493))

patch_afsio() {
    local t="$RUN/bin/afsio"
    if [[ $(sha256sum /usr/bin/afsio 2>/dev/null | cut -d' ' -f1) != "$AFSIO_SHA256" ]]; then
        log "note: /usr/bin/afsio is not the Debian 1.8.9 build; not patching it (afsio write of a new file outside the top of root.cell will crash)"
        return 0
    fi
    mkdir -p "$RUN/bin"
    cp /usr/bin/afsio "$t.tmp"
    # Old: mov 0x0(%rbp,%r15,8),%rax; movb $0x0,(%rax)   (rax = the strdup'ed path)
    # New: movb $0x0,(%rax,%r15,1); nopl (%rax)
    [[ $(od -An -tx1 -j "$AFSIO_PATCH_OFF" -N 8 "$t.tmp" | tr -d ' \n') == 4a8b44fd00c60000 ]] ||
        { rm -f "$t.tmp"; log "note: unexpected bytes in afsio; not patching"; return 0; }
    printf '\x42\xc6\x04\x38\x00\x0f\x1f\x00' |
        dd of="$t.tmp" bs=1 seek="$AFSIO_PATCH_OFF" conv=notrunc status=none
    mv "$t.tmp" "$t"
}

afsio_bin() {
    if [[ ${AFSIO_STOCK:-0} != 1 && -x $RUN/bin/afsio ]]; then
        printf '%s\n' "$RUN/bin/afsio"
    else
        printf '%s\n' /usr/bin/afsio
    fi
}

# afsio always exits 0, even when it failed (it only prints "afsio: <error text>"): pass its
# stderr through and exit 1 if it printed an error (or its own code if it crashed).
afsio_run() {
    local bin err rc=0
    bin="$(afsio_bin)"
    mkdir -p "$RUN/tmp"
    err="$(mktemp "$RUN/tmp/afsio.err.XXXXXX")"
    if [[ ${AFSIO_NET:-ns} == host ]]; then
        in_mnt "$bin" "$@" 2>"$err" || rc=$?
    else
        in_ns "$bin" "$@" 2>"$err" || rc=$?
    fi
    cat "$err" >&2
    if [[ $rc -eq 0 ]] && grep -q '^afsio: ' "$err"; then rc=1; fi
    rm -f "$err"
    return $rc
}

# With -force over an existing file, that file must be empty (or no longer than 64 MiB
# and the source no longer than it): afsio cannot truncate, and its appends go after
# the old end of the file.
afsio_put() { # LOCAL AFSPATH [-force]
    local src="${1:-}" dst="${2:-}" force="${3:-}" size chunk=$((64 << 20)) off
    [[ -n $src && -n $dst ]] || die "usage: cell.sh afsio-put LOCALFILE AFSPATH [-force]"
    [[ -f $src ]] || die "$src: no such file"
    size=$(stat -c %s "$src")
    # Does the file exist? An append of nothing is a cheap probe (ENOENT if it does not).
    if afsio_run append -file "$dst" </dev/null >/dev/null 2>&1; then
        [[ $force == -force ]] ||
            die "$dst exists (afsio can neither truncate nor delete it; -force writes over it in place, keeping a longer old length)"
        dd if="$src" bs=1M iflag=count_bytes count="$chunk" status=none |
            afsio_run write -force -file "$dst" >/dev/null
    else
        [[ $dst == */* ]] || dst="/$dst"   # "NAME" is refused, "/NAME" is NAME in root.cell
        [[ $(afsio_bin) != /usr/bin/afsio || $dst =~ ^/[^/]+$ ]] ||
            die "the stock afsio cannot create $dst (see the afsio bugs in cell.sh)"
        dd if="$src" bs=1M iflag=count_bytes count="$chunk" status=none |
            afsio_run write -file "$dst" >/dev/null
    fi
    for ((off = chunk; off < size; off += chunk)); do
        # dd reads exactly this piece (tail | head would die of SIGPIPE under pipefail).
        dd if="$src" bs=1M iflag=skip_bytes,count_bytes skip="$off" count="$chunk" status=none |
            afsio_run append -file "$dst" >/dev/null
    done
}

afsio_get() { # AFSPATH LOCAL
    [[ -n ${1:-} && -n ${2:-} ]] || die "usage: cell.sh afsio-get AFSPATH LOCALFILE"
    afsio_run read -file "$1" > "$2"
}

# Records every UDP packet on the namespace's side of the veth (all traffic between the
# servers and clients outside) into a pcap file; `stop` ends it and makes the file readable.
cmd_capture() {
    local h pid i file
    case "${1:-}" in
        start)
            file="${2:-}"
            [[ -n $file ]] || die "usage: cell.sh capture start FILE"
            pid_of capture >/dev/null && die "a capture is running already"
            h="$(holder)" || die "the cell is not up"
            rm -f "$RUN/capture.err"
            (
                cd /
                exec setsid nsenter -t "$h" -n -- tcpdump -i "$VETH_NS" --immediate-mode -U -n -s 0 -Z root \
                    -w "$file" udp </dev/null >/dev/null 2>"$RUN/capture.err" 9>&-
            ) &
            pid=$!
            for ((i = 0; i < 100; i++)); do
                grep -q 'listening on' "$RUN/capture.err" 2>/dev/null && break
                [[ -e /proc/$pid ]] || { cat "$RUN/capture.err" >&2; die "tcpdump exited"; }
                sleep 0.05
            done
            record_pid capture "$pid"
            disown "$pid" 2>/dev/null || true
            echo "$file" > "$RUN/capture.file"
            ;;
        stop)
            kill_name capture INT 50
            file="$(cat "$RUN/capture.file" 2>/dev/null)" || return 0
            [[ -f $file ]] && chmod 644 "$file"
            rm -f "$RUN/capture.file"
            ;;
        *) die "usage: cell.sh capture start FILE | capture stop" ;;
    esac
}

# Commands that change the cell take a machine-wide lock (the veth and addresses are
# machine-wide), so that parallel tests may all call `cell.sh up`: the first one starts the
# cell, the others wait and then find it healthy.
lock() {
    if $AUTH; then
        exec 9>>/run/lock/afs-wasm-testcell-auth.lock
    else
        exec 9>>/run/lock/afs-wasm-testcell.lock
    fi
    flock 9
}

main() {
    local cmd="${1:-}"
    [[ $# -gt 0 ]] && shift
    case $cmd in
        up | down | fs-restart | fs-stop | fs-start | loss | loss-replies | link | fs2-*) lock ;;
    esac
    case $cmd in
        up) cmd_up ;;
        down) cmd_down ;;
        status) cmd_status ;;
        env) echo "$RUN/env" ;;
        fs-restart) cmd_fs_restart "$@" ;;
        fs-stop) fs_stop ;;
        fs-start)
            pid_of dafileserver >/dev/null && { log "fileserver already running"; return 0; }
            start_fileserver
            wait_fs 300
            ;;
        fs2-up) cmd_fs2_up ;;
        fs2-down) cmd_fs2_down --vldb-too ;;
        fs2-stop) kill_name fs2-dafileserver QUIT 600 ;;
        fs2-start)
            pid_of fs2-dafileserver >/dev/null && { log "second fileserver already running"; return 0; }
            fs2_start_fileserver
            ;;
        loss) cmd_loss "$@" ;;
        loss-replies) cmd_loss_replies "$@" ;;
        link) cmd_link "$@" ;;
        afsio) afsio_run "$@" ;;
        afsio-put) afsio_put "$@" ;;
        afsio-get) afsio_get "$@" ;;
        vos | pts)
            if [[ $# -eq 0 || $1 == help || $1 == apropos || " $* " == *" -noauth "* ]]; then
                in_ns "$cmd" "$@"
            else
                in_ns "$cmd" "$@" "$(auth_flag)"
            fi
            ;;
        exec) [[ $# -gt 0 ]] || die "usage: cell.sh exec CMD..."; in_ns "$@" ;;
        capture) cmd_capture "$@" ;;
        -h | --help | help) usage ;;
        "") usage >&2; exit 2 ;;
        *) usage >&2; die "unknown command $cmd" ;;
    esac
}

main "$@"
