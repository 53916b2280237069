#!/usr/bin/env bash
# Runs the official E2B SDK compatibility tests against a real `sandpit serve`.
# Usage: test/compat/run.sh [test files...]   (default: every *.test.mjs)
#        test/compat/run.sh --install         only install the pinned packages
#                                             (Go tests drive them too)
# Env:   SANDPIT_BIN  server binary (default <repo>/bin/sandpit; build it first:
#                     make build)
set -euo pipefail
cd "$(dirname "$0")"

# Install the pinned SDKs unless node_modules already matches the lock file.
# `npm ci` deletes node_modules first, so a second run.sh started while one is
# running must not reinstall under it: install under a lock, and only when
# needed.
mkdir -p .work
installed() {
  [ -f package-lock.json ] && [ node_modules/.package-lock.json -nt package-lock.json ] &&
    [ node_modules/.package-lock.json -nt package.json ] && npm ls --depth=0 >/dev/null 2>&1
}
(
  flock 9
  if ! installed; then
    if [ -f package-lock.json ]; then
      npm ci --no-audit --no-fund --loglevel=error >/dev/null
    else
      npm install --no-audit --no-fund --loglevel=error >/dev/null
    fi
  fi
) 9>.work/npm.lock

if [ "${1:-}" = --install ]; then
  exit 0
fi
if [ "$#" -gt 0 ]; then
  files=("$@")
else
  files=(*.test.mjs)
fi

unset E2B_DEBUG
# After a file's last test and after-hooks (the leak check and the daemon's
# stop included), something in the SDK's HTTP stack keeps node alive for
# ~20 s more (no handle node lists): don't wait for it.
exec node --test --test-force-exit --test-concurrency=1 "${files[@]}"
