# The podman scenarios (Debian's podman 4.3, CNI backend) against the plugin in $PLUGIN_DIR and
# the network in $CONF_DIR/berthnet.conflist. Started by run.sh in a fresh net + mount namespace.
. "$(dirname "${BASH_SOURCE[0]}")/sandbox.sh"

sandbox_up

# A private podman configuration: nothing global is read or written.
mkdir -p "$W/podman/tmp" "$W/podman/run" "$W/podman/root"
cat >"$W/podman/containers.conf" <<CONF
[containers]
netns = "bridge"
cgroups = "disabled"
default_ulimits = ["nofile=4096:4096", "nproc=4096:4096"]
[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
runtime = "crun"
tmp_dir = "$W/podman/tmp"
[network]
network_backend = "cni"
cni_plugin_dirs = ["$PLUGIN_DIR"]
network_config_dir = "$CONF_DIR"
CONF
cat >"$W/podman/storage.conf" <<CONF
[storage]
driver = "vfs"
runroot = "$W/podman/run"
graphroot = "$W/podman/root"
CONF
export CONTAINERS_CONF=$W/podman/containers.conf CONTAINERS_STORAGE_CONF=$W/podman/storage.conf

P() { timeout 60 podman "$@"; }
OUTSIDE_HTTPD=
cleanup() {
    timeout 60 podman rm -af -t 0 >/dev/null 2>&1
    [ -n "$OUTSIDE_HTTPD" ] && kill "$OUTSIDE_HTTPD" 2>/dev/null
}
trap cleanup EXIT
trap 'exit 143' TERM INT

# run_httpd NAME [FLAGS…]: a detached busybox httpd on port 80 (flags before --rootfs: it takes
# no value, the next argument is the rootfs).
run_httpd() {
    local name=$1
    shift
    P run -d --name "$name" --network berthnet "$@" --rootfs "$R" httpd -f -p 80 -h /www
}
ip_of() { P inspect -f '{{.NetworkSettings.Networks.berthnet.IPAddress}}' "$1" 2>/dev/null; }
id_of() { P inspect -f '{{.Id}}' "$1" 2>/dev/null; }

# 1. An address from the subnet, seen by podman inspect and inside the container.
if out=$(run_httpd a 2>&1); then
    A_IP=$(ip_of a)
    A_ID=$(id_of a)
    inside=$(P exec a ip -4 -o addr show eth0 2>&1)
    if in_subnet "$A_IP" && [[ $inside == *"inet $A_IP/24"* ]]; then
        pass "podman run --network berthnet: container a got $A_IP (podman inspect), eth0 inside has $A_IP/24"
    else
        fail "podman run --network berthnet: inspect says '$A_IP', inside: $inside"
    fi
else
    die "podman run --network berthnet a: $out"
fi

# 1b. A chosen address and MAC and a network alias (the ips, mac and aliases capabilities).
FIX_IP=10.89.0.50
FIX_MAC=02:42:0a:59:00:32
if out=$(run_httpd fixed --ip "$FIX_IP" --mac-address "$FIX_MAC" --network-alias webalias 2>&1); then
    FIX_ID=$(id_of fixed)
    got=$(ip_of fixed)
    inside=$(P exec fixed ip -o addr show eth0 2>&1; P exec fixed ip -o link show eth0 2>&1)
    if [ "$got" = "$FIX_IP" ] && [[ $inside == *"inet $FIX_IP/24"* ]] && [[ $inside == *"link/ether $FIX_MAC"* ]]; then
        pass "podman run --ip $FIX_IP --mac-address $FIX_MAC --network-alias webalias: eth0 inside has both"
    else
        fail "podman run --ip/--mac-address: inspect says '$got', inside: $(tr '\n' ' ' <<<"$inside")"
    fi
else
    fail "podman run --ip $FIX_IP --mac-address $FIX_MAC: $out"
fi

# 2. A published port reached from outside, from the sandbox netns on 127.0.0.1 and on its own
#    address.
if out=$(run_httpd web -p 8080:80 2>&1); then
    WEB_IP=$(ip_of web)
    WEB_ID=$(id_of web)
    in_subnet "$WEB_IP" || fail "podman run -p 8080:80: web got '$WEB_IP'"
    for where in "outside 192.0.2.1" "- 127.0.0.1" "- 192.0.2.1"; do
        set -- $where
        if [ "$1" = outside ]; then
            from="the outside netns"
            cmd=(ip netns exec outside)
        else
            from="the sandbox netns"
            cmd=()
        fi
        if fetch_ok "${cmd[@]}" "$2" 8080; then
            pass "podman run -p 8080:80: httpd in web ($WEB_IP) reached at $2:8080 from $from"
        else
            fail "podman run -p 8080:80: httpd in web ($WEB_IP) not reached at $2:8080 from $from"
        fi
    done
else
    fail "podman run -p 8080:80 web: $out"
fi

# 2b. The leak checks' control: while web runs, its address is in the ruleset (the published
#     port) and the state names it — what the checks after removal must no longer find.
if [ -n "${WEB_ID:-}" ]; then
    in_nft=$(nft list ruleset 2>/dev/null | grep -wF -- "$WEB_IP" | head -2 | tr -s ' \t\n' ' ')
    in_state=$(grep -rlF -- "$WEB_ID" "$STATE_DIR" 2>/dev/null | sed "s|^$STATE_DIR/||" | tr '\n' ' ')
    if [ -n "$in_nft" ] && [ -n "$in_state" ]; then
        pass "while web runs: $WEB_IP in the nft ruleset ($in_nft) and its id in stateDir ($in_state)"
    else
        fail "while web runs: nft '$in_nft', state '$in_state' (the leak checks would prove nothing)"
    fi
fi

# 3. Two containers reach each other by address.
if [ -n "${WEB_IP:-}" ]; then
    if fetch_ok podman exec -i a "$WEB_IP" 80 && fetch_ok podman exec -i web "$A_IP" 80; then
        pass "containers reach each other: a -> http://$WEB_IP/ and web -> http://$A_IP/"
    else
        fail "containers do not reach each other (a -> web $WEB_IP, web -> a $A_IP)"
    fi
fi

# 3b. The published port from containers: another one (a -> 192.0.2.1:8080) and web itself
#     (hairpin); and egress: a reaches a server in the outside netns, which has no route back
#     to the subnet (so only through the masquerade).
if [ -n "${WEB_IP:-}" ]; then
    for c in a web; do
        if fetch_ok podman exec -i "$c" 192.0.2.1 8080; then
            pass "published port 8080 reached from container $c at 192.0.2.1:8080$([ $c = web ] && echo ' (hairpin)')"
        else
            fail "published port 8080 not reached from container $c at 192.0.2.1:8080"
        fi
    done
fi
mkdir -p "$W/outside-www" && echo berth-ok >"$W/outside-www/index.html"
ip netns exec outside "$BB" httpd -f -p 192.0.2.2:8081 -h "$W/outside-www" &
OUTSIDE_HTTPD=$!
if fetch_ok podman exec -i a 192.0.2.2 8081; then
    pass "egress: container a reached 192.0.2.2:8081 in the outside netns (no route back: masqueraded)"
else
    fail "egress: container a did not reach 192.0.2.2:8081 in the outside netns"
fi

# 3c. podman stop + start: the network is torn down and set up again; the port still works.
if [ -n "${WEB_ID:-}" ]; then
    if out=$(P stop -t 0 web 2>&1) && out=$(P start web 2>&1); then
        WEB_IP2=$(ip_of web)
        if in_subnet "$WEB_IP2" && fetch_ok ip netns exec outside 192.0.2.1 8080; then
            pass "podman stop + start web: address $WEB_IP2 (was $WEB_IP), 192.0.2.1:8080 reached from the outside netns again"
        else
            fail "podman stop + start web: address '$WEB_IP2', port 8080 not reached from outside"
        fi
        [ "$WEB_IP2" = "$WEB_IP" ] || { nft list ruleset 2>/dev/null | grep -qwF -- "$WEB_IP" &&
            fail "podman stop + start web: the old address $WEB_IP is still in the nft ruleset"; }
        WEB_IP=$WEB_IP2
    else
        fail "podman stop + start web: $out"
    fi
fi

# 4. podman rm -f leaves nothing behind.
if out=$(P rm -f -t 0 a web fixed 2>&1); then
    no_leak "podman rm -f a ($A_IP)" "$A_ID" "$A_IP"
    [ -n "${WEB_ID:-}" ] && no_leak "podman rm -f web ($WEB_IP, port 8080)" "$WEB_ID" "$WEB_IP"
    [ -n "${FIX_ID:-}" ] && no_leak "podman rm -f fixed ($FIX_IP)" "$FIX_ID" "$FIX_IP"
    if [ -n "${WEB_ID:-}" ] && http_get 127.0.0.1 8080 | grep -qx berth-ok; then
        fail "podman rm -f web: port 8080 still answers"
    fi
    bad=$(records DEL | grep -v ' rc=0 ')
    [ -z "$bad" ] || fail "podman rm -f: a DEL failed: $bad"
else
    fail "podman rm -f a web fixed: $out"
fi

# 5. 20 containers started at once: 20 distinct addresses, all reachable, then all removed.
N=20
start=$(date +%s)
pids=()
for i in $(seq 1 $N); do
    (run_httpd "bulk$i" >"$W/bulk$i.out" 2>&1 || echo "bulk$i: $(tail -3 "$W/bulk$i.out")") &
    pids+=($!)
done
wait "${pids[@]}"
note "$N concurrent podman run -d took $(($(date +%s) - start)) s"
ips=()
ids=()
for i in $(seq 1 $N); do
    ips+=("$(ip_of "bulk$i")")
    ids+=("$(id_of "bulk$i")")
done
good=0
for ip in "${ips[@]}"; do in_subnet "$ip" && good=$((good + 1)); done
distinct=$(printf '%s\n' "${ips[@]}" | grep -v '^$' | sort -u | wc -l)
if [ "$good" = $N ] && [ "$distinct" = $N ]; then
    pass "$N concurrent podman run -d: $N distinct addresses (${ips[*]})"
else
    fail "$N concurrent podman run -d: $good in the subnet, $distinct distinct: ${ips[*]}"
fi
reached=0
for ip in "${ips[@]}"; do
    [ -n "$ip" ] || continue
    if fetch_ok "$ip" 80; then reached=$((reached + 1)); else note "bulk $ip not reached"; fi
done
if [ "$reached" = $N ]; then
    pass "$N concurrent containers: all reached from the sandbox netns (http://<addr>/)"
else
    fail "$N concurrent containers: $reached of $N reached"
fi
names=$(seq -f 'bulk%g' 1 $N)
if out=$(P rm -f -t 0 $names 2>&1); then
    left=""
    for i in $(seq 0 $((N - 1))); do
        l=$(leaks "${ids[$i]}" "${ips[$i]}")
        [ -z "$l" ] || left="$left [bulk$((i + 1)) ${ips[$i]}: $l]"
    done
    if [ -z "$left" ]; then
        pass "$N containers removed (podman rm -f): no link on $BRIDGE, no address in the nft ruleset, no state naming any of them"
    else
        fail "$N containers removed, left behind:$left"
    fi
else
    fail "podman rm -f bulk1..$N: $out"
fi
if [ -d "$STATE_DIR/endpoints" ]; then
    l=$(find "$STATE_DIR/endpoints" -type f)
    [ -z "$l" ] && pass "no endpoint record left in stateDir/endpoints" || fail "endpoint records left: $l"
fi

# 6. The network as podman sees it.
ls_out=$(P network ls --format '{{.Name}} {{.Driver}}' 2>&1)
if grep -q '^berthnet ' <<<"$ls_out"; then
    pass "podman network ls lists berthnet (driver $(awk '$1=="berthnet"{print $2}' <<<"$ls_out"))"
else
    fail "podman network ls: $ls_out"
fi
if insp=$(P network inspect berthnet 2>&1) && grep -q '"name": "berthnet"' <<<"$insp"; then
    pass "podman network inspect berthnet: $(jq -c '.[0] | {name, driver, subnets, network_interface}' <<<"$insp" 2>/dev/null)"
else
    fail "podman network inspect berthnet: $insp"
fi

finish
