# Shared helpers of the bench scripts (sourced).

# rss_anon_kb PATTERN: the anonymous (private) memory of the processes whose command line
# matches PATTERN, summed, in kB, and how many there were: "TOTAL N".
rss_anon_kb() {
    local pattern=$1 total=0 n=0 kb
    for pid in $(pgrep -f -- "$pattern"); do
        kb=$(awk '/^RssAnon:/ {print $2}' /proc/$pid/status 2>/dev/null || echo 0)
        total=$((total + ${kb:-0})); n=$((n + 1))
    done
    echo "$total $n"
}

# time_cmd LABEL CMD...: $RUNS timed runs after 3 warm-ups; prints the median, mean and sd in ms.
time_cmd() {
    local label=$1; shift
    for _ in 1 2 3; do "$@" >/dev/null; done
    local t
    t=$(python3 - "$RUNS" "$@" <<'PY'
import subprocess, sys, time, statistics
n = int(sys.argv[1]); cmd = sys.argv[2:]
xs = []
for _ in range(n):
    t0 = time.perf_counter()
    subprocess.run(cmd, stdout=subprocess.DEVNULL, check=True)
    xs.append((time.perf_counter() - t0) * 1000)
print(f"{statistics.median(xs):.1f} {statistics.mean(xs):.1f} {statistics.stdev(xs):.1f}")
PY
)
    printf '%-46s median %8s ms  mean %8s ms  sd %7s ms\n' "$label" $t
}

# wall_ms CMD...: the wall time of one run of CMD, in ms.
wall_ms() {
    python3 - "$@" <<'PY'
import subprocess, sys, time
t0 = time.perf_counter()
subprocess.run(sys.argv[1:], check=True, stdout=subprocess.DEVNULL)
print(f"{(time.perf_counter() - t0) * 1000:.1f}")
PY
}

# remove_bench_dir W: removes a bench's scratch directory W once the podman processes that
# still use it are gone (conmon starts `podman container cleanup` asynchronously for each
# container `rm -af` removed, and those remount podman's overlay directory) and every mount
# below it is undone. Waits (at most 15 s), never kills.
remove_bench_dir() {
    local w=$1 _
    for _ in $(seq 150); do
        pgrep -f -- "$w/podman" >/dev/null || break
        sleep 0.1
    done
    for _ in 1 2 3 4 5; do
        grep -o " $w[^ ]*" /proc/self/mountinfo | sort -ru | xargs -r -n1 umount -l 2>/dev/null || true
        rm -rf --one-file-system "$w" 2>/dev/null && return 0
        sleep 0.2
    done
    rm -rf --one-file-system "$w"
}
