#!/bin/bash
# The engine against podman, same run, same machine, `--network none` everywhere (networking has
# its own bench/network.sh): `run --rm`, `exec`, `run -d` + `rm -f`, `ps -a` with 100
# containers, 50 containers started concurrently, and the supervisor's memory per container
# (berth's monitor against podman's conmon). Both engines run inside one throwaway network
# namespace with their own roots, so nothing of either is left on the host.
#
# Usage: bench/engine.sh [RUNS]   (as root; needs podman, python3)
# The berth binary is target/release/berth (built if missing).
set -euo pipefail

RUNS=${1:-20}
HERE=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=bench/lib.sh
. "$HERE/bench/lib.sh"
BERTH=${BERTH:-$HERE/target/release/berth}
[ -x "$BERTH" ] || (cd "$HERE" && cargo build --release -p berth)

W=$(mktemp -d /var/tmp/berth-engine-bench.XXXXXX)
NS=$W/netns
CG=/berth-bench/engine
cleanup() {
    "${B[@]}" ps -aq --no-trunc 2>/dev/null | xargs -r "${B[@]}" rm -f >/dev/null 2>&1 || true
    "${P[@]}" rm -af -t 0 >/dev/null 2>&1 || true
    umount "$NS" 2>/dev/null || true
    # podman leaves overlay mounts below its root; berth's are gone with its containers.
    remove_bench_dir "$W"
    for d in /sys/fs/cgroup/*/berth-bench/engine /sys/fs/cgroup/*/berth-bench; do
        rmdir "$d" 2>/dev/null || true
    done
}
trap cleanup EXIT

touch "$NS"
unshare --net="$NS" true
nsenter --net="$NS" ip link set lo up

mkdir -p "$W/rootfs/bin"
cp /bin/busybox "$W/rootfs/bin/busybox"
for a in sh true sleep; do ln -s busybox "$W/rootfs/bin/$a"; done
tar -C "$W/rootfs" -cf "$W/rootfs.tar" .
B=(nsenter --net="$NS" "$BERTH" --root "$W/berth")
P=(nsenter --net="$NS" podman --root "$W/podman" --runroot "$W/podman-run" --cgroup-manager cgroupfs --events-backend file --runtime runc)
# The host refuses the RLIMIT_NPROC/NOFILE values podman asks for by default: lower ones.
PRUN=(--network none --ulimit nproc=4096:4096 --ulimit nofile=1024:1024)
BRUN=(--network none --cgroup-parent "$CG")
"${B[@]}" import "$W/rootfs.tar" busybox:latest >/dev/null
"${P[@]}" import "$W/rootfs.tar" localhost/busybox:latest >/dev/null 2>&1

echo "berth: $("$BERTH" version --format '{{.Client.Version}}' 2>/dev/null || echo dev); $(podman --version); runc $(runc --version | head -1 | awk '{print $3}')"
# The setup above (two image imports) leaves megabytes of dirty pages: written back while the
# first rows run, they slowed whichever engine came first. Start from a quiet disk.
sync
sleep 2
echo "load before: $(cat /proc/loadavg)"
time_cmd "berth run --rm busybox true" "${B[@]}" run --rm "${BRUN[@]}" busybox true
time_cmd "podman run --rm busybox true" "${P[@]}" run --rm "${PRUN[@]}" localhost/busybox true

"${B[@]}" run -d --name ex "${BRUN[@]}" busybox sleep 1000 >/dev/null
"${P[@]}" run -d --name ex "${PRUN[@]}" localhost/busybox sleep 1000 >/dev/null
time_cmd "berth exec ex true" "${B[@]}" exec ex true
time_cmd "podman exec ex true" "${P[@]}" exec ex true
"${B[@]}" rm -f ex >/dev/null
"${P[@]}" rm -f -t 0 ex >/dev/null

time_cmd "berth run -d sleep + rm -f" sh -c "id=\$($(printf '%q ' "${B[@]}") run -d $(printf '%q ' "${BRUN[@]}") busybox sleep 100) && $(printf '%q ' "${B[@]}") rm -f \$id"
time_cmd "podman run -d sleep + rm -f -t 0" sh -c "id=\$($(printf '%q ' "${P[@]}") run -d $(printf '%q ' "${PRUN[@]}") localhost/busybox sleep 100) && $(printf '%q ' "${P[@]}") rm -f -t 0 \$id"

# 50 containers started at once (wall time of the whole batch), then the supervisors' memory and
# `ps -a` with those 50 plus 50 more.
echo "50 concurrent run -d: berth $(wall_ms sh -c "seq 50 | xargs -P 50 -I{} $(printf '%q ' "${B[@]}") run -d --name b{} $(printf '%q ' "${BRUN[@]}") busybox sleep 1000") ms, podman $(wall_ms sh -c "seq 50 | xargs -P 50 -I{} $(printf '%q ' "${P[@]}") run -d --name p{} $(printf '%q ' "${PRUN[@]}") localhost/busybox sleep 1000") ms"
read -r bkb bn < <(rss_anon_kb "$W/berth.*container-monitor")
read -r pkb pn < <(rss_anon_kb "conmon .*$W/podman")
echo "supervisor RssAnon: berth monitor $((bkb / (bn > 0 ? bn : 1))) kB each ($bn), podman conmon $((pkb / (pn > 0 ? pn : 1))) kB each ($pn)"
for i in $(seq 51 100); do
    "${B[@]}" run -d --name b$i "${BRUN[@]}" busybox sleep 1000 >/dev/null
    "${P[@]}" run -d --name p$i "${PRUN[@]}" localhost/busybox sleep 1000 >/dev/null
done
echo "containers: berth $("${B[@]}" ps -q | wc -l), podman $("${P[@]}" ps -q | wc -l)"
time_cmd "berth ps -a (100 containers)" "${B[@]}" ps -a
time_cmd "podman ps -a (100 containers)" "${P[@]}" ps -a
echo "load after: $(cat /proc/loadavg)"
