#!/bin/sh
# shellcheck shell=dash disable=SC2016 # jq/awk programs and markdown backquotes are literal
# report.sh - print the markdown table of one run.sh result directory.
#
# Usage: bench/runtime/report.sh OUT_DIR
# Cells: the median wall time of all timed runs of all passes, and in parentheses the mean CPU time
# (user+sys) of the runtime and everything it waited for. Ratios are of those medians (CPU ratio in
# parentheses), each runtime against crun, the fastest peer; with several passes, [min-max] is the
# spread of the per-pass median ratios. A "-" is a row or runtime that failed or was skipped.
set -eu
out=${1:?usage: report.sh OUT_DIR}
meta() { awk -F '\t' -v k="$1" '$1 == k { print $2 }' "$out/meta.tsv"; }
rts=$(meta runtimes | tr , ' ')
others=""
for rt in $rts; do [ "$rt" = crun ] || others="$others $rt"; done

# fmt SECONDS -> "12.3 ms" or "1.23 s"
fmt='def t: if . >= 1 then "\(. * 100 | round / 100) s" else "\(. * 10000 | round / 10) ms" end;'
# over an array of hyperfine exports (one per pass): a runtime's pooled median of all timed runs, mean
# CPU (user+sys) across passes, and its failures
common="$fmt"'
def r2: . * 100 | round / 100;
def median: sort | if length % 2 == 1 then .[length / 2 | floor] else (.[length / 2 - 1] + .[length / 2]) / 2 end;
def pooled($rt): [.[] | .results[] | select(.parameters.rt == $rt)]
	| if length == 0 then null else {
		median: ([.[].times[]] | median),
		cpu: ([.[] | .user + .system] | add / length),
		n: ([.[].exit_codes[]] | length),
		failed: ([.[].exit_codes[] | select(. != 0)] | length),
		exit: ([.[].exit_codes[] | select(. != 0)][0])
	} end;
'

echo "| operation | $(echo "$rts" | sed 's/ / | /g') |$(for o in $others; do printf ' %s/crun |' "$o"; done) runs, load (1 min) |"
echo "| --- |$(for _ in $rts $others; do printf ' ---: |'; done) --- |"

# shellcheck disable=SC2086 # $files is a list of paths without blanks, split on purpose
hrow() { # ROW LABEL
	local files
	row=$1 label=$2
	files=$(ls "$out/$row".p*.json 2>/dev/null || true)
	[ -n "$files" ] || { echo "| $label |$(for _ in $rts $others; do printf ' - |'; done) not run or failed |"; return 0; }
	# all passes of the row as one array; per runtime: the pooled times and the per-pass results
	line="| $label |"
	for rt in $rts; do
		line="$line $(jq -rs --arg rt "$rt" "$common"'
			pooled($rt) as $p
			| if $p == null then "-"
			  elif $p.failed > 0 then "failed (\($p.failed)/\($p.n) runs, exit \($p.exit))"
			  else "\($p.median | t) (\($p.cpu | t))" end' $files) |"
	done
	for rt in $others; do
		line="$line $(jq -rs --arg rt "$rt" "$common"'
			pooled($rt) as $a | pooled("crun") as $c
			| if $a == null or $c == null or $a.failed > 0 or $c.failed > 0 then "-"
			  else
			    "\($a.median / $c.median | r2)× (\($a.cpu / $c.cpu | r2)×)"
			    + (if length > 1 then
			        [.[] | [.results[] | select(.parameters.rt == $rt)][0].median
			               / [.results[] | select(.parameters.rt == "crun")][0].median]
			        | " [\(min | r2)-\(max | r2)]"
			      else "" end)
			  end' $files) |"
	done
	runs=$(jq -s '[.[] | .results[0].times | length] | add' $files)
	passes=$(echo "$files" | wc -l)
	echo "$line n=$runs in $passes pass(es), $(head -n 1 "$out/$row.load" | cut -d' ' -f1)→$(tail -n 1 "$out/$row.load" | cut -d' ' -f1) |"
}

tsvrow() { # FILE LABEL COLUMN UNIT-FILTER(awk) NOTE [no: no ratio column]
	f="$out/$1" label=$2 col=$3 conv=$4 ratio=${6:-}
	[ -f "$f" ] || { echo "| $label |$(for _ in $rts $others; do printf ' - |'; done) not run or failed |"; return 0; }
	line="| $label |"
	for rt in $rts; do
		v=$(awk -F '\t' -v rt="$rt" -v c="$col" '$1 == rt { print ($5 > 0 ? "failed" : $c) }' "$f")
		line="$line $(echo "${v:--}" | awk "$conv") |"
	done
	crun=$(awk -F '\t' -v c="$col" '$1 == "crun" { print $c }' "$f")
	for rt in $others; do
		v=$(awk -F '\t' -v rt="$rt" -v c="$col" '$1 == rt { print ($5 > 0 ? "failed" : $c) }' "$f")
		case "$ratio$v$crun" in
		no*) r=- ;;
		*[!0-9]* | "") r=- ;;
		*) r="$(awk -v a="$v" -v b="$crun" 'BEGIN { printf "%.2f×", a / b }')" ;;
		esac
		line="$line $r |"
	done
	echo "$line $5 |"
}

hrow run '`run` of `/bin/true`'
hrow cycle '`create` + `start` + `delete -f` (sh wrapper)'
hrow detach '`run -d` + `delete -f` (sh wrapper)'
hrow exec '`exec` of `/bin/true` into a running container'
hrow loop '100 sequential `run`s (sh wrapper)'
names=$(meta seccomp_names)
hrow seccomp "\`run\` of \`/bin/true\`, Docker default caps + seccomp (${names:-?} syscall names)"
kib_to_mib='{ if ($1 ~ /^[0-9]+$/) printf "%.1f MiB", $1 / 1024; else print $1 }'
tsvrow rss.tsv 'peak RSS of `run` (median; wait4 ru_maxrss)' 3 "$kib_to_mib" "n=$(meta rss_runs)"
mem_fmt='{ if ($1 ~ /^[0-9]+$/) { if ($1 < 1024) printf "%d KiB", $1; else printf "%g MiB", $1 / 1024 } else print $1 }'
tsvrow memfloor.tsv 'smallest memory limit `run` passes (all tries)' 2 "$mem_fmt" "$(meta mem_tries) tries per limit, 256 KiB-16 MiB" no
awk -F '\t' 'NF >= 3 && $3 !~ /^yes/ { printf "\nWARNING: %s: memory limit at the floor not confirmed on the host: %s\n", $1, $3 }' \
	"$out/memfloor.tsv" 2>/dev/null || true
if [ -f "$out/floor.json" ]; then
	echo
	jq -r "$fmt"'.results[0] | "Floor, no runtime: `unshare` (mnt, uts, ipc, net, pid) + `chroot` + `/bin/true`: \(.median | t) median (\(.user + .system | t) CPU)."' "$out/floor.json"
	jq -r "$fmt"'.results[1] // empty | "The sh wrapper of the (sh wrapper) rows costs \(.median | t) median (\(.user + .system | t) CPU) per sample, in every column."' "$out/floor.json"
fi
echo
echo "Load average at start/end: $(meta load_start) / $(meta load_end). Peers: $(for rt in $rts; do printf '%s; ' "$(meta "version_$rt")"; done)seccomp profile: $(meta seccomp_profile)."
if awk -F '\t' '$2 == 256 { found = 1 } END { exit !found }' "$out/memfloor.tsv" 2>/dev/null; then
	echo
	echo "256 KiB is the lowest limit tried: a runtime shown there may start under even less."
fi
