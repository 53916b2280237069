"""Terminals (sandbox.pty) and servers inside a sandbox reached through
get_host, with the official e2b Python SDK, sync and async."""

import asyncio
import http.client
import re
import threading
import time

import pytest
from e2b import AsyncSandbox, CommandExitException, PtySize, Sandbox


@pytest.fixture(scope="module")
def sbx(server):
    s = server.track(Sandbox.create())
    yield s
    s.kill()


def test_pty_sync(sbx):
    term = sbx.pty.create(PtySize(rows=24, cols=80), timeout=0)
    assert isinstance(term.pid, int)
    # The sync handle yields output only inside wait(): read it on a thread.
    out, result = bytearray(), {}

    def reader():
        try:
            term.wait(on_pty=out.extend)
        except CommandExitException as e:
            result["exit"] = e

    t = threading.Thread(target=reader)
    t.start()

    def expect(pattern: str):
        deadline = time.monotonic() + 10
        while not re.search(pattern, out.decode(errors="replace")):
            assert time.monotonic() < deadline, f"no {pattern!r} in {out.decode(errors='replace')!r}"
            time.sleep(0.02)

    sbx.pty.send_stdin(term.pid, b"stty size; echo $((6*7))-$TERM; whoami\n")
    expect(r"\b24 80\b")
    expect(r"\b42-xterm-256color\b")
    expect(r"\buser\r?\n")
    sbx.pty.resize(term.pid, PtySize(rows=40, cols=100))
    sbx.pty.send_stdin(term.pid, b"stty size; exit 3\n")
    t.join(10)
    assert not t.is_alive()
    assert re.search(r"\b40 100\b", out.decode(errors="replace"))
    assert result["exit"].exit_code == 3


def test_pty_kill(sbx):
    term = sbx.pty.create(PtySize(rows=10, cols=40), user="root", cwd="/tmp", envs={"X": "y"})
    assert sbx.pty.kill(term.pid) is True
    with pytest.raises(CommandExitException):
        term.wait()
    assert sbx.pty.kill(term.pid) is False


SERVE = "mkdir -p /tmp/site && echo hello-from-sandbox > /tmp/site/index.html && cd /tmp/site && python3 -m http.server {port} --bind 127.0.0.1"


def get(server, host: str, path: str = "/index.html") -> tuple[int, bytes]:
    """A request to the server's one listener, routed by its Host header, as
    a wildcard DNS record for the sandbox domain would route it."""
    c = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        c.request("GET", path, headers={"Host": host})
        r = c.getresponse()
        return r.status, r.read()
    finally:
        c.close()


def test_get_host_reaches_an_http_server(server, sbx):
    sbx.commands.run(SERVE.format(port=8000), background=True)
    host = sbx.get_host(8000)
    # With no --domain the server names itself, not E2B's cloud.
    assert host == f"8000-{sbx.sandbox_id}.localhost:{server.port}", host
    deadline = time.monotonic() + 15
    while True:
        status, body = get(server, host)
        if status == 200 or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert (status, body) == (200, b"hello-from-sandbox\n")
    # A closed port is a 502 from the proxy, not a hang.
    status, _ = get(server, sbx.get_host(8999))
    assert status == 502


@pytest.mark.asyncio
async def test_async_pty_and_get_host(server):
    s = await AsyncSandbox.create()
    server.track(s)
    out = bytearray()
    term = await s.pty.create(PtySize(rows=24, cols=80), on_data=out.extend)
    await s.pty.send_stdin(term.pid, b"echo $((7*6))-done\n")
    for _ in range(200):
        if b"42-done" in out:
            break
        await asyncio.sleep(0.05)
    assert b"42-done" in out, bytes(out)
    await s.pty.resize(term.pid, PtySize(rows=30, cols=90))
    await s.pty.send_stdin(term.pid, b"stty size; exit\n")
    r = await term.wait()
    assert r.exit_code == 0
    assert b"30 90" in out, bytes(out)
    await s.commands.run(SERVE.format(port=8080), background=True)
    loop = asyncio.get_running_loop()
    for _ in range(150):
        status, body = await loop.run_in_executor(None, get, server, s.get_host(8080))
        if status == 200:
            break
        await asyncio.sleep(0.1)
    assert (status, body) == (200, b"hello-from-sandbox\n")
    await s.kill()
