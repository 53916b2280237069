#!/usr/bin/env bash
# Upload and download of a 1 GiB file through the daemon's API (POST/GET
# /files via the proxy to the sandbox's agent), with curl as the client.
# The sandbox gets a 3 GiB disk: an overwrite is atomic (a new file, then a
# rename), so it needs room for the old and the new 1 GiB at once.
# Usage (as root, after `make build`): bench/transfer.sh [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3}
key=e2b_$(head -c 20 /dev/urandom | od -An -tx1 | tr -d ' \n')
dir=$(mktemp -d /tmp/sandpit-bench-XXXXXX)
SANDPIT_API_KEY=$key bin/sandpit serve --listen 127.0.0.1:49986 --data-dir "$dir" --warm-pool off --kill-on-stop --default-disk-mb 3072 >"$dir.log" 2>&1 &
serve=$!
trap 'kill -TERM $serve 2>/dev/null; wait $serve 2>/dev/null; rm -rf "$dir" "$dir.log" "$dir.bin"' EXIT
for _ in $(seq 100); do curl -sf http://127.0.0.1:49986/health >/dev/null && break; sleep 0.1; done
head -c 1073741824 /dev/urandom >"$dir.bin"
sbx=$(curl -sf -XPOST -H "X-API-KEY: $key" -H 'Content-Type: application/json' http://127.0.0.1:49986/v2/sandboxes -d '{"templateID":"base"}')
id=$(sed -E 's/.*"sandboxID":"([^"]+)".*/\1/' <<<"$sbx")
tok=$(sed -E 's/.*"envdAccessToken":"([^"]+)".*/\1/' <<<"$sbx")
hdr=(-H "E2b-Sandbox-Id: $id" -H "E2b-Sandbox-Port: 49983" -H "X-Access-Token: $tok")
echo "| round | upload MB/s | download MB/s |"
echo "|---:|---:|---:|"
for r in $(seq "$rounds"); do
  up=$(curl -sf -o /dev/null -w '%{speed_upload}' -XPOST -T "$dir.bin" -H 'Content-Type: application/octet-stream' "${hdr[@]}" "http://127.0.0.1:49986/files?path=/home/user/big.bin")
  down=$(curl -sf -o /dev/null -w '%{speed_download}' "${hdr[@]}" "http://127.0.0.1:49986/files?path=/home/user/big.bin")
  echo "| $r | $((${up%.*} / 1000000)) | $((${down%.*} / 1000000)) |"
done
