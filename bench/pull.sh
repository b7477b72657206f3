#!/bin/bash
# Cold image pulls from a local registry: berth vs `podman pull` vs `skopeo copy` to an OCI dir,
# measured in the same run, runs interleaved, timed with python3 (perf_counter and wait4). Also:
# pulls with the base layers already present, and the CPU time and peak RSS of each puller
# (wait4's rusage; GNU time too when installed).
#
# Usage: bench/pull.sh [RUNS]   (as root; needs docker-registry, umoci, skopeo, podman, jq, python3)
# COLD_ONLY=1 skips the base-present and GNU time sections.
# The berth binary is target/release/berth (built if missing).
set -euo pipefail

RUNS=${1:-5}
HERE=$(cd "$(dirname "$0")/.." && pwd)
BERTH=${BERTH:-$HERE/target/release/berth}
[ -x "$BERTH" ] || (cd "$HERE" && cargo build --release -p berth)

# BENCH_TMPDIR: where the registry, the image and every store live (default /var/tmp).
W=$(mktemp -d "${BENCH_TMPDIR:-/var/tmp}/berth-pull-bench.XXXXXX")
REG_PID=
cleanup() {
    # Only the registry this script started, by PID.
    [ -n "$REG_PID" ] && kill "$REG_PID" 2>/dev/null && wait "$REG_PID" 2>/dev/null || true
    rm -rf --one-file-system "$W"
}
trap cleanup EXIT

PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat > "$W/registry.yml" <<EOF
version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $W/registry
http:
  addr: 127.0.0.1:$PORT
EOF
/usr/bin/docker-registry serve "$W/registry.yml" >/dev/null 2>&1 &
REG_PID=$!
for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break; sleep 0.1; done
REG=127.0.0.1:$PORT

# The image: busybox base, then 4 layers of generated content (random, text, many small
# files), over 100 MB unpacked. Built offline with umoci, pushed with skopeo.
echo "building the benchmark image..." >&2
cd "$W"
umoci init --layout oci >/dev/null
umoci new --image oci:bench >/dev/null
# add_layer NAME: tars directory L/NAME and appends it to the image as one layer.
add_layer() { tar -C "L/$1" -cf "L/$1.tar" . && umoci raw add-layer --image oci:bench "L/$1.tar" >/dev/null; }
mkdir -p L/base/bin L/random/data L/text/data L/small/data/small L/b64/data
cp /bin/busybox L/base/bin/busybox && ln -sf busybox L/base/bin/sh
add_layer base
umoci tag --image oci:bench base >/dev/null
head -c 40M /dev/urandom > L/random/data/random.bin                  # 40 MB, incompressible
add_layer random
seq 1 5000000 > L/text/data/numbers.txt                             # ~39 MB of text
add_layer text
for i in $(seq 1 3000); do head -c 4096 /dev/urandom | base64 > "L/small/data/small/f$i"; done  # ~16 MB, 3000 files
add_layer small
head -c 20M /dev/urandom | base64 > L/b64/data/b64.txt               # ~27 MB
add_layer b64
rm -rf --one-file-system L
skopeo copy -q --dest-tls-verify=false oci:oci:bench "docker://$REG/bench:1"
skopeo copy -q --dest-tls-verify=false oci:oci:base "docker://$REG/base:1"
LAYERS=$(skopeo inspect --tls-verify=false "docker://$REG/bench:1" | jq '.Layers | length')
echo "image: $LAYERS layers" >&2

B="$BERTH --root $W/berth"
P="podman --root $W/podman --runroot $W/podman-run --storage-driver overlay"
S="skopeo copy -q --src-tls-verify=false"
CLEAN="rm -rf --one-file-system $W/berth $W/podman $W/podman-run $W/skopeo"

# bench RUNS: reads "label<TAB>prepare<TAB>command" lines on stdin; runs the labels round-robin
# (so a load spike on this shared machine hits every puller alike), each timed run after its own
# prepare command, and prints per label the median, mean and sd of the wall time
# (time.perf_counter around fork..wait4) plus median user/sys CPU and peak RSS from wait4's
# rusage (the numbers GNU time reports). hyperfine is not installed on the bench machines.
bench() {
    python3 -c '
import os, shlex, statistics, subprocess, sys, time
runs = int(sys.argv[1])
rows = [l.rstrip("\n").split("\t") for l in sys.stdin if l.strip()]
res = {label: [] for label, _, _ in rows}
for _ in range(runs):
    for label, prep, cmd in rows:
        subprocess.run(["sh", "-c", prep], check=True, stdout=subprocess.DEVNULL)
        t0 = time.perf_counter()
        p = subprocess.Popen(shlex.split(cmd), stdout=subprocess.DEVNULL)
        _, status, ru = os.wait4(p.pid, 0)
        wall = time.perf_counter() - t0
        if os.waitstatus_to_exitcode(status) != 0:
            sys.exit(f"{label}: {cmd} failed ({status})")
        res[label].append((wall, ru.ru_utime, ru.ru_stime, ru.ru_maxrss))
print("| puller | wall median | wall mean ± sd | user (median) | sys (median) | peak RSS (median) |")
print("| --- | --- | --- | --- | --- | --- |")
med = {}
for label, xs in res.items():
    w = [x[0] for x in xs]
    sd = statistics.stdev(w) if len(w) > 1 else 0.0
    med[label] = statistics.median(w)
    print(f"| {label} | {med[label]:.2f} s | {statistics.mean(w):.2f} s ± {sd:.2f} "
          f"| {statistics.median(x[1] for x in xs):.2f} s | {statistics.median(x[2] for x in xs):.2f} s "
          f"| {statistics.median(x[3] for x in xs) / 1024:.1f} MiB |")
if "berth" in med and "podman" in med:
    ratio = med["berth"] / med["podman"]
    print(f"\nberth / podman (wall medians): {ratio:.2f}")
' "$@"
}

echo "== cold pull ($RUNS runs each, interleaved)"
bench "$RUNS" <<EOF
berth	$CLEAN	$B pull -q $REG/bench:1
podman	$CLEAN	$P pull -q --tls-verify=false $REG/bench:1
skopeo-oci	$CLEAN	$S docker://$REG/bench:1 oci:$W/skopeo:bench
EOF

[ "${COLD_ONLY:-0}" = 1 ] && exit 0
echo "== base layer present ($RUNS runs each, interleaved)"
bench "$RUNS" <<EOF
berth	$CLEAN && $B pull -q $REG/base:1	$B pull -q $REG/bench:1
podman	$CLEAN && $P pull -q --tls-verify=false $REG/base:1	$P pull -q --tls-verify=false $REG/bench:1
EOF

if [ -x /usr/bin/time ]; then
    echo "== peak RSS of one cold pull (GNU time)"
    for tool in berth podman skopeo; do
        eval "$CLEAN"
        case $tool in
        berth) cmd="$B pull -q $REG/bench:1" ;;
        podman) cmd="$P pull -q --tls-verify=false $REG/bench:1" ;;
        skopeo) cmd="$S docker://$REG/bench:1 oci:$W/skopeo:bench" ;;
        esac
        /usr/bin/time -f "$tool %M KiB %e s (user %U s, sys %S s)" $cmd >/dev/null
    done
fi
# What berth's store holds after a cold pull.
eval "$CLEAN"
$B pull -q "$REG/bench:1" >/dev/null
du -sh "$W/berth/image/layers" | sed 's/^/berth unpacked layers: /'
du -sh "$W/berth/image/blobs" | sed 's/^/berth kept blobs: /'
eval "$CLEAN"
