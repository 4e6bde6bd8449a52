# Shell functions shared by bench/run and bench/profile; sourced, not run.
#
# The caller sets: root (the repository), bin (the release binaries), work (a
# temporary directory), keep (yes: leave work behind), started (an array: every
# background process started here, stopped by pid on exit), SINK_PORT,
# POSTERN_PORT; and, for gen_postern_conf, optionally POSTERN_EXTRA_PROCESS
# (TOML lines added to [process]). It installs `trap cleanup EXIT`.

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

log() { printf '== %s\n' "$*" >&2; }

# Installs what is missing: the bench's tools, plus COMMAND:PACKAGE pairs.
install_missing() {
    local need=() pair
    for pair in "$@"; do command -v "${pair%%:*}" >/dev/null 2>&1 || need+=("${pair#*:}"); done
    command -v python3 >/dev/null 2>&1 || need+=(python3)
    [ -x /usr/bin/time ] || need+=(time)
    { [ -x /usr/sbin/smtp-source ] && [ -x /usr/sbin/smtp-sink ]; } || need+=(postfix)
    command -v nginx >/dev/null 2>&1 || need+=(nginx)
    [ -e /usr/lib/nginx/modules/ngx_mail_module.so ] || need+=(libnginx-mod-mail)
    command -v haproxy >/dev/null 2>&1 || need+=(haproxy)
    [ -x /usr/sbin/dnsmasq ] || need+=(dnsmasq-base)
    command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
    [ ${#need[@]} -gt 0 ] || return 0
    log "installing ${need[*]}"
    # "No configuration": postfix is only a package of programs here.
    echo 'postfix postfix/main_mailer_type select No configuration' | as_root debconf-set-selections
    # A policy-rc.d answering 101 keeps the packages from starting Postfix,
    # nginx or HAProxy. Keep one that exists; remove ours afterwards, even on failure.
    local policy=/usr/sbin/policy-rc.d ours=no
    if [ ! -e "$policy" ]; then
        ours=yes
        trap 'as_root rm -f /usr/sbin/policy-rc.d' EXIT
        printf '#!/bin/sh\n# temporary, from postern bench/run: start no service\nexit 101\n' |
            as_root tee "$policy" >/dev/null
        as_root chmod 755 "$policy"
    fi
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
    if [ "$ours" = yes ]; then
        as_root rm -f "$policy"
        trap - EXIT
    fi
}

stop_pid() {        # TERM, up to 30 s, then KILL; reaps it
    local pid=$1 i
    kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null || true; return 0; }
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 300; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null || true
}

cleanup() {
    local p
    for p in "${started[@]}"; do stop_pid "$p"; done
    if [ "$keep" = yes ]; then log "kept $work"; else rm -rf "$work"; fi
}

port_free() { ! ss -Htln "sport = :$1" | grep -q .; }

# Waits (20 s at most) until PORT greets with 220.
wait_greeting() {
    local port=$1 end=$((SECONDS + 20))
    while [ $SECONDS -lt $end ]; do
        if timeout 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/$port && head -c 3 <&3" 2>/dev/null | grep -q 220; then
            return 0
        fi
        sleep 0.1
    done
    return 1
}

children() { pgrep -P "$1" | tr '\n' ' ' || true; }

# CPU ticks of a master and its workers, plus what its reaped workers used;
# with `sys` as $2, the system (kernel) ticks alone: the part spent in
# system calls and the kernel's work for them (loopback TCP, wake-ups).
cpu_ticks() {
    local m=$1 p sum=0 t own='$12 + $13' reaped='$14 + $15'
    [ "${2:-}" = sys ] && own='$13' reaped='$15'
    for p in $m $(children "$m"); do
        t=$(awk -v master=$([ "$p" = "$m" ] && echo 1 || echo 0) \
            "{ sub(/^.*\\) /, \"\"); print $own + (master ? $reaped : 0) }" \
            "/proc/$p/stat" 2>/dev/null) || continue
        sum=$((sum + ${t:-0}))
    done
    echo "$sum"
}

# CPU ticks of process $1 alone (the master: not its workers').
own_ticks() {
    awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$1/stat" 2>/dev/null || echo 0
}

# CPU ticks of the workers of master $1 named $2.
cpu_ticks_of() {
    local p sum=0 t
    for p in $(children "$1"); do
        [ "$(cat "/proc/$p/comm" 2>/dev/null)" = "$2" ] || continue
        t=$(awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$p/stat" 2>/dev/null) || continue
        sum=$((sum + ${t:-0}))
    done
    echo "$sum"
}

# Resets the peak RSS (VmHWM) of a master and its workers (Linux clear_refs 5).
reset_hwm() {
    local p
    for p in $1 $(children "$1"); do echo 5 >"/proc/$p/clear_refs" 2>/dev/null || true; done
}

# Largest VmHWM (kB) among the workers of master $1 named $2.
max_hwm() {
    local p v best=0
    for p in $(children "$1"); do
        [ "$(cat "/proc/$p/comm" 2>/dev/null)" = "$2" ] || continue
        v=$(awk '/^VmHWM:/ { print $2 }' "/proc/$p/status" 2>/dev/null)
        [ "${v:-0}" -gt "$best" ] && best=$v
    done
    echo "$best"
}

# Sum of VmRSS (kB) of a master and its workers.
rss_total() {
    local p v sum=0
    for p in $1 $(children "$1"); do
        v=$(awk '/^VmRSS:/ { print $2 }' "/proc/$p/status" 2>/dev/null)
        sum=$((sum + ${v:-0}))
    done
    echo "$sum"
}

calc() { awk "BEGIN { printf \"%.${2:-3}f\", $1 }"; }

# smtp-sink -c prints its counters ("sess=N quit=N mesg=N", CR-separated) at
# every session end, QUIT and ".": the last mesg= is the messages received.
start_sink() {
    local out=$1
    smtp-sink -c -u nobody -m 2048 "127.0.0.1:$SINK_PORT" 2048 >"$out" 2>"$out.err" &
    sink_pid=$!
    started+=("$sink_pid")
    wait_greeting "$SINK_PORT" || { echo "bench: smtp-sink did not start" >&2; cat "$out.err" >&2; return 1; }
}

sink_count() {
    local n
    n=$(tr '\r' '\n' <"$1" | grep -o 'mesg=[0-9]*' | tail -n 1 | cut -d= -f2 || true)
    echo "${n:-0}"
}

# Waits (10 s at most) until the sink counted $2 messages; prints the count.
sink_wait() {
    local end=$((SECONDS + 10)) n
    while :; do
        n=$(sink_count "$1")
        if [ "$n" -ge "$2" ] || [ $SECONDS -ge $end ]; then echo "$n"; return 0; fi
        sleep 0.05
    done
}

gen_postern_conf() {    # dir, domains (TOML array or @file), max_connections, per ip
    local dir=$1 domains=$2 maxconn=${3:-2000} perip=${4:-1000}
    [[ $domains == @* ]] && domains=$(cat "${domains#@}")
    mkdir -p "$dir"
    cat >"$dir/postern.toml" <<EOF
# Generated by postern's bench/lib.sh: the defaults, except the listener, the
# directories, the one server (the sink) and the connection limits.
[proxy]
listen = ["127.0.0.1:$POSTERN_PORT"]
# smtp-source opens all its sessions from 127.0.0.1 (default 50).
max_connections_per_ip = $perip
max_connections = $maxconn

[process]
run_dir = "$dir/run"
state_dir = "$dir/state"
spool_dir = "$dir/spool"
${POSTERN_EXTRA_PROCESS:-}

[[server]]
name = "sink"
host = "127.0.0.1"
port = $SINK_PORT
domains = $domains
EOF
}

# The policy configuration (bench/run's `policy`): the anti-spam policy
# on, as a site would run it. 10,000 access entries (reject connect of
# 10.x hosts, reject from of addresses, an accept to), four restrictions
# (not the domain lookups, which would measure DNS rather than postern), and
# two DNS blocklist zones served by a dnsmasq of the bench (bl1 holds the
# RFC 5782 test entry only; bl2 also lists 127.0.0.5); skip_networks = []
# so that smtp-source's 127.0.0.1 is looked up like any client.
gen_policy() {          # dir (holding postern.toml)
    local dir=$1
    cat >>"$dir/postern.toml" <<EOF

[policy]
resolvers = ["127.0.0.1:$DNS_PORT"]
skip_networks = []
dnsbl = ["bl1.bench.test=127.0.0.[2..11]", "bl2.bench.test"]
restrictions = ["reject_invalid_helo_hostname", "reject_non_fqdn_sender", "reject_non_fqdn_recipient", "reject_unauth_pipelining"]
EOF
    mkdir -p "$dir/state"
    python3 - "$dir/state/access.toml" <<'PY'
import sys
with open(sys.argv[1], "w") as f:
    f.write('[[accept]]\nmethod = "to"\npattern = "postmaster@bench.test"\n\n')
    for i in range(9000):
        f.write(f'[[reject]]\nmethod = "connect"\npattern = "10.{i // 65536 % 256}.{i // 256 % 256}.{i % 256}"\n\n')
    for i in range(999):
        f.write(f'[[reject]]\nmethod = "from"\npattern = "spammer{i}@bulk.example"\n\n')
PY
}

# Greylisting for the policy configuration: the embedded store seeded,
# through `postern greylist import`, with 1,000,000 passed triplets of other
# clients and the load's own (127.0.0.0/24, sender@load.test,
# user@bench.test), so that every attempt of the load is a decision in a
# big store that accepts.
seed_greylist() {       # dir (of a running postern)
    local dir=$1 now chunk
    now=$(($(date +%s) * 1000))
    for chunk in 0 1 2 3 4; do
        python3 - "$now" "$chunk" >"$dir/greylist-$chunk.txt" <<'PY'
import sys
now, chunk = int(sys.argv[1]), int(sys.argv[2])
print("# postern greylist export 1")
if chunk == 0:
    print(f"passed\t127.0.0.0/24\tsender@load.test\tuser@bench.test\t{now}\t{now}\t1")
for i in range(chunk * 200000, (chunk + 1) * 200000):
    net = f"10.{i // 65536 % 256}.{i // 256 % 256}.0/24"
    print(f"{'passed' if i % 2 else 'pending'}\t{net}\tuser{i}@sender{i % 997}.example\tuser@bench.test\t{now}\t{now}\t1")
PY
        # A Redis store opens within a second of the router's start.
        local try
        for try in 1 2 3 4 5 6 7 8 9 10; do
            "$bin/postern" -c "$dir/postern.toml" greylist import "$dir/greylist-$chunk.txt" \
                >/dev/null 2>"$dir/import.err" && break
            [ "$try" = 10 ] && { echo "bench: greylist import failed: $(cat "$dir/import.err")" >&2; return 1; }
            sleep 0.5
        done
    done
}

start_redis() {         # dir: a private redis-server on REDIS_PORT, nothing saved
    local dir=$1 i
    redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --save '' --appendonly no \
        >"$dir/redis.log" 2>&1 &
    redis_pid=$!
    started+=("$redis_pid")
    for ((i = 0; i < 100; i++)); do
        (exec 3<>"/dev/tcp/127.0.0.1/$REDIS_PORT") 2>/dev/null && return 0
        sleep 0.05
    done
    echo "bench: redis-server did not listen" >&2
    return 1
}

start_dns() {           # dir: dnsmasq on DNS_PORT with the bench's zones
    local dir=$1
    /usr/sbin/dnsmasq --keep-in-foreground --listen-address=127.0.0.1 --bind-interfaces \
        --port="$DNS_PORT" --no-resolv --no-hosts --conf-file=/dev/null --pid-file= --user=nobody \
        --local=/bench.test/ \
        --host-record=2.0.0.127.bl1.bench.test,127.0.0.2 \
        --host-record=2.0.0.127.bl2.bench.test,127.0.0.2 \
        --host-record=5.0.0.127.bl2.bench.test,127.0.0.2 \
        >"$dir/dns.log" 2>&1 &
    dns_pid=$!
    started+=("$dns_pid")
}

start_postern() {       # dir (holding postern.toml), smtpd processes to wait for (default 2)
    local dir=$1 want=${2:-2}
    "${pbin:-$bin}/postern" -c "$dir/postern.toml" start >"$dir/proxy.log" 2>&1 &
    proxy_pid=$!
    started+=("$proxy_pid")
    proxy_worker=postern-smtpd
    wait_greeting "$POSTERN_PORT" || { echo "bench: postern did not start" >&2; tail -20 "$dir/proxy.log" >&2; return 1; }
    # Every smtpd must be up too, not only the one that greeted.
    local end=$((SECONDS + 20))
    while [ "$(pgrep -P "$proxy_pid" -x postern-smtpd | wc -l)" -lt "$want" ] && [ $SECONDS -lt $end ]; do sleep 0.1; done
}

# Builds postern (unless $1 is no), checks the binaries, raises the open-files
# limit as far as allowed, makes $work and installs the clean-up.
prepare() {
    if [ "${1:-yes}" = yes ]; then
        log "cargo build --release --workspace"
        cargo build --release --workspace --quiet
    fi
    bin=${CARGO_TARGET_DIR:-$root/target}/release
    local b
    for b in postern postern-smtpd postern-router postern-updater; do
        [ -x "$bin/$b" ] || { echo "bench: $bin/$b is missing (build it, or drop --no-build)" >&2; exit 1; }
    done
    ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
    nofile=$(ulimit -n)
    hz=$(getconf CLK_TCK)
    work=$(mktemp -d /tmp/postern-bench.XXXXXX)
    chmod 755 "$work"
    started=()
    trap cleanup EXIT
    trap 'exit 130' INT TERM
}

# Refuses to go on if one of these ports is taken. smtp-sink binds with
# SO_REUSEPORT: on a busy port it would not fail, it would share.
require_free_ports() {
    local p
    for p in "$@"; do
        port_free "$p" || { echo "bench: port $p is in use (try --port BASE)" >&2; exit 1; }
    done
}
