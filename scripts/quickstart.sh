#!/usr/bin/env bash
# Quickstart: install what Berth needs, build it, and run containers from a busybox root
# filesystem made offline from Debian's busybox-static: once with the OCI runtime (berth-runc)
# from a bundle, once with the engine (berth) from an image imported into its store.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "run as root" >&2; exit 2; }
bash scripts/install-deps.sh
cargo build --release -p berth-runc -p berth
bin=$PWD/target/release/berth-runc

bundle=$(mktemp -d /tmp/berth-quickstart.XXXXXX)
trap 'rm -rf --one-file-system "$bundle"' EXIT
mkdir -p "$bundle/rootfs/bin" "$bundle/rootfs/proc" "$bundle/rootfs/sys" "$bundle/rootfs/dev" "$bundle/rootfs/tmp" "$bundle/rootfs/etc"
cp /bin/busybox "$bundle/rootfs/bin/busybox"
for applet in sh ls cat echo hostname id uname ps; do ln -s busybox "$bundle/rootfs/bin/$applet"; done
echo 'root:x:0:0:root:/root:/bin/sh' > "$bundle/rootfs/etc/passwd"
echo 'root:x:0:' > "$bundle/rootfs/etc/group"
(cd "$bundle" && "$bin" spec)
# A non-interactive process, a hostname, and a cgroup of our own (never below the caller's).
jq '.process.terminal = false
    | .process.args = ["sh", "-c", "echo hello from $(hostname), pid $$, as $(id -u); ls /"]
    | .hostname = "berth-quickstart"
    | .linux.cgroupsPath = "/berth-quickstart"' "$bundle/config.json" > "$bundle/config.json.new"
mv "$bundle/config.json.new" "$bundle/config.json"
"$bin" --root /run/berth-quickstart run --bundle "$bundle" quickstart-$$

# The engine: the same root filesystem imported as an image, then `berth run` (no network
# needed: the image comes from a local tarball).
berth=$PWD/target/release/berth
tar -C "$bundle/rootfs" -cf "$bundle/busybox.tar" .
"$berth" import "$bundle/busybox.tar" berth-quickstart/busybox:latest --change 'CMD ["sh"]' >/dev/null
# --network none: the default bridge would add `berth0` and an nftables table to this machine
# (docs/networking.md); try `"$berth" run --rm -p 8080:80 ...` when that is what you want.
"$berth" run --rm --network none --name quickstart-$$ berth-quickstart/busybox:latest \
  sh -c 'echo "hello from the engine: $(hostname), pid $$, as $(id -u)"'
"$berth" images
