"""Fixtures for running the Python examples against a real `sandpit serve`.

One server per test session: a fresh data dir, a free loopback port and a
fresh API key, as test/compat/harness.mjs starts one for the JS suite. Each
example runs as a subprocess with only the three E2B variables pointing at
it, exactly as a user would run it, and its output is checked by the test.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import warnings
from dataclasses import dataclass
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
EXAMPLES = HERE.parent
REPO = EXAMPLES.parent.parent
WORK = EXAMPLES / ".work"  # gitignored: server logs of the last run

STARTUP_DEADLINE = float(os.environ.get("SANDPIT_STARTUP_TIMEOUT", "30"))
SHUTDOWN_DEADLINE = 20.0


def free_port() -> int:
    """Asks the kernel for a free TCP port on loopback."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def new_api_key() -> str:
    """A fresh key in the shape E2B (and the SDK's own check) expects."""
    return "e2b_" + secrets.token_hex(20)


@dataclass
class Server:
    url: str
    api_key: str
    data_dir: str
    log_path: Path
    proc: subprocess.Popen

    def env(self, **extra: str) -> dict[str, str]:
        """The environment a user runs an example with: theirs plus the
        three variables that point the E2B SDK at sandpit."""
        env = dict(os.environ)
        env.pop("E2B_DEBUG", None)
        env.update(
            E2B_API_URL=self.url,
            E2B_SANDBOX_URL=self.url,
            E2B_API_KEY=self.api_key,
            PYTHONUNBUFFERED="1",
        )
        env.update(extra)
        return env

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"

    def running_sandboxes(self) -> list[dict]:
        """GET /sandboxes: the sandboxes the API reports as running."""
        req = urllib.request.Request(
            self.url + "/sandboxes", headers={"X-API-Key": self.api_key}
        )
        with urllib.request.urlopen(req, timeout=10) as res:
            return json.load(res)


def _mount_ns(pid: str) -> str | None:
    try:
        return os.readlink(f"/proc/{pid}/ns/mnt")
    except OSError:
        return None


def _sandbox_processes(data_dir: str) -> list[int]:
    """Host processes in a mount namespace of their own whose mounts name
    data_dir: processes of that daemon's sandboxes."""
    own = _mount_ns("self")
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        ns = _mount_ns(name)
        if ns is None or ns == own:
            continue
        try:
            mounts = Path(f"/proc/{name}/mountinfo").read_text(errors="replace")
        except OSError:
            continue
        if data_dir in mounts:
            found.append(int(name))
    return found


@pytest.fixture(scope="session")
def server():
    if os.geteuid() != 0:
        pytest.skip("the examples run against a real sandpit server, which needs root (run as root, as CI does)")
    binary = REPO / os.environ.get("SANDPIT_BIN", "bin/sandpit")
    if not os.access(binary, os.X_OK):
        pytest.fail(f"server not built: {binary} is missing; run `make build` or set SANDPIT_BIN")
    port = free_port()
    data_dir = tempfile.mkdtemp(prefix="sandpit-pyex-")
    WORK.mkdir(exist_ok=True)
    log_path = WORK / f"server-{port}.log"
    api_key = new_api_key()
    env = dict(os.environ, SANDPIT_API_KEY=api_key)
    env.pop("E2B_DEBUG", None)
    args = [str(binary), "serve", "--listen", f"127.0.0.1:{port}", "--data-dir", data_dir]
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(args, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
    srv = Server(f"http://127.0.0.1:{port}", api_key, data_dir, log_path, proc)

    deadline = time.monotonic() + STARTUP_DEADLINE
    while True:
        if proc.poll() is not None:
            pytest.fail(f"sandpit serve exited early with {proc.returncode}:\n{srv.log()}")
        try:
            with urllib.request.urlopen(srv.url + "/health", timeout=1) as res:
                if 200 <= res.status < 300:
                    break
        except OSError:
            pass  # not listening yet
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"sandpit serve did not answer /health within {STARTUP_DEADLINE}s:\n{srv.log()}")
        time.sleep(0.05)

    yield srv

    crashed = proc.poll()
    if crashed is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(SHUTDOWN_DEADLINE)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    # Sandboxes nobody can adopt any more (the data dir is about to go) must
    # not outlive the run on a shared machine.
    orphans = _sandbox_processes(data_dir)
    for pid in orphans:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    if orphans:
        print(f"note: killed {len(orphans)} sandbox process(es) left in {data_dir}", file=sys.stderr)
    shutil.rmtree(data_dir, ignore_errors=True)
    if crashed is not None:
        pytest.fail(f"sandpit serve died during the tests (exit {crashed}):\n{srv.log()}")


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
            p = subprocess.run(cmd, env=server.env(**(env or {})), capture_output=True, text=True,
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
