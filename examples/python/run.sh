#!/usr/bin/env bash
# Runs every Python example against a real `sandpit serve`, as pytest tests.
# Usage: examples/python/run.sh [pytest args...]   (e.g. -k hello)
# Env:   SANDPIT_BIN  server binary (default <repo>/bin/sandpit; `make build`)
#
# The pinned dependencies (requirements.txt) go into .venv, made from
# Debian's python3 (python3-venv). It is rebuilt only when requirements.txt
# changes, under a lock, so two runs never install under each other.
set -euo pipefail
cd "$(dirname "$0")"

venv=.venv
mkdir -p .work
(
  flock 9
  if ! cmp -s requirements.txt "$venv/requirements.txt" 2>/dev/null; then
    echo "examples/python: installing requirements.txt into $venv"
    rm -rf "$venv"
    /usr/bin/python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check -r requirements.txt
    cp requirements.txt "$venv/requirements.txt"
  fi
) 9>.work/venv.lock

unset E2B_DEBUG
exec "$venv/bin/python" -m pytest -p no:cacheprovider "$@" tests
