#!/usr/bin/env bash
# SIGKILLs one node process of the cluster in DIR, as a machine or pod that
# dies without a word: it stops renewing its Lease, and its sandboxes stay
# as they were (down.sh ends them).
#
# Usage: test/cluster/kill-node.sh DIR NODE      (NODE: node-1, node-2, ...)
set -euo pipefail
dir=${1:?usage: kill-node.sh DIR NODE}
node=${2:?usage: kill-node.sh DIR NODE}
pidf=$dir/pids/$node.pid
[[ -f $pidf ]] || { echo "kill-node.sh: no $node in $dir" >&2; exit 2; }
# The daemon alone, not its process group: sandboxes outlive their daemon.
kill -KILL "$(<"$pidf")"
mv "$pidf" "$dir/pids/$node.killed"
