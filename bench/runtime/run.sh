#!/bin/sh
# shellcheck shell=dash disable=SC2016 # jq/awk programs and markdown backquotes are literal
# run.sh - OCI runtime benchmark: every runtime measured side by side, in one run, on the same bundle.
#
# Usage (as root):  bench/runtime/run.sh
#   RUNTIMES="name=path ..."  runtimes to measure, in column order
#                             (default: runc, crun, and berth-runc from target/release when it runs)
#   OUT=DIR                   where the JSON/TSV results go (default /var/tmp/berth-bench/<timestamp>)
#   ROWS="run cycle ..."      subset of rows (default: all; see ALL_ROWS below)
#   WARMUP=10 RUNS=100        hyperfine warm-ups and runs for the fast rows
#   LOOP_RUNS=5               hyperfine runs of the "100 sequential runs" row
#   PASSES=2                  times each timed row is repeated (interleaved, runtime order alternating)
#   RSS_RUNS=20 MEM_TRIES=5   samples for peak RSS; tries per memory limit
# Then: bench/runtime/report.sh "$OUT" prints the markdown table.
#
# Fairness: crun 1.8.1 refuses this host's hybrid cgroup layout. Instead of wrapping crun alone
# (crun-nohybrid costs 5-8 ms per call, see ../../../shared/docs/PEERS.md), the whole benchmark re-executes
# itself in ONE private mount namespace with /sys/fs/cgroup/unified unmounted, so every runtime sees the
# same pure cgroup v1 view and pays nothing extra. The work dir is a tmpfs mounted in that namespace.
set -eu

HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)

if [ "$(id -u)" != 0 ]; then
	echo "run.sh: needs root (runtimes create namespaces and cgroups)" >&2
	exit 1
fi
if [ -z "${BERTH_BENCH_NS:-}" ]; then
	export BERTH_BENCH_NS=1
	exec unshare --mount --propagation private /bin/sh -c \
		'umount -l /sys/fs/cgroup/unified 2>/dev/null; exec "$0" "$@"' "$0" "$@"
fi
if mountpoint -q /sys/fs/cgroup/unified; then
	echo "run.sh: /sys/fs/cgroup/unified is still mounted in the benchmark namespace" >&2
	exit 1
fi

ALL_ROWS="run cycle detach exec loop seccomp rss memfloor floor"
ROWS=${ROWS:-$ALL_ROWS}
WARMUP=${WARMUP:-10}
RUNS=${RUNS:-100}
LOOP_RUNS=${LOOP_RUNS:-5}
PASSES=${PASSES:-2}
RSS_RUNS=${RSS_RUNS:-20}
MEM_TRIES=${MEM_TRIES:-5}
RUNTIMES=${RUNTIMES:-"runc=/usr/sbin/runc crun=/usr/bin/crun berth-runc=$REPO/target/release/berth-runc"}
OUT=${OUT:-/var/tmp/berth-bench/$(date +%Y%m%d-%H%M%S)}
WORK=/run/berth-bench.$$
# Docker's default capability set (moby oci/caps/defaults.go), for the seccomp row.
DOCKER_CAPS='["CAP_CHOWN","CAP_DAC_OVERRIDE","CAP_FSETID","CAP_FOWNER","CAP_MKNOD","CAP_NET_RAW",
 "CAP_SETGID","CAP_SETUID","CAP_SETFCAP","CAP_SETPCAP","CAP_NET_BIND_SERVICE","CAP_SYS_CHROOT",
 "CAP_KILL","CAP_AUDIT_WRITE"]'

for tool in hyperfine jq /usr/bin/time busybox; do
	command -v "$tool" >/dev/null || {
		echo "run.sh: $tool is missing (apt-get install hyperfine jq time busybox-static)" >&2
		exit 1
	}
done

mkdir -p "$OUT" "$WORK"
mount -t tmpfs -o mode=0700 berth-bench "$WORK"
trap '"$HERE/cleanup.sh" "$WORK"' EXIT
trap 'exit 130' INT TERM
mkdir -p "$WORK/bin" "$WORK/state" "$WORK/b"

log() { echo "== $*" >&2; }
load() { cut -d' ' -f1-3 /proc/loadavg; }

# --- bundles: one busybox-static rootfs per bundle (hard links, tmpfs), same config for every runtime
BUSYBOX=$(command -v busybox)
make_bundle() { # NAME JQ_FILTER [JQ_ARGS...]
	local name filter b applet
	name=$1 filter=$2
	shift 2
	b="$WORK/b/$name"
	mkdir -p "$b/rootfs/bin" "$b/rootfs/proc" "$b/rootfs/sys" "$b/rootfs/dev" "$b/rootfs/tmp"
	ln "$WORK/busybox" "$b/rootfs/bin/busybox"
	for applet in true sh sleep hostname; do ln -s busybox "$b/rootfs/bin/$applet"; done
	jq --arg cg "/berth-bench/$name" "$@" ".linux.cgroupsPath = \$cg | $filter" \
		"$HERE/config.base.json" >"$b/config.json"
}
cp "$BUSYBOX" "$WORK/busybox"
make_bundle plain '.'
make_bundle sleep '.process.args = ["/bin/sleep", "1000000"]'
# The admission check: a runtime is measured only if its `run` really ran the container: the output
# shows the config's hostname (new UTS namespace, busybox rootfs) and the exit code is the container's.
# A stub that exits 0 without running anything would otherwise "win" every row.
make_bundle smoke '.process.args = ["/bin/sh", "-c", "echo smoke-$(hostname); exit 7"]'

# The seccomp row: Docker's default profile. Prefer Berth's own profile file once it exists (another
# work area writes it); else the copy of moby's default that containers-common (podman) installs.
SECCOMP_SRC=""
for p in "$REPO/crates/berth-runtime/profiles/default-seccomp.json" /usr/share/containers/seccomp.json; do
	if [ -f "$p" ]; then SECCOMP_SRC=$p; break; fi
done
if [ -n "$SECCOMP_SRC" ]; then
	jq --argjson caps "$DOCKER_CAPS" --arg arch amd64 -f "$HERE/seccomp-to-oci.jq" "$SECCOMP_SRC" \
		>"$WORK/seccomp.json"
	make_bundle seccomp '.process.capabilities = {bounding: $caps, effective: $caps, permitted: $caps}
		| .linux.seccomp = $sc[0]' --argjson caps "$DOCKER_CAPS" --slurpfile sc "$WORK/seccomp.json"
fi

# --- runtimes: keep only those that exist and can `run` the plain bundle
RT_NAMES=""
for spec in $RUNTIMES; do
	name=${spec%%=*} path=${spec#*=}
	if [ ! -x "$path" ]; then
		echo "SKIPPING $name: $path does not exist or is not executable" >&2
		continue
	fi
	ln -s "$path" "$WORK/bin/$name"
	mkdir -p "$WORK/state/$name"
	rc=0
	got=$(timeout 60 "$WORK/bin/$name" --root "$WORK/state/$name" run --bundle "$WORK/b/smoke" \
		"smoke-$name" 2>&1 </dev/null) || rc=$?
	if [ "$rc" != 7 ] || [ "$got" != smoke-bench ]; then
		echo "SKIPPING $name: \`$name run\` of the check bundle (sh -c 'echo smoke-\$(hostname); exit 7')" \
			"gave exit $rc and output: $(echo "$got" | tail -n 3)" >&2
		"$HERE/ctl.sh" delete "$WORK/bin/$name" "$WORK/state/$name" - "smoke-$name"
		rm -f "$WORK/bin/$name"
		continue
	fi
	RT_NAMES="$RT_NAMES${RT_NAMES:+,}$name"
done
if [ -z "$RT_NAMES" ]; then
	echo "run.sh: no runtime could run the bundle" >&2
	exit 1
fi
log "runtimes: $RT_NAMES; results in $OUT"

# --- metadata for report.sh
{
	echo "date	$(date +%Y-%m-%d)"
	echo "kernel	$(uname -r)"
	echo "cpus	$(nproc)"
	echo "runtimes	$RT_NAMES"
	echo "seccomp_profile	${SECCOMP_SRC:-none}"
	if [ -f "$WORK/seccomp.json" ]; then
		echo "seccomp_names	$(jq '[.syscalls[].names[]] | length' "$WORK/seccomp.json")"
	fi
	echo "load_start	$(load)"
	echo "warmup_runs	$WARMUP/$RUNS"
	echo "passes	$PASSES"
	echo "rss_runs	$RSS_RUNS"
	echo "mem_tries	$MEM_TRIES"
	for name in $(echo "$RT_NAMES" | tr , ' '); do
		echo "version_$name	$("$WORK/bin/$name" --version | head -n 1)"
	done
} >"$OUT/meta.tsv"
cp "$WORK/b/plain/config.json" "$OUT/config.plain.json"
if [ -f "$WORK/b/seccomp/config.json" ]; then cp "$WORK/b/seccomp/config.json" "$OUT/config.seccomp.json"; fi

RT="$WORK/bin/{rt}"
ROOT="$WORK/state/{rt}"
CTL="/bin/sh $HERE/ctl.sh"

# hf ROW [hyperfine args...]: one hyperfine call, all runtimes as the parameter {rt}, load recorded
hf() {
	local row name c order
	row=$1
	shift
	# odd passes run the runtimes in the given order, even passes reversed: a load change during the
	# row then hurts each runtime in turn instead of always the last one
	order=$RT_NAMES
	if [ $((PASS % 2)) -eq 0 ]; then
		order=$(echo "$RT_NAMES" | tr , '\n' | tac | paste -sd ,)
	fi
	log "$row pass $PASS/$PASSES (load $(load))"
	load >>"$OUT/$row.load"
	# -i: one runtime failing a row must not cost the others their numbers; report.sh shows a
	# runtime with any non-zero exit code as failed instead of timing its failures
	if ! hyperfine -N -i --style basic --export-json "$OUT/$row.p$PASS.json" -L rt "$order" "$@" >&2; then
		echo "ROW FAILED: $row (see hyperfine output above)" >&2
		rm -f "$OUT/$row.p$PASS.json"
	fi
	load >>"$OUT/$row.load"
	# a failed row may leave containers and cgroups: start the next row clean
	for name in $(echo "$RT_NAMES" | tr , ' '); do
		for c in "$WORK/state/$name"/*; do
			if [ -d "$c" ]; then
				"$HERE/ctl.sh" delete "$WORK/bin/$name" "$WORK/state/$name" - "$(basename "$c")"
			fi
		done
	done
}

# peak RSS: GNU time's %M is wait4()'s ru_maxrss, the max over the runtime process and the children it
# reaped (runc's re-exec'd `runc init`, the container's /bin/true): the memory a `run` costs at its peak.
rss_row() {
	local name i fails
	log "rss (load $(load))"
	: >"$OUT/rss.tsv"
	for name in $(echo "$RT_NAMES" | tr , ' '); do
		i=0 fails=0
		: >"$WORK/rss.$name"
		while [ "$i" -lt "$RSS_RUNS" ]; do
			if ! /usr/bin/time -f %M -a -o "$WORK/rss.$name" "$WORK/bin/$name" \
				--root "$WORK/state/$name" run --bundle "$WORK/b/plain" "rss-$name" </dev/null; then
				fails=$((fails + 1))
				"$HERE/ctl.sh" delete "$WORK/bin/$name" "$WORK/state/$name" - "rss-$name"
			fi
			i=$((i + 1))
		done
		# columns: name, min, median, max KiB, failed runs (a failed run's RSS is not a run's RSS)
		grep -E '^[0-9]+$' "$WORK/rss.$name" | sort -n | awk -v n="$name" -v f="$fails" '{ v[NR] = $1 }
			END { printf "%s\t%d\t%d\t%d\t%d\n", n, v[1], v[int((NR + 1) / 2)], v[NR], f }' >>"$OUT/rss.tsv"
	done
}

# smallest memory.limit a container still starts under: a limit passes when MEM_TRIES of MEM_TRIES
# `run`s of /bin/true succeed; bisection over these steps assumes more memory never hurts.
MEM_STEPS_KIB="256 384 512 768 1024 1536 2048 3072 4096 6144 8192 12288 16384"
mem_ok() { # NAME KIB -> 0 when all tries succeed; appends the tally to memfloor.log
	local name kib b ok t
	name=$1 kib=$2
	b="$WORK/b/mem-$kib"
	[ -d "$b" ] || make_bundle "mem-$kib" '.linux.resources.memory = {limit: ($kib | tonumber * 1024)}' \
		--arg kib "$kib"
	ok=0 t=0
	while [ "$t" -lt "$MEM_TRIES" ]; do
		if timeout 60 "$WORK/bin/$name" --root "$WORK/state/$name" run --bundle "$b" "mem-$name" \
			</dev/null >/dev/null 2>&1; then
			ok=$((ok + 1))
		fi
		"$HERE/ctl.sh" delete "$WORK/bin/$name" "$WORK/state/$name" - "mem-$name"
		t=$((t + 1))
	done
	echo "$name	$kib	$ok/$MEM_TRIES" >>"$OUT/memfloor.log"
	[ "$ok" -eq "$MEM_TRIES" ]
}
memfloor_row() {
	local name n lo hi mid
	log "memfloor (load $(load))"
	: >"$OUT/memfloor.tsv"
	: >"$OUT/memfloor.log"
	# shellcheck disable=SC2086 # split into the step list on purpose
	set -- $MEM_STEPS_KIB
	n=$#
	for name in $(echo "$RT_NAMES" | tr , ' '); do
		# invariant: step index hi passes, lo fails (lo = -1: nothing below 256 KiB is tried)
		lo=-1 hi=$((n - 1))
		if ! mem_ok "$name" "$(eval echo "\${$n}")"; then
			printf '%s\t>%s\n' "$name" "$(eval echo "\${$n}")" >>"$OUT/memfloor.tsv"
			continue
		fi
		while [ $((hi - lo)) -gt 1 ]; do
			mid=$(((lo + hi) / 2))
			if mem_ok "$name" "$(eval echo "\${$((mid + 1))}")"; then hi=$mid; else lo=$mid; fi
		done
		kib=$(eval echo "\${$((hi + 1))}")
		printf '%s\t%s\t%s\n' "$name" "$kib" "$(mem_applied "$name" "$kib")" >>"$OUT/memfloor.tsv"
	done
}
# A runtime that ignored linux.resources.memory would "pass" every limit: check, with a sleeper at the
# floor limit, that the host's memory.limit_in_bytes of the container's cgroup says KIB.
mem_applied() { # NAME KIB -> "yes BYTES", "no BYTES" or "unverified REASON"
	local name kib b cg got
	name=$1 kib=$2
	b="$WORK/b/memchk-$kib"
	[ -d "$b" ] || make_bundle "memchk-$kib" '.process.args = ["/bin/sleep", "1000000"]
		| .linux.resources.memory = {limit: ($kib | tonumber * 1024)}' --arg kib "$kib"
	cg=/sys/fs/cgroup/memory/berth-bench/memchk-$kib
	if ! "$HERE/ctl.sh" start-sleeper "$WORK/bin/$name" "$WORK/state/$name" "$b" "memchk-$name"; then
		echo "unverified sleeper-did-not-start"
	elif ! got=$(cat "$cg/memory.limit_in_bytes" 2>/dev/null); then
		echo "unverified no-cgroup-at-$cg"
	elif [ "$got" -eq $((kib * 1024)) ]; then
		echo "yes $got"
	else
		echo "no $got"
	fi
	"$HERE/ctl.sh" delete "$WORK/bin/$name" "$WORK/state/$name" - "memchk-$name"
}

# The timed rows run PASSES times, interleaved (all rows, then all rows again): the machine is shared and
# its load drifts, and report.sh pools the passes and shows how far the per-pass ratios spread.
# RSS and the memory floor do not depend on load: they run once.
PASS=1
while [ "$PASS" -le "$PASSES" ]; do
	for row in $ROWS; do
		case "$row" in
		run) hf run -w "$WARMUP" -r "$RUNS" "$RT --root $ROOT run --bundle $WORK/b/plain r-{rt}" ;;
		cycle) hf cycle -w "$WARMUP" -r "$RUNS" "$CTL cycle $RT $ROOT $WORK/b/plain c-{rt}" ;;
		detach) hf detach -w "$WARMUP" -r "$RUNS" "$CTL detach $RT $ROOT $WORK/b/plain d-{rt}" ;;
		exec)
			hf exec -w "$WARMUP" -r "$RUNS" \
				--setup "$CTL start-sleeper $RT $ROOT $WORK/b/sleep e-{rt}" \
				--cleanup "$CTL delete $RT $ROOT - e-{rt}" \
				"$RT --root $ROOT exec e-{rt} /bin/true"
			;;
		loop) hf loop -w 1 -r "$LOOP_RUNS" "$CTL loop $RT $ROOT $WORK/b/plain l-{rt} 100" ;;
		seccomp)
			if [ -d "$WORK/b/seccomp" ]; then
				hf seccomp -w "$WARMUP" -r "$RUNS" "$RT --root $ROOT run --bundle $WORK/b/seccomp s-{rt}"
			else
				echo "SKIPPING row seccomp: no seccomp profile found" >&2
			fi
			;;
		rss) if [ "$PASS" -eq 1 ]; then rss_row; fi ;;
		memfloor) if [ "$PASS" -eq 1 ]; then memfloor_row; fi ;;
		floor)
			# no runtime: the namespaces of the config (minus cgroups, mounts) + chroot + /bin/true;
			# and the cost of the ctl.sh wrapper that the multi-step rows pay once per sample
			if [ "$PASS" -eq 1 ]; then
				log "floor (load $(load))"
				load >"$OUT/floor.load"
				hyperfine -N --style basic --export-json "$OUT/floor.json" -w "$WARMUP" -r "$RUNS" \
					"unshare --mount --uts --ipc --net --pid --fork chroot $WORK/b/plain/rootfs /bin/true" \
					"$CTL noop - - - -" >&2 ||
					echo "ROW FAILED: floor" >&2
			fi
			;;
		*) echo "run.sh: unknown row $row (rows: $ALL_ROWS)" >&2 ;;
		esac
	done
	PASS=$((PASS + 1))
done
echo "load_end	$(load)" >>"$OUT/meta.tsv"
log "done; results in $OUT"
echo "$OUT"
