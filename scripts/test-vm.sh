#!/bin/sh
# Runs the tests that need a pure cgroup v2 hierarchy or AppArmor inside ONE throw-away VM
# (../shared/vm/vm-run.sh): the conformance `cgroups` test binary, plus the berth-runtime
# `cgroups` and `security` test binaries when they exist.
#
# Usage: scripts/test-vm.sh [TEST-BINARY ARGS...]
#   Arguments are passed to every test binary (a name filter, --exact, --test-threads=N, ...);
#   --test-threads=1 is added unless given.
# Environment:
#   BERTH_TEST_RUNTIME  runtime under test (absolute path; default target/debug/berth-runc,
#                       built here when it is the default)
#   VM_TIMEOUT          seconds (default 1080: under CI's 20 minutes, so a hang ends with the
#                       guest console's tail instead of a killed job)
#   VM_RUN              path of vm-run.sh (default ../shared/vm/vm-run.sh next to the repo)
# Exit status: the number of failed tests (capped at 100), 124/125 when the VM timed out or
# failed to boot (vm-run.sh's codes).
#
# Everything is compiled on the host; the guest only runs the binaries (cargo in the guest is
# 20-70x slower). State, bundles and rootfs copies go to the guest's tmpfs /tmp.
set -eu

ROOT=$(cd "$(dirname "$0")/.." && pwd)

if [ "${1:-}" = "--guest" ]; then
    # In the guest: $2 is the list of "name path" lines, the rest go to each binary.
    list=$2
    shift 2
    # One test at a time unless told otherwise: with several containers starting at once, the
    # emulated guest's kernel soft-locked (runc and its init stuck for minutes; seen with runc
    # 1.1.5 and 4 test threads), while the same tests pass in seconds sequentially.
    case " $* " in
        *" --test-threads"*) ;;
        *) set -- "$@" --test-threads=1 ;;
    esac
    failed=0
    while read -r name bin; do
        [ -n "$name" ] || continue
        echo "=== $name ($bin)"
        out=/tmp/test-vm-$name.out
        # Stream the output (a hang should show how far it got) and keep the exit code.
        { "$bin" "$@" 2>&1; echo $? >"$out.rc"; } | tee "$out"
        rc=$(cat "$out.rc")
        n=$(sed -n 's/^test result: [A-Z]*\. [0-9]* passed; \([0-9]*\) failed.*/\1/p' "$out" | tail -1)
        if [ "$rc" -ne 0 ] && [ -z "$n" -o "$n" = 0 ]; then
            n=1 # crashed before reporting
        fi
        failed=$((failed + ${n:-0}))
    done <"$list"
    echo "=== $failed failed test(s) in the VM"
    [ "$failed" -gt 100 ] && failed=100
    exit "$failed"
fi

cd "$ROOT"
VM_RUN=${VM_RUN:-$(cd "$ROOT/.." && pwd)/shared/vm/vm-run.sh}
[ -x "$VM_RUN" ] || { echo "test-vm.sh: $VM_RUN not found (set VM_RUN)" >&2; exit 125; }
command -v jq >/dev/null || { echo "test-vm.sh: needs jq (apt-get install jq)" >&2; exit 125; }

if [ -z "${BERTH_TEST_RUNTIME:-}" ]; then
    cargo build -q -p berth-runc
    BERTH_TEST_RUNTIME=$ROOT/target/debug/berth-runc
fi
export BERTH_TEST_RUNTIME

# The static probe, built the way the harness builds it, so the guest never runs cargo.
RUSTFLAGS="-C target-feature=+crt-static" cargo build -q -p berth-probe --release \
    --target x86_64-unknown-linux-gnu --target-dir "$ROOT/target/probe"
BERTH_PROBE_BINARY=$ROOT/target/probe/x86_64-unknown-linux-gnu/release/berth-probe
export BERTH_PROBE_BINARY

list=$ROOT/target/test-vm-binaries.txt
mkdir -p "$ROOT/target"
# Test binaries of the two crates; keep the integration-test targets named cgroups/security.
cargo test --no-run --message-format=json -p berth-conformance -p berth-runtime 2>/dev/null |
    jq -r 'select(.reason == "compiler-artifact" and .executable != null
                  and (.target.kind | index("test")) != null)
           | "\(.package_id) \(.target.name) \(.executable)"' |
    awk '($2 == "cgroups" || $2 == "security") {
             crate = ($1 ~ /berth-conformance/) ? "conformance" : "runtime";
             print crate "-" $2, $3 }' >"$list"
if [ ! -s "$list" ]; then
    echo "test-vm.sh: no cgroups/security test binaries were built" >&2
    exit 125
fi
echo "test-vm.sh: running in the VM:"
sed 's/^/  /' "$list"

export VM_TIMEOUT=${VM_TIMEOUT:-1080}
export VM_ENV="BERTH_TEST_RUNTIME BERTH_PROBE_BINARY RUST_BACKTRACE ${VM_ENV:-}"
export RUST_BACKTRACE=${RUST_BACKTRACE:-1}
exec "$VM_RUN" "$ROOT" "$ROOT/scripts/test-vm.sh" --guest "$list" "$@"
