"""A real `sandpit serve` for the Python suites (test/compat-py and
examples/python): a free loopback port, a temporary data dir, a fresh API
key, the SDK environment a user sets, and a stop that leaves no sandbox
process behind. It needs nothing but the standard library.

Like test/compat/harness.mjs it builds nothing: SANDPIT_BIN names the binary
(default <repo>/bin/sandpit).
"""

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
WORK = HERE / ".work"  # gitignored: server logs of the last run
STARTUP_DEADLINE = float(os.environ.get("SANDPIT_STARTUP_TIMEOUT_S", "30"))
SHUTDOWN_DEADLINE = 20.0


def new_api_key() -> str:
    """A fresh key in the shape E2B's keys have: e2b_ and 40 hex digits."""
    return "e2b_" + secrets.token_hex(20)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _mount_ns(pid) -> str | None:
    try:
        return os.readlink(f"/proc/{pid}/ns/mnt")
    except OSError:
        return None


def sandbox_processes(data_dir: str, exclude_ns=()) -> list[tuple[int, str, str]]:
    """Host processes in a mount namespace other than ours (and exclude_ns)
    whose mounts name data_dir: the processes of that daemon's sandboxes."""
    skip = {_mount_ns("self"), *exclude_ns} - {None}
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        ns = _mount_ns(name)
        if ns is None or ns in skip:
            continue
        try:
            mounts = Path(f"/proc/{name}/mountinfo").read_text()
            cmd = Path(f"/proc/{name}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            continue
        if data_dir not in mounts:
            continue
        mount = next(line for line in mounts.splitlines() if data_dir in line)
        found.append((int(name), cmd, mount))
    return found


class Server:
    """One `sandpit serve` on a free loopback port with a temporary data dir."""

    def __init__(self, name: str, extra_args=(), work: Path = WORK):
        bin_path = REPO / os.environ.get("SANDPIT_BIN", "bin/sandpit")
        if not os.access(bin_path, os.X_OK):
            raise RuntimeError(
                f"server not built: {bin_path} is missing; build it with "
                f"(cd {REPO} && make build) or set SANDPIT_BIN"
            )
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.api_key = new_api_key()
        self.data_dir = tempfile.mkdtemp(prefix="sandpit-compat-py-")
        work.mkdir(exist_ok=True)
        self.log_path = work / f"{name}-{self.port}.log"
        self.cleanup: list = []  # sandboxes to kill after the module
        env = {k: v for k, v in os.environ.items() if k != "E2B_DEBUG"}
        env["SANDPIT_API_KEY"] = self.api_key
        # The data dir goes with the server, so its sandboxes go too.
        self.args = [str(bin_path), "serve", "--listen", f"127.0.0.1:{self.port}", "--data-dir", self.data_dir, "--kill-on-stop", *extra_args]
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(self.args, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + STARTUP_DEADLINE
        while True:
            if self.proc.poll() is not None:
                self._fail(f"exited early with code {self.proc.returncode}")
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=1) as r:
                    if 200 <= r.status < 300:
                        break
            except OSError:
                pass  # not listening yet
            if time.monotonic() > deadline:
                self._fail(f"GET /health did not answer 2xx within {STARTUP_DEADLINE} s")
            time.sleep(0.025)

    def read_log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"

    def _fail(self, why: str):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        shutil.rmtree(self.data_dir, ignore_errors=True)
        raise RuntimeError(
            f"sandpit serve did not start ({why}).\ncommand: {' '.join(self.args)}\n"
            f"----- server log ({self.log_path}) -----\n{self.read_log()}\n-----"
        )

    def env(self, **extra: str) -> dict[str, str]:
        """The environment to run a user's program with: ours plus the three
        variables that point the E2B SDKs at this server."""
        env = dict(os.environ)
        env.pop("E2B_DEBUG", None)
        env.update(E2B_API_URL=self.url, E2B_SANDBOX_URL=self.url, E2B_API_KEY=self.api_key)
        env.update(extra)
        return env

    def running_sandboxes(self) -> list[dict]:
        """GET /sandboxes: the sandboxes the API reports as running."""
        req = urllib.request.Request(self.url + "/sandboxes", headers={"X-API-Key": self.api_key})
        with urllib.request.urlopen(req, timeout=10) as res:
            return json.load(res)

    def use_env(self):
        """Points the SDKs at this server, exactly as a user would."""
        os.environ["E2B_API_URL"] = self.url
        os.environ["E2B_SANDBOX_URL"] = self.url
        os.environ["E2B_API_KEY"] = self.api_key
        os.environ.pop("E2B_DEBUG", None)

    def track(self, sbx):
        """Remembers a sandbox so it is killed after the module even when a test fails."""
        self.cleanup.append(sbx.sandbox_id)
        return sbx

    def leftovers(self, ids, timeout=10.0) -> list[str]:
        """Host processes of the given (killed) sandboxes still running after timeout."""
        deadline = time.monotonic() + timeout
        daemon_ns = _mount_ns(self.proc.pid)
        while True:
            found = [
                f"pid {pid}: {cmd}\n    (mount: {mount})"
                for pid, cmd, mount in sandbox_processes(self.data_dir, [daemon_ns])
                if any(f"/{i}/" in mount for i in ids)
            ]
            if not found or time.monotonic() > deadline:
                return found
            time.sleep(0.1)

    def stop(self):
        """SIGTERM, then make sure no sandbox of this throwaway data dir lives on."""
        failure = None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(SHUTDOWN_DEADLINE)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                failure = f"sandpit serve ignored SIGTERM for {SHUTDOWN_DEADLINE} s (killed); log: {self.log_path}"
        for pid, _, _ in sandbox_processes(self.data_dir):
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        shutil.rmtree(self.data_dir, ignore_errors=True)
        if failure:
            raise RuntimeError(failure)
