"""Fixtures for running the Python examples against a real `sandpit serve`.

One server per test session: a fresh data dir, a free loopback port and a
fresh API key, as test/compat/harness.mjs starts one for the JS suite. Each
example runs as a subprocess with only the three E2B variables pointing at
it, exactly as a user would run it, and its output is checked by the test.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
EXAMPLES = HERE.parent
REPO = EXAMPLES.parent.parent
WORK = EXAMPLES / ".work"  # gitignored: server logs of the last run

# The server harness the Python compat suite uses (standard library only).
sys.path.insert(0, str(REPO / "test" / "compat-py"))
from sandpit_server import Server, free_port  # noqa: E402


@pytest.fixture(scope="session")
def server():
    if os.geteuid() != 0:
        pytest.skip("the examples run against a real sandpit server, which needs root (run as root, as CI does)")
    srv = Server("examples", work=WORK)
    yield srv
    crashed = srv.proc.poll()
    srv.stop()
    if crashed is not None:
        pytest.fail(f"sandpit serve died during the tests (exit {crashed}):\n{srv.read_log()}")


# Examples on the async SDK, whose HTTP client may abort at interpreter
# exit (see run_example).
ABORTS_AT_EXIT = {"async_parallel.py"}


@pytest.fixture
def run_example(server, request):
    """Runs examples/python/NAME.py as a user would and returns its
    completed process; fails the test with the output when it fails.
    After the test, no sandbox may be left running: every example cleans
    up after itself."""

    def run(name: str, *args: str, timeout: float = 300, check: bool = True, env: dict | None = None,
            cwd: Path | None = None) -> subprocess.CompletedProcess:
        cmd = [sys.executable, str(EXAMPLES / name), *args]
        # The async SDK's HTTP client (pyqwest 0.12, a Rust extension on a
        # tokio runtime, under e2b 2.63) aborts the interpreter at exit in
        # about one run in four of a short asyncio program, whatever the
        # server: a worker thread finishing a response read calls into
        # Python after finalization began (SIGABRT from PyThread_exit_thread,
        # no Python frame; the same rate against the daemon of before this
        # change, and with the compat suite's venv). The program's work is
        # done by then, and the test still checks all of its output; the
        # abort is reported as a warning rather than failing the example.
        try:
            p = subprocess.run(cmd, env=server.env(PYTHONUNBUFFERED="1", **(env or {})), capture_output=True, text=True,
                               timeout=timeout, cwd=cwd or EXAMPLES)
        except subprocess.TimeoutExpired as e:
            pytest.fail(f"{name} ran over {timeout}s\n--- stdout ---\n{e.stdout}\n--- stderr ---\n{e.stderr}")
        if p.returncode == -signal.SIGABRT and name in ABORTS_AT_EXIT:
            warnings.warn(f"{name}: the SDK's HTTP client aborted the interpreter at exit (pyqwest at shutdown)")
            p = subprocess.CompletedProcess(p.args, 0, p.stdout, p.stderr)
        # Shown by pytest for a failed test (and with -rP for a passed one).
        print(f"--- {name} stdout ---\n{p.stdout}--- {name} stderr ---\n{p.stderr}")
        if check and p.returncode != 0:
            pytest.fail(f"{name} exited {p.returncode}\n--- stdout ---\n{p.stdout}\n--- stderr ---\n{p.stderr}")
        return p

    yield run

    assert_no_sandboxes(server)


def assert_no_sandboxes(server: Server, wait: float = 10) -> None:
    deadline = time.monotonic() + wait
    while True:
        left = server.running_sandboxes()
        if not left or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert left == [], f"sandboxes left running: {[s.get('sandboxID') for s in left]}"


@pytest.fixture
def openai_stub():
    """A scripted OpenAI-compatible server on loopback (see openai_stub.py)."""
    from openai_stub import ScriptedOpenAI

    stub = ScriptedOpenAI()
    yield stub
    stub.close()
