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
