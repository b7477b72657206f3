#!/bin/bash
# `run --rm busybox true` on Berth's default bridge vs podman's default bridge, and with no
# network at all, measured in the same run, alternating, inside one throwaway network namespace
# (so neither engine creates a bridge, veth or firewall rule in the host's namespace).
#
# Usage: bench/network.sh [RUNS]   (as root; needs podman, nft, python3)
# The berth binary is target/release/berth (built if missing).
set -euo pipefail

RUNS=${1:-20}
HERE=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=bench/lib.sh
. "$HERE/bench/lib.sh"
BERTH=${BERTH:-$HERE/target/release/berth}
[ -x "$BERTH" ] || (cd "$HERE" && cargo build --release -p berth)

W=$(mktemp -d /var/tmp/berth-net-bench.XXXXXX)
NS=$W/netns
cleanup() {
    nsenter --net="$NS" "$BERTH" --root "$W/berth" container prune -f >/dev/null 2>&1 || true
    nsenter --net="$NS" podman --root "$W/podman" --runroot "$W/podman-run" rm -af >/dev/null 2>&1 || true
    umount "$NS" 2>/dev/null || true
    # podman leaves overlay mounts below its root; berth's are gone with its containers.
    remove_bench_dir "$W"
}
trap cleanup EXIT

touch "$NS"
unshare --net="$NS" true
in_ns() { nsenter --net="$NS" "$@"; }
in_ns ip link set lo up

# One busybox image for both, built offline.
mkdir -p "$W/rootfs/bin"
cp /bin/busybox "$W/rootfs/bin/busybox"
for a in sh true sleep; do ln -s busybox "$W/rootfs/bin/$a"; done
tar -C "$W/rootfs" -cf "$W/rootfs.tar" .
B=(nsenter --net="$NS" "$BERTH" --root "$W/berth")
P=(nsenter --net="$NS" podman --root "$W/podman" --runroot "$W/podman-run" --cgroup-manager cgroupfs --events-backend file --runtime runc)
"${B[@]}" import "$W/rootfs.tar" busybox:latest >/dev/null
"${P[@]}" import "$W/rootfs.tar" localhost/busybox:latest >/dev/null 2>&1

CG=/berth-bench/net
# The host refuses the RLIMIT_NPROC/NOFILE values podman asks for by default (raising them
# fails even at the caller's own hard limit): podman gets lower ones, which are always allowed.
# The setup above (two image imports) leaves megabytes of dirty pages: written back while the
# first rows run, they slowed whichever engine came first. Start from a quiet disk.
sync
sleep 2
echo "load before: $(cat /proc/loadavg)"
for pass in 1 2; do
    echo "pass $pass ($RUNS runs each)"
    time_cmd "berth run --rm (bridge)" "${B[@]}" run --rm --cgroup-parent $CG busybox true
    time_cmd "podman run --rm (bridge)" "${P[@]}" run --rm --network bridge --ulimit nproc=4096:4096 --ulimit nofile=1024:1024 localhost/busybox true
    time_cmd "berth run --rm --network none" "${B[@]}" run --rm --network none --cgroup-parent $CG busybox true
    time_cmd "podman run --rm --network none" "${P[@]}" run --rm --network none --ulimit nproc=4096:4096 --ulimit nofile=1024:1024 localhost/busybox true
done
# 100 published ports, against none: the time of `run -d` (setup of the rules), the
# supervisor's private memory (berth's monitor, podman's conmon) and every other process the
# engine keeps per container (a per-port proxy would show here).
PRUN=(--ulimit nproc=4096:4096 --ulimit nofile=1024:1024)
# Processes living in the bench's namespace (supervisors, proxies; containers have their own).
ns_procs() {
    local want n=0
    want="net:[$(stat -L -c %i "$NS")]"
    for l in /proc/[0-9]*/ns/net; do
        [ "$(readlink "$l" 2>/dev/null)" = "$want" ] && n=$((n + 1))
    done
    echo "$n"
}
for ports in 0 100; do
    pub=()
    [ "$ports" = 100 ] && pub=(-p 20000-20099:8000-8099)
    before=$(ns_procs)
    bt=$(wall_ms "${B[@]}" run -d --name p$ports "${pub[@]}" --cgroup-parent $CG busybox sleep 1000)
    mid=$(ns_procs)
    pt=$(wall_ms "${P[@]}" run -d --name p$ports --network bridge "${pub[@]}" "${PRUN[@]}" localhost/busybox sleep 1000)
    after=$(ns_procs)
    read -r bkb _ < <(rss_anon_kb "$W/berth.*container-monitor")
    read -r pkb _ < <(rss_anon_kb "conmon .*$W/podman")
    echo "$ports published ports: run -d berth $bt ms, podman $pt ms; processes added in the namespace: berth $((mid - before)), podman $((after - mid)); supervisor RssAnon berth $bkb kB, podman $pkb kB"
    "${B[@]}" rm -f p$ports >/dev/null
    "${P[@]}" rm -f -t 0 p$ports >/dev/null
done
echo "load after: $(cat /proc/loadavg)"
# Nothing of either engine's containers is left in the namespace: Berth's table holds no port
# element once they are gone (the table and the bridge stay with the network, like podman's).
in_ns nft list tables
in_ns nft list map ip berth ports_any
"${B[@]}" network ls >/dev/null # forgets the leases of veths the kernel has removed
in_ns ip -o link | cut -d: -f2
rmdir /sys/fs/cgroup/*/berth-bench/net /sys/fs/cgroup/*/berth-bench 2>/dev/null || true
