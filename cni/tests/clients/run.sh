#!/bin/bash
# Runs one client scenario (podman.sh, containerd.sh) in a fresh network + mount namespace:
#   bash run.sh SCENARIO.sh
# The environment comes from the Rust test (see mod.rs): W, PLUGIN_DIR, CONF_DIR, SHIM_LOG,
# STATE_DIR, MODE. Scenarios are serialised machine-wide (flock on /var/lib, no file made) and
# /var/lib/cni, where libcni keeps its result cache, must exist as a mount point for the
# sandbox's bind mount: it is made here when missing and removed again afterwards.
exec 2>&1
scenario=$1
exec 9</var/lib
if ! flock -w 600 9; then
    echo "FAIL: another client scenario held the lock on /var/lib for 10 minutes"
    exit 1
fi
created=
remove_made() {
    if [ -n "$created" ]; then rmdir /var/lib/cni && created=; fi
}
child=
# On TERM (the test's timeout signals the whole process group, so the scenario gets it too and
# cleans up), wait for the scenario before removing the mount point it still uses.
trap 'remove_made' EXIT
trap '[ -n "$child" ] && wait "$child"; exit 143' TERM INT
if [ ! -e /var/lib/cni ]; then
    mkdir /var/lib/cni && created=1
fi
unshare --net --mount --propagation private bash "$scenario" &
child=$!
wait "$child"
