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
