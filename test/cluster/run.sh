#!/usr/bin/env bash
# Starts a test cluster (up.sh), runs the official JS SDK against its API
# role (sdk.test.mjs), and tears it down (down.sh) whatever happened.
# Usage: test/cluster/run.sh          Env: SANDPIT_BIN (default bin/sandpit)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
dir=$(mktemp -d /tmp/sandpit-cluster-XXXXXX)
# The last run's logs stay in test/cluster/.work/logs (gitignored).
trap 'rm -rf "$here/.work/logs"; mkdir -p "$here/.work"; cp -r "$dir/logs" "$here/.work/logs" 2>/dev/null; "$here/down.sh" "$dir"' EXIT

# The pinned SDK, installed as test/compat installs it.
mkdir -p "$here/../compat/.work"
(
	cd "$here/../compat"
	flock 9
	if ! { [ node_modules/.package-lock.json -nt package-lock.json ] && npm ls --depth=0 >/dev/null 2>&1; }; then
		npm ci --no-audit --no-fund --loglevel=error >/dev/null
	fi
) 9>"$here/../compat/.work/npm.lock"

rmdir "$dir"
eval "$("$here/up.sh" "$dir")"
unset E2B_DEBUG
node --test --test-force-exit --test-concurrency=1 "$here"/*.test.mjs
