#!/usr/bin/env bash
# Starts a node that kill-node.sh killed again, as its DaemonSet pod would
# be restarted on the same machine: same data dir, so it takes over the
# sandboxes it left running, renews its Lease and reconciles (the API
# replicas had marked its sandboxes Lost). Waits until it answers.
#
# Usage: test/cluster/restart-node.sh DIR NODE
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"
dir=$(cd "${1:?usage: restart-node.sh DIR NODE}" && pwd)
node=${2:?usage: restart-node.sh DIR NODE}
[[ -f $dir/$node.cmd ]] || { echo "restart-node.sh: no $node in $dir" >&2; exit 2; }
if [[ -f $dir/pids/$node.pid ]] && kill -0 "$(<"$dir/pids/$node.pid")" 2>/dev/null; then
	echo "restart-node.sh: $node is running" >&2
	exit 2
fi
. "$dir/$node.cmd" # node_cmd
rm -f "$dir/pids/$node.killed"
SANDPIT_API_KEY=$(<"$dir/api-key") start_in "$dir" "$node" "${node_cmd[@]}"
for _ in $(seq 1 1200); do
	curl -fsS -o /dev/null --max-time 2 "http://$(<"$dir/$node.addr")/health" 2>/dev/null && exit 0
	kill -0 "$(<"$dir/pids/$node.pid")" 2>/dev/null || { echo "restart-node.sh: $node exited; see $dir/logs/$node.log" >&2; exit 1; }
	sleep 0.1
done
echo "restart-node.sh: $node did not answer in 120 s" >&2
exit 1
