#!/usr/bin/env bash
# Idle sandboxes: starts N base sandboxes (no warm pool), then reports the
# memory they hold: the agents' proportional set size (PSS, shared pages
# split fairly) and the drop in the host's MemAvailable, per sandbox.
# Usage (as root, after `make build`): bench/density.sh [N]
# Extra flags for `sandpit serve` go in SERVE_ARGS (e.g. --no-disk-quota);
# SANDPIT_BIN picks the binary (default bin/sandpit), for an A/B.
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-100}
key=e2b_$(head -c 20 /dev/urandom | od -An -tx1 | tr -d ' \n')
dir=$(mktemp -d /tmp/sandpit-bench-XXXXXX)
SANDPIT_API_KEY=$key "${SANDPIT_BIN:-bin/sandpit}" serve --listen 127.0.0.1:49984 --data-dir "$dir" --warm-pool off --kill-on-stop ${SERVE_ARGS:-} >"$dir.log" 2>&1 &
serve=$!
trap 'kill -TERM $serve 2>/dev/null; wait $serve 2>/dev/null; rm -rf "$dir" "$dir.log"' EXIT
for _ in $(seq 100); do curl -sf http://127.0.0.1:49984/health >/dev/null && break; sleep 0.1; done
free_before=$(awk '/MemAvailable/{print $2}' /proc/meminfo)
meminfo_before=$(cat /proc/meminfo)
for _ in $(seq "$n"); do
  curl -sf -XPOST -H "X-API-KEY: $key" -H 'Content-Type: application/json' \
    http://127.0.0.1:49984/v2/sandboxes -d '{"templateID":"base","timeout":3600}' >/dev/null
done
# Agents give their start-up memory back two seconds after they start.
sleep 4
free_after=$(awk '/MemAvailable/{print $2}' /proc/meminfo)
meminfo_after=$(cat /proc/meminfo)
pss=0; count=0; cgmem=0; cgkmem=0
for p in $(pgrep -f '^/.sandpit/envd envd'); do
  grep -q "$dir" "/proc/$p/mountinfo" 2>/dev/null || continue
  kb=$(awk '/^Pss:/{print $2}' "/proc/$p/smaps_rollup" 2>/dev/null || echo 0)
  pss=$((pss + kb)); count=$((count + 1))
  # What the sandbox's memory cgroup is charged (its processes' memory and
  # the kernel's for them): unlike MemAvailable, other tenants of the
  # host do not move it. cgroup v1 (memory controller) or v2.
  cg=$(awk -F: '$2=="memory"{print $3}' "/proc/$p/cgroup")
  if [ -n "$cg" ] && [ -r "/sys/fs/cgroup/memory$cg/memory.usage_in_bytes" ]; then
    cgmem=$((cgmem + $(cat "/sys/fs/cgroup/memory$cg/memory.usage_in_bytes")))
    cgkmem=$((cgkmem + $(cat "/sys/fs/cgroup/memory$cg/memory.kmem.usage_in_bytes" 2>/dev/null || echo 0)))
  else
    cg=$(awk -F: '$1=="0"{print $3}' "/proc/$p/cgroup")
    if [ -r "/sys/fs/cgroup$cg/memory.current" ]; then
      cgmem=$((cgmem + $(cat "/sys/fs/cgroup$cg/memory.current")))
      cgkmem=$((cgkmem + $(awk '$1=="kernel"{print $2}' "/sys/fs/cgroup$cg/memory.stat")))
    fi
  fi
done
echo "| idle sandboxes | agents found | agent PSS per sandbox | sandbox cgroup memory (kernel part) per sandbox | MemAvailable drop per sandbox | implied sandboxes in 24 GiB |"
echo "|---:|---:|---:|---:|---:|---:|"
drop=$(( (free_before - free_after) / n ))
echo "| $n | $count | $((pss / count)) KiB | $((cgmem / 1024 / count)) ($((cgkmem / 1024 / count))) KiB | $drop KiB | $(( 24 * 1024 * 1024 / (drop > 0 ? drop : 1) )) |"
# Where it went, per sandbox (KiB), from the /proc/meminfo fields that moved.
echo
echo "per sandbox, by /proc/meminfo field (KiB): $(paste <(echo "$meminfo_before") <(echo "$meminfo_after") |
  awk -v n="$n" '{d=($5-$2)/n; if (d>=8 || d<=-8) printf "%s %+d, ", $1, d}')"
