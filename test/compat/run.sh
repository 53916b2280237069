#!/usr/bin/env bash
# Runs the official E2B SDK compatibility tests against a real `sandpit serve`.
# Usage: test/compat/run.sh [test files...]   (default: every *.test.mjs)
# Env:   SANDPIT_BIN  server binary (default <repo>/bin/sandpit; build it first:
#                     go build -o bin/sandpit ./cmd/sandpit)
set -euo pipefail
cd "$(dirname "$0")"

if [ -f package-lock.json ]; then
  npm ci --no-audit --no-fund --loglevel=error >/dev/null
else
  npm install --no-audit --no-fund --loglevel=error >/dev/null
fi

if [ "$#" -gt 0 ]; then
  files=("$@")
else
  files=(*.test.mjs)
fi

unset E2B_DEBUG
exec node --test --test-concurrency=1 "${files[@]}"
