#!/usr/bin/env bash
# peers_load.sh — the peers at the same concurrency as bench/load.mjs: C
# workers start isolated `true`s with `runc run` and with `crun run` (the
# bundle of bench/peers.sh: user, pid, mount, net, ipc, uts and cgroup
# namespaces, a read-only rootfs of the host's /usr, fresh /proc, tmpfs
# /dev), N runs in total per peer, each run waited for.
#
# Usage (as root):  bench/peers_load.sh [-c CONCURRENCY] [-n RUNS] [-t TIMEOUT_S]
#                   (defaults: -c 8 -n 200 -t 600; the timeout is per peer)
# Output: a Markdown table (runs/s, p50/p95/p99/max ms per run) on stdout,
# progress on stderr. Everything it starts is killed and deleted on exit,
# error or ^C.
set -euo pipefail

C=8
RUNS=200
TIMEOUT=600
while getopts "c:n:t:h" opt; do
  case $opt in
    c) C=$OPTARG ;;
    n) RUNS=$OPTARG ;;
    t) TIMEOUT=$OPTARG ;;
    h) sed -n '2,12p' "$0"; exit 0 ;;
    *) exit 2 ;;
  esac
done
for v in "$C" "$RUNS" "$TIMEOUT"; do
  [[ $v =~ ^[1-9][0-9]*$ ]] || { echo "peers_load.sh: -c, -n and -t take positive integers" >&2; exit 2; }
done
if [ "$(id -u)" -ne 0 ]; then
  echo "peers_load.sh: run as root (runc/crun need it)" >&2
  exit 1
fi
log() { printf '%s\n' "$*" >&2; }

need=()
command -v runc >/dev/null || need+=(runc)
command -v crun >/dev/null || need+=(crun)
if [ "${#need[@]}" -gt 0 ]; then
  log "installing: ${need[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >&2 ||
    { apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >&2; } ||
    log "warning: could not install some of: ${need[*]} (those peers are reported as missing)"
fi

# --- the bundle: the same as bench/peers.sh ------------------------------------
WORK=$(mktemp -d /tmp/sandpit-peers-load.XXXXXX)
chmod 755 "$WORK" # the mapped sandbox root must reach the rootfs
ID="peerload-$$"
WORKERS=()
cleanup() {
  local pid
  for pid in "${WORKERS[@]}"; do kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${WORKERS[@]}"; do wait "$pid" 2>/dev/null || true; done
  WORKERS=()
  # A run cut short leaves its container's state behind: delete ours only.
  local tool c
  for tool in runc crun; do
    command -v $tool >/dev/null || continue
    for c in $($tool list -q 2>/dev/null | grep "^$ID-" || true); do
      $tool delete -f "$c" >/dev/null 2>&1 || true
    done
  done
}
trap 'cleanup; rm -rf "$WORK"' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# The bundle both peer scripts run, and crun on this cgroup layout.
# shellcheck source=bench/peer_bundle.sh
. "$(dirname "$0")/peer_bundle.sh"

# One worker: runs i = k, k+C, k+2C, ... < RUNS until the deadline; one line
# per run in $out ("ms" or "fail"). $EPOCHREALTIME: no fork for the clock.
# shellcheck disable=SC2016
WORKER='
tool=$1 k=$2 out=$3 deadline=$4
for ((i = k; i < RUNS; i += C)); do
  (( $(date +%s) < deadline )) || { echo timeout >>"$out"; exit 0; }
  s=${EPOCHREALTIME/./}
  if timeout -k 5 60 $tool run --bundle "$WORK" "$ID-$tool-$i" >/dev/null 2>>"$out.err"; then
    e=${EPOCHREALTIME/./}
    echo $(( (e - s) )) >>"$out"
  else
    echo fail >>"$out"
  fi
done'
export RUNS C WORK ID

# p50 p95 p99 max of ms values on stdin (nearest-rank percentiles)
stats() {
  sort -n | awk '{v[NR]=$1} END {
    if (NR == 0) exit 1
    p50 = v[int((NR + 1) / 2)]; if (NR % 2 == 0) p50 = (v[NR/2] + v[NR/2 + 1]) / 2
    n95 = int(0.95 * NR + 0.999999); n99 = int(0.99 * NR + 0.999999)
    printf "%.1f %.1f %.1f %.1f\n", p50, v[n95], v[n99], v[NR] }'
}

log "host: $(uname -sr), $(nproc) CPUs, $CGROUP_DESC; concurrency $C, $RUNS runs per peer, timeout ${TIMEOUT}s per peer"
ROWS=()
for tool in runc crun; do
  if ! command -v $tool >/dev/null; then
    ROWS+=("| $tool run | – | – | – | – | – | – | – | not installed |")
    continue
  fi
  wrap=()
  note="$($tool --version 2>/dev/null | head -1)"
  if [ $tool = crun ] && [ "${#CRUN_WRAP[@]}" -gt 0 ]; then
    wrap=("${CRUN_WRAP[@]}")
    note+="; hybrid cgroups: run under a private cgroup2 mount"
  elif [ $tool = runc ]; then
    note+="; creates a cgroup ($CGROUP_DESC)"
  fi
  # One probe run outside the timing: it must start here.
  if ! err=$(cd "$WORK" && "${wrap[@]}" $tool run --bundle "$WORK" "$ID-$tool-probe" 2>&1 >/dev/null); then
    why=$(printf '%s' "$err" | grep -v '^\s*$' | head -2 | tr '\n' ' ' | cut -c1-160)
    ROWS+=("| $tool run | – | – | – | – | – | – | – | does not start here: ${why:-non-zero exit} |")
    log "$tool: cannot start: $why"
    continue
  fi
  log "== $tool run: $C at once, $RUNS runs"
  rm -f "$WORK"/$tool.*
  deadline=$(($(date +%s) + TIMEOUT))
  t0=${EPOCHREALTIME/./}
  for ((k = 0; k < C; k++)); do
    # setsid: a worker and whatever it started can be killed as one group.
    setsid "${wrap[@]}" bash -c "$WORKER" worker $tool $k "$WORK/$tool.$k" $deadline &
    WORKERS+=($!)
  done
  for pid in "${WORKERS[@]}"; do wait "$pid" || true; done
  WORKERS=()
  t1=${EPOCHREALTIME/./}
  : >"$WORK/$tool.all"
  for ((k = 0; k < C; k++)); do cat "$WORK/$tool.$k" >>"$WORK/$tool.all" 2>/dev/null || true; done
  ok=$(grep -c '^[0-9]' "$WORK/$tool.all" || true)
  fails=$(grep -c '^fail' "$WORK/$tool.all" || true)
  timedout=$(grep -c '^timeout' "$WORK/$tool.all" || true)
  wall=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", (b - a) / 1e6 }')
  rate=$(awk -v n="$ok" -v w="$wall" 'BEGIN { printf "%.1f", n / w }')
  if [ "$ok" -gt 0 ]; then
    read -r p50 p95 p99 max < <(grep '^[0-9]' "$WORK/$tool.all" | awk '{printf "%.3f\n", $1 / 1000}' | stats)
  else
    p50=– p95=– p99=– max=–
  fi
  errs=""
  if [ "$fails" -gt 0 ] || [ "$timedout" -gt 0 ]; then
    first=$(cat "$WORK"/$tool.*.err 2>/dev/null | grep -v '^\s*$' | head -1 | cut -c1-120)
    errs="; $fails failed${first:+ (first: $first)}"
    [ "$timedout" -gt 0 ] && errs+="; $timedout worker(s) stopped at the timeout"
  fi
  log "   $ok runs in ${wall}s: $rate runs/s, p50 $p50 ms, p99 $p99 ms$errs"
  ROWS+=("| $tool run | $ok/$RUNS | $wall | $rate | $p50 | $p95 | $p99 | $max | $note$errs |")
done

echo "Start an isolated \`/usr/bin/true\` and wait for its exit, $C at once, $RUNS runs per peer; $(uname -r), $(nproc) CPUs, $(date -u +%Y-%m-%dT%H:%MZ)."
echo
echo "    bench/peers_load.sh -c $C -n $RUNS -t $TIMEOUT"
echo
echo "| peer | runs | wall s | runs/s | p50 ms | p95 ms | p99 ms | max ms | notes |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|---|"
printf '%s\n' "${ROWS[@]}"
