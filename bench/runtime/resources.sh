#!/bin/sh
# shellcheck shell=dash
# resources.sh - latency of `events --stats` and `update --memory` on a running container, for each
# runtime side by side in one run (issue "Resource control", Speed). Same namespace trick and bundle
# as run.sh: one private mount namespace with the cgroup2 mount hidden, so every runtime sees v1.
#
# Usage (as root): bench/runtime/resources.sh
#   RUNTIMES="name=path ..."  default: runc and berth-runc from target/release (crun 1.8.1 has no
#                             `events`/`update` worth comparing on v1: it is left out by default)
#   WARMUP=5 RUNS=50          hyperfine warm-ups and runs
set -eu

HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
[ "$(id -u)" = 0 ] || { echo "resources.sh: needs root" >&2; exit 1; }
if [ -z "${BERTH_BENCH_NS:-}" ]; then
	export BERTH_BENCH_NS=1
	exec unshare --mount --propagation private /bin/sh -c \
		'umount -l /sys/fs/cgroup/unified 2>/dev/null; exec "$0" "$@"' "$0" "$@"
fi
RUNTIMES=${RUNTIMES:-"runc=/usr/sbin/runc berth-runc=$REPO/target/release/berth-runc"}
WARMUP=${WARMUP:-5}
RUNS=${RUNS:-50}
WORK=/run/berth-bench-res.$$
mkdir -p "$WORK"
mount -t tmpfs tmpfs "$WORK"

cleanup() {
	for spec in $RUNTIMES; do
		name=${spec%%=*}
		path=${spec#*=}
		"$path" --root "$WORK/root-$name" delete -f "res-$name" >/dev/null 2>&1 || true
		for h in /sys/fs/cgroup/*/; do
			rmdir "${h}berth-bench/res-$name" 2>/dev/null || true
		done
	done
	umount -l "$WORK" 2>/dev/null || true
	rmdir "$WORK" 2>/dev/null || true
}
trap cleanup EXIT INT TERM

cp "$(command -v busybox)" "$WORK/busybox"
events_cmds=""
update_cmds=""
for spec in $RUNTIMES; do
	name=${spec%%=*}
	path=${spec#*=}
	b=$WORK/bundle-$name
	mkdir -p "$b/rootfs/bin" "$b/rootfs/proc" "$b/rootfs/sys" "$b/rootfs/dev" "$b/rootfs/tmp"
	ln "$WORK/busybox" "$b/rootfs/bin/busybox"
	ln -s busybox "$b/rootfs/bin/sleep"
	jq --arg cg "/berth-bench/res-$name" '.process.args = ["sleep", "1000"]
		| .linux.cgroupsPath = $cg | .linux.resources.memory.limit = 104857600' \
		"$HERE/config.base.json" >"$b/config.json"
	(cd "$b" && "$path" --root "$WORK/root-$name" run -d "res-$name")
	events_cmds="$events_cmds|$path --root $WORK/root-$name events --stats res-$name"
	update_cmds="$update_cmds|$path --root $WORK/root-$name update --memory 100m res-$name"
done

echo "load: $(cut -d' ' -f1-3 /proc/loadavg)"
for row in events update; do
	eval "cmds=\$${row}_cmds"
	cmds=${cmds#|}
	# shellcheck disable=SC2154 # set by eval
	IFS='|'
	# shellcheck disable=SC2086
	set -- $cmds
	unset IFS
	hyperfine -N -w "$WARMUP" -r "$RUNS" --export-json "$WORK/$row.json" "$@" >/dev/null
	jq -r --arg row "$row" '.results[] | "\($row)\t\(.command | split(" ")[0] | split("/")[-1])\t\(.median * 1000 | . * 100 | round / 100) ms median\t\((.user + .system) * 1000 | . * 100 | round / 100) ms cpu"' "$WORK/$row.json"
done
echo "load: $(cut -d' ' -f1-3 /proc/loadavg)"
