#!/bin/sh
# shellcheck shell=dash disable=SC2016 # jq/awk programs and markdown backquotes are literal
# cleanup.sh - remove everything the runtime benchmark creates. Idempotent; continues past errors.
#
# Usage: cleanup.sh WORK_DIR    (run.sh calls it on exit; run it by hand after a crash)
#
# What a benchmark run can leave behind, and why each step is safe:
#  1. containers in each runtime's state root: `delete -f` through the runtime that made them;
#  2. the cgroup /berth-bench in every v1 hierarchy (and in cgroup2 if a runtime used it): emptied of
#     container processes (PIDs read from the pids hierarchy, which only our containers can be in) and
#     removed depth-first with rmdir. Nothing outside /berth-bench is touched, never /process_api;
#  3. crun 1.8.1's leftovers (../../../shared/tools/crun-nohybrid): with the cgroup2 mount hidden it
#     mkdirs /sys/fs/cgroup/unified/berth-bench on the /sys/fs/cgroup tmpfs and writes a regular file
#     cgroup.procs there. Those are plain files: removed with rm, never read for PIDs;
#  4. the work directory (a tmpfs run.sh mounted in its private namespace).
set -u
work=${1:?usage: cleanup.sh WORK_DIR}
failed=0

# 1. containers
if [ -d "$work/state" ]; then
	for root in "$work"/state/*; do
		[ -d "$root" ] || continue
		rt="$work/bin/$(basename "$root")"
		for c in "$root"/*; do
			[ -d "$c" ] || continue
			"$rt" --root "$root" delete -f "$(basename "$c")" >/dev/null 2>&1 || true
		done
	done
fi

# 2. container processes still alive in /berth-bench (a runtime that crashed mid-delete)
pids_cg=/sys/fs/cgroup/pids/berth-bench
if [ "$(stat -f -c %T "$pids_cg" 2>/dev/null)" = cgroupfs ]; then
	find "$pids_cg" -name cgroup.procs | while read -r procs; do
		while read -r pid; do
			echo "cleanup: killing leftover container process $pid ($procs)" >&2
			kill -KILL "$pid" 2>/dev/null || true
		done <"$procs"
	done
	sleep 0.2
fi

# 2+3. the cgroup trees, by filesystem type: a real cgroup dir goes by rmdir, crun's tmpfs leftovers by rm
for cg in /sys/fs/cgroup/*/berth-bench; do
	[ -d "$cg" ] || continue
	case "$(stat -f -c %T "$cg")" in
	cgroupfs | cgroup2fs)
		find "$cg" -depth -type d -exec rmdir {} \; 2>/dev/null
		if [ -d "$cg" ]; then
			echo "cleanup: could not remove cgroup $cg" >&2
			failed=1
		fi
		;;
	tmpfs)
		rm -rf --one-file-system "$cg"
		;;
	*)
		echo "cleanup: $cg is on an unexpected filesystem, left alone" >&2
		failed=1
		;;
	esac
done
# crun's leftovers sit under the hidden cgroup2 mount: look at them from a namespace without it
if mountpoint -q /sys/fs/cgroup/unified; then
	unshare --mount --propagation private /bin/sh -c '
		umount -l /sys/fs/cgroup/unified &&
		[ "$(stat -f -c %T /sys/fs/cgroup/unified)" = tmpfs ] &&
		rm -rf --one-file-system /sys/fs/cgroup/unified/berth-bench' || failed=1
fi

# 4. the work directory
if [ -d "$work" ]; then
	if mountpoint -q "$work"; then
		umount "$work" || failed=1
	fi
	rm -rf --one-file-system "$work"
fi
exit "$failed"
