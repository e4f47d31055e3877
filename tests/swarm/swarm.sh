#!/usr/bin/env bash
# A Docker swarm of several engines on this one machine, for envctl's swarm tests.
#
#   tests/swarm/swarm.sh up NAME [--nodes N] [--watch PID]
#       builds the swarm and prints the path of its env file (KEY=VALUE lines) on stdout;
#       progress, the cost and errors go to stderr. With --watch, a watcher tears the swarm
#       down once process PID has ended (a test run that built it for itself).
#   tests/swarm/swarm.sh down NAME
#       removes everything `up` made, and says what it could not remove (exit 1).
#   tests/swarm/swarm.sh kill NAME K
#       kills node K as a machine dies: its engine, its containers, every process in its
#       namespace; the namespace stays, so the other nodes lose it. `down` removes it all.
#
# What `up` makes, all of it named after NAME ([a-z0-9], at most 8 characters: it goes into
# network interface names):
#   - network namespaces envctl-swarm-NAME-hub, holding a bridge, and envctl-swarm-NAME-nK, one
#     per node, joined to the hub by veth pairs; a veth `esw-NAME` from the caller's own
#     namespace to the hub, so that tests reach the nodes' addresses;
#   - addresses in one free /24 of 10.213.0.0/16 (never the host engine's 172.16.0.0/12): the
#     caller's end .1, node K .(10+K); the nodes' engines keep their own networks inside their
#     namespaces (10.214.0.0/16 for local bridges, 10.215.0.0/16 for overlays);
#   - one dockerd per node, with its data root, exec root, socket, pidfile and log under
#     /tmp/envctl-swarm-NAME/nK, started in the node's namespace through `nsenter` and
#     `unshare --mount --uts` (hostname envctl-swarm-NAME-nK) with the node's own sysfs and the
#     host's cgroup mounts bound back over it (`ip netns exec` leaves runc with "Devices cgroup
#     isn't mounted"); containers go under the cgroup parent envctl-swarm-NAME-nK;
#   - `swarm init` on node 1 (the manager), `swarm join` on the others;
#   - a registry (Debian's docker-registry) on node 1, port 5000, plain HTTP: every node's
#     engine lists it as an insecure registry.
# Every step is bounded in time and a failure names it; a failed `up` tears down what it made.
# Needs root, iproute2 (`ip`), util-linux (`nsenter`, `unshare`, `flock`), dockerd and the
# docker CLI, docker-registry.
set -euo pipefail

self="$(readlink -f "${BASH_SOURCE[0]}")"
LOCK=/run/lock/envctl-swarm.lock

die() {
    echo "swarm: error: $*" >&2
    exit 1
}

usage() {
    sed -n '4,12p' "$self" | sed 's/^# \{0,1\}//' >&2
    exit 1
}

# Names of everything belonging to swarm $NAME, shared by up, down and the watcher.
names() {
    NAME="$1"
    [[ "$NAME" =~ ^[a-z0-9]{1,8}$ ]] || die "swarm name \`$NAME\` must be 1 to 8 of [a-z0-9]"
    DIR="/tmp/envctl-swarm-$NAME"
    NS="envctl-swarm-$NAME"
    HUB="$NS-hub"
    HOST_IF="esw-$NAME"
    LOG="$DIR/swarm.log"
}

node_ns() { echo "$NS-n$1"; }
node_dir() { echo "$DIR/n$1"; }
node_host() { echo "unix://$(node_dir "$1")/docker.sock"; }
node_addr() { echo "$PREFIX.$((10 + $1))"; }
now_ms() { echo $(($(date +%s%N) / 1000000)); }

# Runs `$self __call FUNCTION ARGS...` within LIMIT seconds; a failure names STEP, shows the
# end of the log and exits.
STEPS=()
step() {
    local name="$1" limit="$2"
    shift 2
    local start status=0 from
    start=$(now_ms)
    echo "[$(date -u +%H:%M:%S)] step: $name" >>"$LOG"
    from=$(wc -l <"$LOG")
    timeout --kill-after=5 "$limit" "$self" __call "$@" >>"$LOG" 2>&1 || status=$?
    if ((status != 0)); then
        local why="failed (exit $status)"
        ((status == 124 || status == 137)) && why="did not finish within ${limit}s"
        echo "swarm: step \`$name\` $why; what it printed:" >&2
        tail -n "+$((from + 1))" "$LOG" | tail -n 25 | sed 's/^/  | /' >&2
        exit 1
    fi
    STEPS+=("$name $(($(now_ms) - start))ms")
}

# --- up ----------------------------------------------------------------------------------

up() {
    local nodes=3 watch=""
    names "${1:-}"
    shift || true
    while (($#)); do
        case "$1" in
        --nodes) nodes="$2"; shift 2 ;;
        --watch) watch="$2"; shift 2 ;;
        *) usage ;;
        esac
    done
    [[ "$nodes" =~ ^[1-9]$ ]] || die "--nodes takes 1 to 9"
    ((EUID == 0)) || die "the test swarm needs root (network namespaces, dockerd)"
    local tool missing=()
    for tool in ip nsenter unshare flock timeout dockerd docker docker-registry; do
        command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
    done
    ((${#missing[@]} == 0)) || die "missing ${missing[*]}
hint: apt-get install iproute2 util-linux docker.io docker-registry"
    if [[ -e "$DIR" ]] || ip netns list | grep -q "^$NS-" || ip link show "$HOST_IF" >/dev/null 2>&1; then
        die "swarm \`$NAME\` exists already
hint: tests/swarm/swarm.sh down $NAME"
    fi
    mkdir -p "$DIR"
    : >"$LOG"
    echo "$nodes" >"$DIR/nodes"
    # From here on, a failure removes what was made.
    trap 'status=$?; if ((status != 0)); then "$self" down "$NAME" >&2 || true; fi' EXIT

    local start
    start=$(now_ms)
    choose_subnet
    export NAME PREFIX NODES="$nodes"
    step "namespaces and veth pairs" 30 make_network
    # The address is taken: let the next swarm choose. Closed before any daemon starts, or
    # every daemon and the watcher would inherit the lock and hold it while the swarm lives.
    exec 9>&-
    local k
    for ((k = 1; k <= nodes; k++)); do
        step "dockerd on node $k" 60 start_engine "$k"
    done
    step "swarm init on node 1" 60 swarm_init
    for ((k = 2; k <= nodes; k++)); do
        step "swarm join of node $k" 60 swarm_join "$k"
    done
    step "all $nodes nodes ready" 60 nodes_ready
    step "registry on node 1" 30 start_registry
    write_env
    if [[ -n "$watch" ]]; then
        setsid "$self" __watch "$NAME" "$watch" </dev/null >>"$LOG" 2>&1 &
        echo $! >"$DIR/watcher.pid"
    fi
    trap - EXIT
    report_cost $(($(now_ms) - start))
    echo "$DIR/swarm.env"
}

# One free /24 of 10.213.0.0/16: no route of this namespace inside or around it. The address
# of our end makes the route, so the choice and the address are made under one lock.
choose_subnet() {
    exec 9>"$LOCK"
    flock -w 30 9 || die "step \`subnet\`: $LOCK stayed locked for 30 s"
    local n
    for ((n = 0; n < 256; n++)); do
        if [[ -z "$(ip -4 route show root "10.213.$n.0/24")" ]] &&
            [[ -z "$(ip -4 route show match "10.213.$n.0/24" | grep -v '^default')" ]]; then
            PREFIX="10.213.$n"
            echo "$PREFIX" >"$DIR/prefix"
            return
        fi
    done
    die "step \`subnet\`: no free /24 left in 10.213.0.0/16"
}

make_network() {
    set -x
    ip netns add "$HUB"
    ip -n "$HUB" link set lo up
    ip -n "$HUB" link add br0 type bridge
    ip -n "$HUB" link set br0 up
    local k ns
    for ((k = 1; k <= NODES; k++)); do
        ns="$(node_ns "$k")"
        ip netns add "$ns"
        ip -n "$ns" link set lo up
        ip -n "$HUB" link add "n$k" type veth peer name eth0 netns "$ns"
        ip -n "$HUB" link set "n$k" master br0 up
        ip -n "$ns" addr add "$(node_addr "$k")/24" dev eth0
        ip -n "$ns" link set eth0 up
    done
    ip link add "$HOST_IF" type veth peer name caller netns "$HUB"
    ip -n "$HUB" link set caller master br0 up
    ip addr add "$PREFIX.1/24" dev "$HOST_IF"
    ip link set "$HOST_IF" up
}

start_engine() {
    local k="$1" dir ns
    dir="$(node_dir "$k")"
    ns="$(node_ns "$k")"
    mkdir -p "$dir/data" "$dir/exec" "$dir/cgroup"
    # No settings from /etc/docker/daemon.json: they may clash with these flags.
    echo '{}' >"$dir/daemon.json"
    # In a mount namespace of its own: the node's own sysfs (dockerd and runc read the
    # namespace's interfaces there), the host's cgroup mounts bound back over it, and a
    # /run/containerd of its own for its containerd's shims. All of it ends with the engine.
    setsid nsenter --net="/run/netns/$ns" -- unshare --mount --uts --propagation slave -- sh -c '
        set -e
        echo "$2" >/proc/sys/kernel/hostname
        mount --rbind /sys/fs/cgroup "$1/cgroup"
        mount -t sysfs sysfs /sys
        mount --move "$1/cgroup" /sys/fs/cgroup
        mkdir -p /run/containerd
        mount -t tmpfs tmpfs /run/containerd
        shift 2
        exec "$@"' engine "$dir" "$ns" \
        dockerd --config-file "$dir/daemon.json" \
        --data-root "$dir/data" --exec-root "$dir/exec" \
        --pidfile "$dir/docker.pid" -H "$(node_host "$k")" \
        --storage-driver vfs \
        --cgroup-parent "$ns" \
        --default-address-pool base=10.214.0.0/16,size=24 \
        --insecure-registry "$(node_addr 1):5000" \
        </dev/null >"$dir/dockerd.log" 2>&1 &
    echo $! >"$dir/engine.pid"
    until docker -H "$(node_host "$k")" version >/dev/null 2>&1; do
        if ! kill -0 "$(cat "$dir/engine.pid")" 2>/dev/null; then
            echo "dockerd on node $k exited; its log:"
            tail -n 20 "$dir/dockerd.log"
            return 1
        fi
        sleep 0.1
    done
}

swarm_init() {
    set -x
    docker -H "$(node_host 1)" swarm init \
        --advertise-addr "$(node_addr 1)" --listen-addr "$(node_addr 1):2377" \
        --default-addr-pool 10.215.0.0/16 --default-addr-pool-mask-length 24
}

swarm_join() {
    local k="$1" token
    token="$(docker -H "$(node_host 1)" swarm join-token -q worker)"
    set -x
    docker -H "$(node_host "$k")" swarm join --token "$token" \
        --advertise-addr "$(node_addr "$k")" --listen-addr "$(node_addr "$k"):2377" \
        "$(node_addr 1):2377"
}

nodes_ready() {
    local ready
    while true; do
        ready="$(docker -H "$(node_host 1)" node ls --format '{{.Status}}' | grep -c '^Ready$' || true)"
        ((ready == NODES)) && return
        sleep 0.2
    done
}

start_registry() {
    mkdir -p "$DIR/registry"
    cat >"$DIR/registry.yml" <<EOF
version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $DIR/registry
  delete:
    enabled: true
http:
  addr: $(node_addr 1):5000
EOF
    setsid nsenter --net="/run/netns/$(node_ns 1)" -- \
        docker-registry serve "$DIR/registry.yml" </dev/null >"$DIR/registry.log" 2>&1 &
    echo $! >"$DIR/registry.pid"
    # Reached from the caller's namespace, as the tests will.
    until registry_answers; do
        kill -0 "$(cat "$DIR/registry.pid")" 2>/dev/null || {
            cat "$DIR/registry.log"
            return 1
        }
        sleep 0.1
    done
}

registry_answers() {
    local line
    exec 3<>"/dev/tcp/$(node_addr 1)/5000" 2>/dev/null || return 1
    printf 'GET /v2/ HTTP/1.0\r\n\r\n' >&3
    read -r -t 2 line <&3 || true
    exec 3<&-
    [[ "$line" == "HTTP/1.0 200"* || "$line" == "HTTP/1.1 200"* ]]
}

write_env() {
    local k hosts="" addrs=""
    for ((k = 1; k <= NODES; k++)); do
        hosts+="$(node_host "$k") "
        addrs+="$(node_addr "$k") "
    done
    cat >"$DIR/swarm.env" <<EOF
ENVCTL_SWARM_NAME=$NAME
ENVCTL_SWARM_MANAGER=$(node_host 1)
ENVCTL_SWARM_NODE_HOSTS="${hosts% }"
ENVCTL_SWARM_NODE_ADDRS="${addrs% }"
ENVCTL_SWARM_REGISTRY=$(node_addr 1):5000
EOF
}

# What the swarm costs: time per step, and the memory of its processes right after set-up.
report_cost() {
    local total_ms="$1" k pid rss=0 count=0 kb
    for ((k = 1; k <= NODES; k++)); do
        for pid in $(ip netns pids "$(node_ns "$k")" 2>/dev/null); do
            kb="$(awk '/^VmRSS:/ {print $2}' "/proc/$pid/status" 2>/dev/null || true)"
            [[ -n "$kb" ]] || continue
            rss=$((rss + kb))
            count=$((count + 1))
        done
    done
    echo "swarm $NAME: $NODES nodes up in $((total_ms / 1000)).$(printf %03d $((total_ms % 1000)))s," \
        "$((rss / 1024)) MiB resident in $count processes; manager $(node_host 1)," \
        "nodes $PREFIX.11-$((10 + NODES)), registry $(node_addr 1):5000" >&2
    local s
    for s in "${STEPS[@]}"; do
        echo "  $s" >&2
    done
}

# --- down --------------------------------------------------------------------------------

down() {
    names "${1:-}"
    local nodes k
    nodes="$(cat "$DIR/nodes" 2>/dev/null || echo 9)"
    PREFIX="$(cat "$DIR/prefix" 2>/dev/null || echo 10.213.255)"
    # The watcher, unless it is the one tearing down.
    local watcher
    watcher="$(cat "$DIR/watcher.pid" 2>/dev/null || true)"
    if [[ -n "$watcher" && "$watcher" != "$$" && "$watcher" != "${WATCHER:-}" ]]; then
        kill "$watcher" 2>/dev/null || true
    fi
    stop_pid "$DIR/registry.pid" 5
    stop_engines "$nodes"
    for ((k = 1; k <= nodes; k++)); do
        ip netns del "$(node_ns "$k")" 2>/dev/null || true
    done
    ip link del "$HOST_IF" 2>/dev/null || true
    ip netns del "$HUB" 2>/dev/null || true
    # Mounts of the caller's namespace under the swarm's directory (none are expected: the
    # engines' mounts live and die in their own mount namespaces).
    local mount
    for mount in $(awk -v d="$DIR" 'index($5, d) == 1 {print $5}' /proc/self/mountinfo | sort -r); do
        umount -l "$mount" 2>/dev/null || true
    done
    rm -rf "$DIR" 2>/dev/null || { sleep 1; rm -rf "$DIR" 2>/dev/null || true; }
    leftovers "$nodes"
}

# SIGTERM to the process in PIDFILE, SIGKILL after LIMIT seconds.
stop_pid() {
    local pidfile="$1" limit="$2" pid i
    pid="$(cat "$pidfile" 2>/dev/null || true)"
    [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null || return 0
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < limit * 10; i++)); do
        kill -0 "$pid" 2>/dev/null || return 0
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
}

# SIGTERM to every node's dockerd at once (each stops its containers and its containerd),
# SIGKILL to whatever is left after 30 s, then the nodes' cgroups.
stop_engines() {
    local nodes="$1" k pid pids=() i
    for ((k = 1; k <= nodes; k++)); do
        pid="$(cat "$(node_dir "$k")/engine.pid" 2>/dev/null || true)"
        [[ -n "$pid" ]] && kill -TERM "$pid" 2>/dev/null && pids+=("$pid")
    done
    for ((i = 0; i < 300; i++)); do
        alive=0
        for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
        ((alive)) || break
        sleep 0.1
    done
    for ((k = 1; k <= nodes; k++)); do
        kill_node "$k"
    done
}

# Kills what is left of node K: containers in its cgroups, any process in its namespace; then
# removes its cgroups.
kill_node() {
    local k="$1" ns procs pid cgroup i
    ns="$(node_ns "$k")"
    for procs in /sys/fs/cgroup/*/"$ns"/*/cgroup.procs /sys/fs/cgroup/*/"$ns"/cgroup.procs; do
        [[ -e "$procs" ]] || continue
        for pid in $(cat "$procs" 2>/dev/null); do kill -KILL "$pid" 2>/dev/null || true; done
    done
    if ip netns list | grep -q "^$ns\b"; then
        for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -KILL "$pid" 2>/dev/null || true; done
    fi
    for ((i = 0; i < 50; i++)); do
        for cgroup in /sys/fs/cgroup/*/"$ns"; do
            [[ -d "$cgroup" ]] && find "$cgroup" -depth -type d -exec rmdir {} + 2>/dev/null || true
        done
        compgen -G "/sys/fs/cgroup/*/$ns" >/dev/null || break
        sleep 0.1
    done
}

# Says what is left of the swarm, if anything (exit 1).
leftovers() {
    local nodes="$1" left=() k
    ip netns list | grep -q "^$NS-" && left+=("network namespaces: $(ip netns list | grep "^$NS-" | cut -d' ' -f1 | tr '\n' ' ')")
    ip link show "$HOST_IF" >/dev/null 2>&1 && left+=("interface $HOST_IF")
    [[ -e "$DIR" ]] && left+=("directory $DIR")
    grep -q "$DIR\|/run/netns/$NS-" /proc/self/mountinfo && left+=("mounts under $DIR")
    pgrep -f -- "$DIR/" >/dev/null && left+=("processes: $(pgrep -f -- "$DIR/" | tr '\n' ' ')")
    for ((k = 1; k <= nodes; k++)); do
        compgen -G "/sys/fs/cgroup/*/$(node_ns "$k")" >/dev/null && left+=("cgroups $(node_ns "$k")")
    done
    if ((${#left[@]})); then
        printf 'swarm: could not remove all of swarm %s:\n' "$NAME" >&2
        printf '  %s\n' "${left[@]}" >&2
        return 1
    fi
    echo "swarm $NAME: removed" >&2
}

# --- internal ----------------------------------------------------------------------------

# Tears the swarm down once process PID has ended (same pid and start time).
watch() {
    names "$1"
    local pid="$2" started
    started="$(start_time "$pid")"
    [[ -n "$started" ]] || started=gone
    while [[ "$(start_time "$pid")" == "$started" ]]; do
        sleep 1
    done
    WATCHER=$$ down "$NAME"
}

start_time() {
    awk '{sub(/^.*\) /, ""); print $20}' "/proc/$1/stat" 2>/dev/null || true
}

case "${1:-}" in
up) shift; up "$@" ;;
down) shift; down "$@" ;;
kill)
    names "${2:-}"
    [[ "${3:-}" =~ ^[1-9]$ && -d "$(node_dir "$3")" ]] || die "no node \`${3:-}\` in swarm $NAME"
    kill_node "$3"
    ;;
__call)
    # One step of `up`, run by `step` under `timeout` (which runs programs, not functions).
    shift
    names "$NAME"
    "$@"
    ;;
__watch) shift; watch "$@" ;;
*) usage ;;
esac
