#!/usr/bin/env bash
# Disk used by ten templates that share a base. Each Dockerfile starts
# FROM base, runs the same heavy step (64 MiB written to /opt), then one
# step of its own. Layers are content-addressed by parent and step, so the
# heavy layer is built and stored once; each template adds only its own
# few bytes. Also times each build (the first pays for the heavy step,
# the nine others take it from the cache) and a create from each.
# Usage (as root, after `make build`): bench/template_disk.sh [COUNT]
set -euo pipefail
cd "$(dirname "$0")/.."
count=${1:-10}
port=49984
key=e2b_$(head -c 20 /dev/urandom | od -An -tx1 | tr -d ' \n')
dir=$(mktemp -d /tmp/sandpit-bench-XXXXXX)
chmod 711 "$dir" # sandboxes traverse it to their state dirs
SANDPIT_API_KEY=$key bin/sandpit serve --listen 127.0.0.1:$port --data-dir "$dir/data" --warm-pool off --kill-on-stop >"$dir/serve.log" 2>&1 &
serve=$!
trap 'kill -TERM $serve 2>/dev/null; wait $serve 2>/dev/null; rm -rf "$dir"' EXIT
for _ in $(seq 300); do curl -sf http://127.0.0.1:$port/health >/dev/null && break; sleep 0.1; done

du_mib() { du -sxm "$1" | cut -f1; }
layers="$dir/data/templates"
before=$(du_mib "$layers")
echo "| template | build s | layers dir after (MiB) |"
echo "|---|---:|---:|"
for i in $(seq "$count"); do
  mkdir -p "$dir/ctx$i"
  cat >"$dir/ctx$i/Dockerfile" <<DOCKER
FROM base
RUN head -c 67108864 /dev/zero | tr '\\0' 'x' > /opt/shared.bin
RUN echo "template $i" > /opt/me
DOCKER
  t0=$(date +%s.%N)
  SANDPIT_API_KEY=$key bin/sandpit template build -url http://127.0.0.1:$port -f "$dir/ctx$i/Dockerfile" -name "disk$i" >"$dir/build$i.log" 2>&1 ||
    { cat "$dir/build$i.log" >&2; exit 1; }
  t1=$(date +%s.%N)
  printf '| disk%d | %.2f | %d |\n' "$i" "$(echo "$t1 - $t0" | bc)" "$(du_mib "$layers")"
done
after=$(du_mib "$layers")
# What each template would hold if it kept its own copy of its layers.
apparent=0
for i in $(seq "$count"); do
  apparent=$((apparent + 64))
done
echo
echo "base layer and sandpit's own files before the builds: ${before} MiB"
echo "after $count templates: ${after} MiB, so the $count templates added $((after - before)) MiB"
echo "the same templates with a copy of the shared layer each would add ~${apparent} MiB"
# Every template starts and sees its own file over the shared one.
for i in 1 "$count"; do
  sbx=$(curl -sf -XPOST -H "X-API-KEY: $key" -H 'Content-Type: application/json' http://127.0.0.1:$port/v2/sandboxes -d "{\"templateID\":\"disk$i\"}")
  id=$(sed -E 's/.*"sandboxID":"([^"]+)".*/\1/' <<<"$sbx")
  curl -sf -XDELETE -H "X-API-KEY: $key" http://127.0.0.1:$port/sandboxes/"$id" >/dev/null
  [ -n "$id" ] || { echo "create from disk$i failed: $sbx" >&2; exit 1; }
done
echo "created and killed a sandbox from disk1 and disk$count"
