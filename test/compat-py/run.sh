#!/usr/bin/env bash
# Runs the official E2B Python SDKs (e2b, e2b-code-interpreter) against a real
# `sandpit serve`, with pytest.
# Usage: test/compat-py/run.sh [pytest args...]   (default: every test_*.py)
# Env:   SANDPIT_BIN  server binary (default <repo>/bin/sandpit; build it first:
#                     make build)
set -euo pipefail
cd "$(dirname "$0")"

# A virtualenv from Debian's own Python (python3-venv), never whatever python3
# comes first on PATH: the suite must not depend on a developer's pyenv. It is
# (re)made only when requirements.txt or the interpreter changed, under a lock
# so that a second run.sh does not reinstall under a running one.
python=/usr/bin/python3
venv=.venv
mkdir -p .work
stamp() { { sha256sum requirements.txt; "$python" -c 'import sys; print(sys.version)'; } | sha256sum | cut -d' ' -f1; }
(
  flock 9
  want=$(stamp)
  if [ "$(cat "$venv/.installed" 2>/dev/null)" != "$want" ]; then
    rm -rf "$venv"
    "$python" -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check --no-input \
      --require-hashes --only-binary=:all: -r requirements.txt
    echo "$want" >"$venv/.installed"
  fi
) 9>.work/venv.lock

unset E2B_DEBUG E2B_API_KEY E2B_API_URL E2B_SANDBOX_URL E2B_DOMAIN PYTHONPATH PYTHONHOME
exec "$venv/bin/python" -m pytest "$@"
