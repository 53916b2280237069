"""Fixtures for the Python compat suite: one real `sandpit serve` per test
module (sandpit_server.py), and the E2B SDKs pointed at it through the three
environment variables a user sets.
"""

import os

import pytest

from sandpit_server import Server


@pytest.fixture(scope="module")
def server(request):
    """A server for this module, with the SDK environment set; afterwards its
    tracked sandboxes are killed, none may leave a process behind, and the
    server stops on SIGTERM."""
    from e2b import Sandbox

    s = Server(request.module.__name__.rsplit(".", 1)[-1], getattr(request.module, "SERVER_ARGS", ()))
    saved = {k: os.environ.get(k) for k in ("E2B_API_URL", "E2B_SANDBOX_URL", "E2B_API_KEY")}
    s.use_env()
    try:
        yield s
    finally:
        crashed = s.proc.poll()
        for sid in s.cleanup:
            try:
                Sandbox.kill(sid)
            except Exception:
                pass
        leaks = [] if crashed is not None else s.leftovers(s.cleanup)
        s.stop()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        if crashed is not None:
            pytest.fail(f"sandpit serve died during the tests (code {crashed}).\n----- server log -----\n{s.read_log()}")
        if leaks:
            pytest.fail("processes of killed sandboxes are still running on the host:\n" + "\n".join(leaks))
