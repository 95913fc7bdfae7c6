# Shared set-up of the client scenarios, sourced by podman.sh and containerd.sh, which run.sh
# starts under `unshare --net --mount --propagation private` (the recipe in
# ../shared/CNI-CLIENTS.md): everything below happens in that fresh network namespace and private
# mount namespace; nothing of the machine's own network namespace or firewall is touched.
#
# From the Rust test (mod.rs): W (work dir), PLUGIN_DIR (logging shims named like the plugins),
# CONF_DIR (berthnet.conflist), SHIM_LOG, STATE_DIR (berth-cni's stateDir, or host-local's
# dataDir's parent with the reference plugins), MODE (berth | reference).
set -u
FAILED=0
BB=/bin/busybox
R=$W/rootfs
BRIDGE=berth0
SUBNET_RE='^10\.89\.0\.([0-9]+)$'

pass() { echo "PASS: $*"; }
fail() {
    echo "FAIL: $*"
    FAILED=1
}
note() { echo "  .. $*"; }
die() {
    fail "$*"
    exit 1
}

sandbox_up() {
    ip link set lo up || die "lo up"
    # A sysfs of this netns on /sys (crun reads /sys/class/net), the cgroup tree kept under it.
    mkdir -p "$W/.cg"
    mount --rbind /sys/fs/cgroup "$W/.cg" &&
        mount -t sysfs sysfs /sys &&
        mount --rbind "$W/.cg" /sys/fs/cgroup &&
        umount -l "$W/.cg" || die "sysfs/cgroup remount"
    # crun: "cgroups in hybrid mode not supported" while the v2 hierarchy is mounted too.
    if mountpoint -q /sys/fs/cgroup/unified; then umount -l /sys/fs/cgroup/unified; fi
    mount -t tmpfs tmpfs /run && mkdir -p /run/netns /run/lock || die "tmpfs /run"
    # libcni's result cache (podman 4.3 and ctr 1.6 cannot move it); run.sh made the mount point.
    mkdir -p "$W/varlibcni"
    mount --bind "$W/varlibcni" /var/lib/cni || die "bind /var/lib/cni"
    # The outside world: a netns joined to this one by a veth (192.0.2.1 here, .2 there).
    ip netns add outside &&
        ip link add bx-in type veth peer name bx-out netns outside &&
        ip addr add 192.0.2.1/24 dev bx-in && ip link set bx-in up &&
        ip -n outside addr add 192.0.2.2/24 dev bx-out && ip -n outside link set bx-out up &&
        ip -n outside link set lo up || die "outside netns"
    make_rootfs
}

# A busybox rootfs (Debian's busybox-static, one symlink per applet) and a page for httpd.
make_rootfs() {
    mkdir -p "$R/bin" "$R/www" "$R/etc" "$R/tmp" "$R/proc" "$R/sys" "$R/dev" "$R/root" || die rootfs
    cp "$BB" "$R/bin/busybox" || die "copy busybox"
    local a
    for a in $("$BB" --list); do
        [ "$a" = busybox ] || ln -sf busybox "$R/bin/$a"
    done
    echo berth-ok >"$R/www/index.html"
    echo 'root:x:0:0:root:/root:/bin/sh' >"$R/etc/passwd"
    echo 'root:x:0:' >"$R/etc/group"
}

# http_get [CMD…] ADDR PORT: an HTTP GET of / with busybox nc (Debian's static busybox wget
# crashes here: glibc's NSS in a static binary), printing the response. CMD… runs the nc: e.g.
# `ip netns exec outside`, `podman exec a`; none for this (the sandbox's) netns.
http_get() {
    local n=$#
    local addr=${@:n-1:1} port=${@:n:1}
    printf 'GET / HTTP/1.0\r\nHost: %s\r\n\r\n' "$addr" |
        timeout 10 "${@:1:n-2}" "${NC:-$BB}" nc -w 5 "$addr" "$port" 2>&1
}

# fetch_ok [CMD…] ADDR PORT: the page comes (retried for up to ~10 s: httpd may be starting).
fetch_ok() {
    local i out
    for i in 1 2 3 4 5 6 7 8 9 10; do
        out=$(http_get "$@")
        grep -qx berth-ok <<<"$out" && return 0
        sleep 1
    done
    note "GET http://${*: -2:1}:${*: -1}/ ${*:1:$#-2}: $(tr -d '\r' <<<"$out" | tr '\n' ' ')"
    return 1
}

# in_subnet ADDR
in_subnet() { [[ $1 =~ $SUBNET_RE ]] && [ "${BASH_REMATCH[1]}" -ge 2 ] && [ "${BASH_REMATCH[1]}" -le 254 ]; }

# The leaks an attachment can leave: a link on the bridge, its address in the ruleset (a
# published port's map element, a rule), a state file naming the container id, an address claim
# named by the address.
# leaks ID ADDR [IFINDEX]: prints what is left (nothing when clean). With IFINDEX (the host end
# of the container's veth, when other attachments are alive) only that link counts, else any
# link on the bridge.
leaks() {
    local id=$1 addr=$2 idx=${3:-} l
    if [ -n "$idx" ]; then
        l=$(ip -o link show 2>/dev/null | grep "^$idx: ")
        [ -n "$l" ] && echo "link $idx left: $(echo "$l" | awk '{print $2, $8, $9}')"
    else
        l=$(ip -o link show master "$BRIDGE" 2>/dev/null)
        [ -n "$l" ] && echo "links on $BRIDGE: $(echo "$l" | awk '{print $2}' | tr '\n' ' ')"
    fi
    if [ -n "$addr" ] && nft list ruleset 2>/dev/null | grep -qwF -- "$addr"; then
        echo "$addr in nft list ruleset: $(nft list ruleset 2>/dev/null | grep -wF -- "$addr" | head -3 | tr -s ' \n' ' ')"
    fi
    if [ -d "$STATE_DIR" ]; then
        l=$({
            grep -rlF -- "$id" "$STATE_DIR"
            find "$STATE_DIR" -name "*$id*"
        } 2>/dev/null | sort -u)
        [ -n "$l" ] && echo "state naming $id: $l"
        if [ -n "$addr" ]; then
            l=$(find "$STATE_DIR" -type f | awk -F/ -v a="$addr" \
                'index($NF, a) == 1 && substr($NF, length(a) + 1) !~ /^[0-9]/')
            [ -n "$l" ] && echo "address claim for $addr: $l"
        fi
    fi
    return 0
}

# no_leak WHAT ID ADDR [IFINDEX]: a PASS or FAIL line.
no_leak() {
    local l
    l=$(leaks "$2" "$3" "${4:-}")
    if [ -z "$l" ]; then
        if [ -n "${4:-}" ]; then
            pass "$1: its veth (ifindex $4) is gone, $3 not in the nft ruleset, no state naming the container"
        else
            pass "$1: no link on $BRIDGE, $3 not in the nft ruleset, no state naming the container"
        fi
    else
        fail "$1: left behind: $l"
    fi
}

# The shim log's records: `records VERB [CONTAINERID-substring]` prints one line per matching
# record: `<plugin> <verb> rc=<rc> netns=<CNI_NETNS> id=<CNI_CONTAINERID>`.
records() {
    awk -v verb="$1" -v id="${2:-}" '
        /^@@ begin / { plugin = $3; cmd = ""; netns = ""; cid = ""; rc = ""; next }
        /^env CNI_COMMAND=/ { cmd = substr($0, 17) }
        /^env CNI_NETNS=/ { netns = substr($0, 15) }
        /^env CNI_CONTAINERID=/ { cid = substr($0, 21) }
        /^rc / { rc = $2 }
        /^@@ end/ {
            if (cmd == verb && (id == "" || index(cid, id) > 0))
                printf "%s %s rc=%s netns=%s id=%s\n", plugin, cmd, rc, netns, cid
        }' "$SHIM_LOG" 2>/dev/null
}

# The main plugin's name: berth-cni, or the first plugin of the reference conflist.
main_plugin() {
    if [ "$MODE" = berth ]; then echo berth-cni; else echo bridge; fi
}

finish() {
    if [ "$FAILED" = 0 ]; then
        echo "scenario done: all passed"
    else
        echo "scenario done: some checks FAILED"
    fi
    exit "$FAILED"
}
