#!/bin/bash
# Runs one client scenario (podman.sh, containerd.sh) in a fresh network + mount namespace:
#   bash run.sh SCENARIO.sh
# The environment comes from the Rust test (see mod.rs): W, PLUGIN_DIR, CONF_DIR, SHIM_LOG,
# STATE_DIR, MODE. Scenarios are serialised machine-wide (flock on /var/lib, no file made). The
# sandbox bind-mounts over /var/lib/cni (libcni's result cache) and /etc/cni/net.d (ctr's CNI
# configuration), which must exist as mount points: those missing are made here and removed
# again afterwards.
exec 2>&1
scenario=$1
exec 9</var/lib
if ! flock -w 100 9; then
    echo "FAIL: another client scenario held the lock on /var/lib for 100 s"
    exit 1
fi
made=()
remove_made() {
    local i
    for ((i = ${#made[@]} - 1; i >= 0; i--)); do rmdir "${made[$i]}"; done
    made=()
}
child=
# On TERM (the test's timeout signals the whole process group, so the scenario gets it too and
# cleans up), wait for the scenario before removing the mount points it still uses.
trap 'remove_made' EXIT
trap '[ -n "$child" ] && wait "$child"; exit 143' TERM INT
for d in /var/lib/cni /etc/cni /etc/cni/net.d; do
    if [ ! -e "$d" ]; then
        mkdir "$d" && made+=("$d")
    fi
done
unshare --net --mount --propagation private bash "$scenario" &
child=$!
wait "$child"
