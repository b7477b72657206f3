#!/bin/bash
# Cold image pulls from a local registry: berth vs `podman pull` vs `skopeo copy` to an OCI dir,
# measured in the same run with hyperfine. Also: pulls with the base layers already present, and
# the peak RSS of each puller (GNU time).
#
# Usage: bench/pull.sh [RUNS]   (as root; needs docker-registry, umoci, skopeo, podman, hyperfine)
# The berth binary is target/release/berth (built if missing).
set -euo pipefail

RUNS=${1:-5}
HERE=$(cd "$(dirname "$0")/.." && pwd)
BERTH=${BERTH:-$HERE/target/release/berth}
[ -x "$BERTH" ] || (cd "$HERE" && cargo build --release -p berth)

W=$(mktemp -d /var/tmp/berth-pull-bench.XXXXXX)
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

echo "== cold pull ($RUNS runs each)"
hyperfine -N --runs "$RUNS" --export-markdown "$W/cold.md" \
    --prepare "$CLEAN" \
    -n berth "$B pull -q $REG/bench:1" \
    -n podman "$P pull -q --tls-verify=false $REG/bench:1" \
    -n skopeo-oci "$S docker://$REG/bench:1 oci:$W/skopeo:bench"
cat "$W/cold.md"

echo "== base layer present ($RUNS runs each)"
# -N runs prepare commands without a shell too: wrap the two steps in sh -c.
hyperfine -N --runs "$RUNS" --export-markdown "$W/warm.md" \
    -n berth --prepare "sh -c '$CLEAN && $B pull -q $REG/base:1'" "$B pull -q $REG/bench:1" \
    -n podman --prepare "sh -c '$CLEAN && $P pull -q --tls-verify=false $REG/base:1'" \
    "$P pull -q --tls-verify=false $REG/bench:1"
cat "$W/warm.md"

echo "== peak RSS of a cold pull (GNU time, KiB)"
for tool in berth podman skopeo; do
    eval "$CLEAN"
    case $tool in
    berth) cmd="$B pull -q $REG/bench:1" ;;
    podman) cmd="$P pull -q --tls-verify=false $REG/bench:1" ;;
    skopeo) cmd="$S docker://$REG/bench:1 oci:$W/skopeo:bench" ;;
    esac
    /usr/bin/time -f "$tool %M KiB %e s (user %U s, sys %S s)" $cmd >/dev/null
    if [ $tool = berth ]; then
        du -sh "$W/berth/image/layers" | sed 's/^/berth unpacked layers: /'
        du -sh "$W/berth/image/blobs" | sed 's/^/berth kept blobs: /'
    fi
done
eval "$CLEAN"
