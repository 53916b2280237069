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
echo "### Go benchmarks (go test -run '^\$' -bench . -benchtime 2s)"
echo
echo '```'
go test -run '^$' -bench . -benchtime 2s ./internal/agent/ ./internal/agent/files/ ./internal/interp/ 2>&1 | grep -E '^(Benchmark|ok)'
echo '```'
