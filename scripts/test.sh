#!/usr/bin/env bash
# Runs Berth's whole test suite as root: formatting, lints, unit and privileged tests on this
# host (cgroup v1/hybrid), the cgroup v2 + AppArmor tier in the VM of ../shared/vm, and the
# end-to-end tests against containerd, podman and a local registry. The last line is
# nextest's summary of the host tests; the VM tier's result is printed just before it.
set -uo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "scripts/test.sh must run as root (the privileged tests need it)" >&2; exit 2; }

bash scripts/install-deps.sh || { echo "installing Debian packages failed" >&2; exit 1; }

set -e
echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets --quiet -- -D warnings
echo "== build"
cargo build --workspace --quiet
cargo test --workspace --no-run --quiet 2>/dev/null
set +e

vm_status=0
if [ -x scripts/test-vm.sh ] && [ -x ../shared/vm/vm-run.sh ]; then
  echo "== cgroup v2 + AppArmor tier (VM)"
  bash scripts/test-vm.sh
  vm_status=$?
  echo "== VM tier exit status: $vm_status"
else
  echo "== VM tier: ../shared/vm/vm-run.sh not found, not run"
  vm_status=1
fi

# The conformance tests are runtime-agnostic: run them against Debian's runc too, to show the
# tests themselves are right. The skipped ones are runc 1.1.5's own gaps (each is explained in
# its test): no time namespace, domainname ignored, poststart run at create, terse errors, and
# the /dev symlink CVEs it is still open to, and a cgroup leaked when a create is killed.
echo "== conformance tests against runc (validating the tests)"
BERTH_TEST_RUNTIME=/usr/sbin/runc cargo nextest run -p berth-conformance --no-fail-fast --profile ci \
  -E 'not (test(time_namespace) | test(domainname) | test(hooks_all_six) | test(malformed_config) | test(rlimit_above) | test(cve_2026_41579) | test(cve_2025_31133) | test(delete_force_after_create_was_killed))'
runc_status=$?
echo "== conformance against runc exit status: $runc_status"

echo "== host tests (unit, privileged, end to end)"
cargo nextest run --workspace --no-fail-fast --profile ci
host_status=$?
# Leave no empty cgroup behind: the tests' shared parents and podman's (deepest first; rmdir
# refuses any that is still in use, and never touches anything else).
for d in /sys/fs/cgroup/berth-test /sys/fs/cgroup/*/berth-test /sys/fs/cgroup/libpod_parent /sys/fs/cgroup/*/libpod_parent; do
  [ -d "$d" ] && find "$d" -depth -type d -exec rmdir {} + 2>/dev/null
done
if [ $host_status -eq 0 ] && { [ $vm_status -ne 0 ] || [ $runc_status -ne 0 ]; }; then
  echo "the VM tier ($vm_status) or the runc validation run ($runc_status) failed (see above)" >&2
  exit 1
fi
exit $host_status
