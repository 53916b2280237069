#!/usr/bin/env bash
# Stops everything up.sh started in DIR (sandpit processes first, so nodes
# kill their sandboxes while the API server still answers, then the
# registry, kube-apiserver, then etcd) and removes DIR. Leaves nothing behind: no
# process, no sandbox, no cgroup, no file.
#
# Usage: test/cluster/down.sh DIR [--keep-dir]
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"
dir=${1:?usage: down.sh DIR [--keep-dir]}
[[ -d $dir ]] || exit 0
dir=$(cd "$dir" && pwd)

if [[ -d $dir/pids ]]; then
	# All at once: each takes a second or more to drain.
	for f in "$dir"/pids/api-*.pid "$dir"/pids/node-*.pid; do
		[[ -f $f ]] || continue
		stop_pid "$dir" "$(basename "$f" .pid)" TERM &
	done
	wait
	stop_pid "$dir" registry TERM
	stop_pid "$dir" kube-apiserver TERM
	stop_pid "$dir" etcd TERM
fi
# A node killed by kill-node.sh left its sandboxes running, as a crashed
# daemon does: end every process whose mounts are under DIR (a sandbox's
# root is an overlay there), outside our own mount namespace.
self_ns=$(readlink /proc/self/ns/mnt)
for p in /proc/[0-9]*; do
	[[ $(readlink "$p/ns/mnt" 2>/dev/null) != "$self_ns" ]] || continue
	grep -qF "$dir/" "$p/mountinfo" 2>/dev/null && kill -KILL "${p#/proc/}" 2>/dev/null
done
sleep 0.2
# Mounts a killed node's sandboxes left (overlays, loop devices), deepest
# first.
grep -F " $dir/" /proc/self/mountinfo | awk '{print $5}' | sort -r | while read -r m; do
	umount -l "$m" 2>/dev/null
done
# Each node's cgroup (the daemon names it sandpit/<sha256(data dir)[:8]>).
for d in "$dir"/node-*/; do
	[[ -d $d ]] || continue
	cg=/sys/fs/cgroup/sandpit/$(printf %s "${d%/}" | sha256sum | cut -c1-8)
	[[ -d $cg ]] && find "$cg" -depth -type d -exec rmdir {} + 2>/dev/null
done
if [[ ${2:-} != --keep-dir ]]; then
	rm -rf "$dir"
fi
