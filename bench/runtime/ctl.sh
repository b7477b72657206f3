#!/bin/sh
# shellcheck shell=dash disable=SC2016 # jq/awk programs and markdown backquotes are literal
# ctl.sh - the multi-step operations hyperfine times through `-N` (no shell of its own).
#
# hyperfine -N runs one program; a row made of several runtime calls ("create && start && delete -f")
# needs a wrapper. Every runtime gets the same wrapper, so the cost of this dash process (about 1 ms)
# is the same constant in every column and cancels in the ratios only approximately: compare
# differences, not just ratios, on these rows.
#
# Usage: ctl.sh MODE RUNTIME STATE_ROOT BUNDLE ID [COUNT]
#   cycle          create + start + delete -f
#   detach         run -d + delete -f
#   loop           COUNT sequential `run`s
#   start-sleeper  run -d (stdio on /dev/null so the container holds no pipe of hyperfine's)
#   delete         delete -f (ignores "does not exist")
#   noop           nothing: run.sh times it to show what the wrapper itself costs
set -eu
mode=$1 rt=$2 root=$3 bundle=$4 id=$5
case "$mode" in
cycle)
	"$rt" --root "$root" create --bundle "$bundle" "$id"
	"$rt" --root "$root" start "$id"
	"$rt" --root "$root" delete -f "$id"
	;;
detach)
	"$rt" --root "$root" run -d --bundle "$bundle" "$id"
	"$rt" --root "$root" delete -f "$id"
	;;
loop)
	i=0
	while [ "$i" -lt "${6:?loop needs COUNT}" ]; do
		"$rt" --root "$root" run --bundle "$bundle" "$id"
		i=$((i + 1))
	done
	;;
start-sleeper)
	"$rt" --root "$root" run -d --bundle "$bundle" "$id" </dev/null >/dev/null 2>&1
	;;
delete)
	"$rt" --root "$root" delete -f "$id" >/dev/null 2>&1 || true
	;;
noop) ;;
*)
	echo "ctl.sh: unknown mode $mode" >&2
	exit 2
	;;
esac
