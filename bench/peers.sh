#!/usr/bin/env bash
# peers.sh — how long do sandpit's peers take to start an isolated `true` and
# report its exit? Same work for each: fresh user, pid, mount, net, ipc, uts
# (and cgroup where the tool has it) namespaces, a root filesystem that is
# only the host's /usr read-only (plus /bin, /lib... symlinks), a fresh /proc
# and a minimal /dev; run /usr/bin/true; wait for its exit status.
#
# Usage (as root):  bench/peers.sh [-n RUNS]     (default 50 runs per peer)
# Output: a Markdown table (median, p95, min, max in ms) on stdout; progress
# and notes on stderr.
set -euo pipefail

RUNS=50
while getopts "n:h" opt; do
  case $opt in
    n) RUNS=$OPTARG ;;
    h) sed -n '2,12p' "$0"; exit 0 ;;
    *) exit 2 ;;
  esac
done

if [ "$(id -u)" -ne 0 ]; then
  echo "peers.sh: run as root (runc/crun/runsc need it)" >&2
  exit 1
fi

log() { printf '%s\n' "$*" >&2; }

# --- tools ------------------------------------------------------------------
need=()
command -v runc >/dev/null || need+=(runc)
command -v crun >/dev/null || need+=(crun)
command -v bwrap >/dev/null || need+=(bubblewrap)
command -v runsc >/dev/null || need+=(runsc)
command -v jq >/dev/null || need+=(jq)
command -v hyperfine >/dev/null || need+=(hyperfine)
if [ "${#need[@]}" -gt 0 ]; then
  log "installing: ${need[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >&2 ||
    { apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >&2; } ||
    log "warning: could not install some of: ${need[*]} (those peers are reported as missing)"
fi
command -v jq >/dev/null || { log "peers.sh: jq is required"; exit 1; }
HAVE_HYPERFINE=0
command -v hyperfine >/dev/null && HAVE_HYPERFINE=1

# --- the bundle shared by runc, crun and runsc --------------------------------
WORK=$(mktemp -d /tmp/sandpit-peers.XXXXXX)
chmod 755 "$WORK" # the mapped sandbox root must reach the rootfs
ID="peer-$$"
cleanup() {
  runc delete -f "$ID-runc" >/dev/null 2>&1 || true
  crun delete -f "$ID-crun" >/dev/null 2>&1 || true
  runsc delete -force "$ID-runsc" >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT

# The bundle both peer scripts run, and crun on this cgroup layout.
# shellcheck source=bench/peer_bundle.sh
. "$(dirname "$0")/peer_bundle.sh"

BWRAP=(bwrap --unshare-all --die-with-parent --ro-bind /usr /usr)
for l in bin lib lib64 sbin; do
  [ -e "/usr/$l" ] && BWRAP+=(--symlink "usr/$l" "/$l")
done
BWRAP+=(--proc /proc --dev /dev --tmpfs /tmp /usr/bin/true)

# name|command (run from $WORK)|how to wrap the timing loop|note
declare -a NAMES CMDS WRAPS NOTES
add() { NAMES+=("$1"); CMDS+=("$2"); WRAPS+=("$3"); NOTES+=("$4"); }
q() { printf '%q ' "$@"; }

add "baseline: fork+exec true" "/usr/bin/true" "" "no isolation; the floor"
add "baseline: unshare(1)" "unshare --user --map-root-user --pid --fork --mount --net --ipc --uts --cgroup /usr/bin/true" "" "namespaces only, no rootfs"
add "bwrap" "$(q "${BWRAP[@]}")" "" "bubblewrap $(bwrap --version 2>/dev/null | awk '{print $2}'); user ns maps root to the caller (root), no cgroup"
add "runc run" "runc run --bundle $WORK $ID-runc" "" "$(runc --version 2>/dev/null | head -1); creates a cgroup ($CGROUP_DESC)"
add "crun run" "crun run --bundle $WORK $ID-crun" "${CRUN_WRAP[*]:+$(q "${CRUN_WRAP[@]}")}" "$(crun --version 2>/dev/null | head -1)${CRUN_WRAP[*]:+; hybrid cgroups: run under a private cgroup2 mount}"
add "runsc run" "runsc --network=none run --bundle $WORK $ID-runsc" "" "gVisor $(runsc --version 2>/dev/null | head -1 | awk '{print $3}'), platform ptrace (default)"
add "runsc do" "runsc --rootless=false --network=none do /usr/bin/true" "" "gVisor, host root fs view (no bundle); for reference"

# --- timing -------------------------------------------------------------------
# Prints times in ms, one per line, for RUNS runs of a command (string, word-split).
time_runs() {
  local cmd=$1 wrap=$2 json=$WORK/hf.json
  if [ "$HAVE_HYPERFINE" = 1 ]; then
    # shellcheck disable=SC2086
    (cd "$WORK" && eval "$wrap" hyperfine -N --warmup 3 --runs "$RUNS" --export-json "$json" "$(printf '%q' "$cmd")" >/dev/null 2>&1) || return 1
    jq -r '.results[0].times[] * 1000' "$json"
  else
    local loop='for i in $(seq '"$RUNS"'); do s=$(date +%s%N); '"$cmd"' >/dev/null 2>&1 || exit 1; e=$(date +%s%N); echo $(( (e - s) / 1000 )); done'
    # shellcheck disable=SC2086
    (cd "$WORK" && eval "$wrap" bash -c "$(printf '%q' "$loop")") | awk '{printf "%.3f\n", $1 / 1000}'
  fi
}

# median p95 min max of ms values on stdin (nearest-rank percentiles)
stats() {
  sort -n | awk '{v[NR]=$1} END {
    if (NR == 0) exit 1
    p50 = v[int((NR + 1) / 2)]; if (NR % 2 == 0) p50 = (v[NR/2] + v[NR/2 + 1]) / 2
    i95 = int(0.95 * NR + 0.999999); if (i95 < 1) i95 = 1
    printf "%.2f %.2f %.2f %.2f\n", p50, v[i95], v[1], v[NR] }'
}

log "host: $(uname -sr), $(nproc) CPUs, $CGROUP_DESC; runs per peer: $RUNS; timer: $([ "$HAVE_HYPERFINE" = 1 ] && echo "hyperfine $(hyperfine --version | awk '{print $2}') -N" || echo "shell loop")"

ROWS=()
for i in "${!NAMES[@]}"; do
  name=${NAMES[$i]} cmd=${CMDS[$i]} wrap=${WRAPS[$i]} note=${NOTES[$i]}
  log "== $name: $cmd"
  # One probe run: must exit 0, else record why it cannot start here.
  if ! err=$(cd "$WORK" && eval "$wrap" bash -c "$(printf '%q' "$cmd")" 2>&1 >/dev/null); then
    why=$(printf '%s' "$err" | grep -v '^\s*$' | head -2 | tr '\n' ' ' | cut -c1-160)
    ROWS+=("| $name | – | – | – | – | does not start here: ${why:-non-zero exit} |")
    log "   cannot start: $why"
    continue
  fi
  if ! times=$(time_runs "$cmd" "$wrap") || [ -z "$times" ]; then
    ROWS+=("| $name | – | – | – | – | failed during the timed runs |")
    continue
  fi
  read -r p50 p95 min max < <(printf '%s\n' "$times" | stats)
  log "   median ${p50} ms, p95 ${p95} ms"
  ROWS+=("| $name | $p50 | $p95 | $min | $max | $note |")
done

echo "Start an isolated \`/usr/bin/true\` and wait for its exit; $RUNS runs each, $(uname -r), $(nproc) CPUs, $(date -u +%Y-%m-%dT%H:%MZ)."
echo
echo "| peer | median ms | p95 ms | min ms | max ms | notes |"
echo "|---|---:|---:|---:|---:|---|"
printf '%s\n' "${ROWS[@]}"
