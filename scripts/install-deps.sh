#!/usr/bin/env bash
# Installs every Debian package Berth's build, tests and quickstart need (Debian 12, as root).
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
pkgs=(
  # build
  gcc libc6-dev pkg-config libseccomp-dev
  # fixtures: a static busybox for container root filesystems
  busybox-static
  # peers and real clients of an OCI runtime, used by the conformance and end-to-end tests
  runc crun containerd podman uidmap
  # images: a real registry and daemonless image tools
  docker-registry skopeo umoci openssl
  # networking tools used by tests
  iproute2 nftables iptables python3
  # the cgroup v2 / AppArmor VM (../shared/vm) and misc tools
  qemu-system-x86 xz-utils jq util-linux procps file
  # the pull durability test traces syscalls
  strace
)
if [ "${BERTH_SKIP_APT_UPDATE:-0}" != 1 ]; then
  apt-get update -qq
fi
apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >/dev/null
# Docker's daemon, only for the `docker save`/`docker load` interoperability test, which starts
# its own dockerd in a network namespace of its own. Installing it must not start or enable a
# host daemon (it would add docker0 and iptables rules): services are held back while apt runs,
# and on a systemd host the units the package enables are disabled again.
if ! command -v dockerd >/dev/null; then
  held=
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
    chmod +x /usr/sbin/policy-rc.d
    held=1
  fi
  apt-get install -y -qq --no-install-recommends docker.io >/dev/null
  if [ -n "$held" ]; then rm -f /usr/sbin/policy-rc.d; fi
  if [ -d /run/systemd/system ]; then
    systemctl disable --now docker.service docker.socket >/dev/null 2>&1 || true
  fi
fi
# podman as root on these hosts: no systemd, and RLIMIT_NOFILE is capped at 20000.
mkdir -p /etc/containers
if [ ! -f /etc/containers/containers.conf ] || ! grep -q berth /etc/containers/containers.conf; then
  cat > /etc/containers/containers.conf <<'CONF'
# written by berth scripts/install-deps.sh
[containers]
default_ulimits = ["nofile=20000:20000"]
[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
CONF
fi
