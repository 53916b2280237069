#!/usr/bin/env bash
# Runs every benchmark in one go, so peers and sandpit are measured on the
# same machine in the same minutes. Prints Markdown for BENCHMARKS.md.
# Usage (as root, after `make build`):  bench/run.sh [-n RUNS]
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-50}
[ "${1:-}" = "-n" ] && RUNS=$2

echo "## Run of $(date -u +%Y-%m-%dT%H:%MZ) on $(uname -sr), $(nproc) CPUs, $(free -g | awk '/Mem:/{print $2}') GiB"
echo
echo "### Peers: start an isolated \`true\` (bench/peers.sh -n $RUNS)"
echo
bench/peers.sh -n "$RUNS"
echo
echo "### sandpit through the official SDK, warm pool on (node bench/sdk_bench.mjs --creates $RUNS)"
echo
(cd test/compat && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
node bench/sdk_bench.mjs --creates "$RUNS" --commands 200 --reads 200
echo
echo "### sandpit through the official SDK, no warm pool (cold creates)"
echo
node bench/sdk_bench.mjs --creates "$RUNS" --commands 200 --reads 50 --serve-arg=--warm-pool=off
echo
echo "### Under load, concurrency 8 (node bench/load.mjs --live 200 --burst 16)"
echo
node bench/load.mjs --concurrency 8 --cycles 200 --live 200 --burst 16 --timeout 900
echo
echo "### Peers at the same concurrency (bench/peers_load.sh -c 8 -n 200)"
echo
bench/peers_load.sh -c 8 -n 200 -t 300
echo
echo "### The code interpreter: create + first runCode (node bench/interp_bench.mjs)"
echo
node bench/interp_bench.mjs --rounds 20
echo
echo "### The audit log's cost to a create (node bench/audit_bench.mjs --creates $RUNS)"
echo
node bench/audit_bench.mjs --creates "$RUNS"
echo
node bench/audit_bench.mjs --creates "$RUNS" --serve-arg=--warm-pool=off
echo
echo "### Snapshots and forks through the SDK (node bench/snapshot_bench.mjs --reps 10)"
echo
node bench/snapshot_bench.mjs --reps 10
echo
echo "### Pause and resume, both kinds (node bench/lifecycle_bench.mjs --rounds $RUNS)"
echo
node bench/lifecycle_bench.mjs --rounds "$RUNS"
echo
echo "### A restart takes over 100 sandboxes (node bench/restart_bench.mjs --sandboxes 100)"
echo
node bench/restart_bench.mjs --sandboxes 100
echo
echo "### The egress proxy behind domain rules vs direct (node bench/netproxy_bench.mjs)"
echo
node bench/netproxy_bench.mjs --requests 300 --mib 256 --rounds 5
echo
echo "### sandpit through the official Python SDK (bench/py_sdk_bench.py --creates $RUNS)"
echo
test/compat-py/run.sh --collect-only -q >/dev/null # makes its venv once
test/compat-py/.venv/bin/python bench/py_sdk_bench.py --creates "$RUNS" --runs 200
echo
echo "### Templates through the official SDK (node bench/template_bench.mjs)"
echo
node bench/template_bench.mjs --creates "$RUNS" --rebuilds 10
echo
echo "### Disk used by ten templates sharing a base (bench/template_disk.sh 10)"
echo
bench/template_disk.sh 10
echo
echo "### The server's share: command round trip with a bare HTTP client (bench/raw_rpc.py)"
echo
key=e2b_$(head -c 20 /dev/urandom | od -An -tx1 | tr -d ' \n')
dir=$(mktemp -d /tmp/sandpit-bench-XXXXXX)
SANDPIT_API_KEY=$key bin/sandpit serve --listen 127.0.0.1:49989 --data-dir "$dir" --warm-pool off --kill-on-stop >"$dir.log" 2>&1 &
serve=$!
for _ in $(seq 100); do curl -sf http://127.0.0.1:49989/health >/dev/null && break; sleep 0.1; done
/usr/bin/python3 bench/raw_rpc.py http://127.0.0.1:49989 "$key" "$dir" 200
kill -TERM $serve; wait $serve || true
rm -rf "$dir" "$dir.log"
echo
echo "### 1 GiB through the daemon (bench/transfer.sh 3)"
echo
bench/transfer.sh 3
echo
echo "### Idle sandboxes (bench/density.sh 100)"
echo
bench/density.sh 100
echo
echo "### Go benchmarks (go test -run '^\$' -bench . -benchtime 2s)"
echo
echo '```'
go test -run '^$' -bench . -benchtime 2s ./internal/agent/ ./internal/agent/files/ ./internal/interp/ 2>&1 | grep -E '^(Benchmark|ok)'
go test -run '^$' -bench . -benchtime 400x ./sdk/ 2>&1 | grep -E '^(Benchmark|ok)'
echo '```'
