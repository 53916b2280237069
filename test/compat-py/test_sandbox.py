"""Sandbox lifecycle through the official e2b Python SDK, sync and async:
create (template, timeout, metadata, envs), info, connect, list with filters
and paging, set_timeout, pause and resume, kill, and the control plane's
exceptions."""

import secrets
import time
from datetime import datetime

import pytest
from e2b import (
    AsyncSandbox,
    AuthenticationException,
    NotFoundException,
    Sandbox,
    SandboxException,
    SandboxNotFoundException,
    SandboxQuery,
    SandboxState,
)

from sandpit_server import new_api_key


def tag() -> str:
    return secrets.token_hex(6)


def wait_gone(sandbox_id: str, timeout: float) -> float:
    """Seconds until get_info says the sandbox is not found."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        try:
            Sandbox.get_info(sandbox_id)
        except SandboxNotFoundException:
            return time.monotonic() - t0
        time.sleep(0.2)
    raise AssertionError(f"sandbox {sandbox_id} still there after {timeout} s")


def test_create_with_template_metadata_envs_and_timeout(server):
    run = tag()
    sbx = server.track(Sandbox.create("base", timeout=120, metadata={"run": run, "note": "a b&c=d/é?"}, envs={"GLOBAL_VAR": "from-create"}))
    assert sbx.sandbox_id
    assert sbx.commands.run('echo "$GLOBAL_VAR"').stdout == "from-create\n"
    info = sbx.get_info()
    assert info.sandbox_id == sbx.sandbox_id
    assert info.metadata == {"run": run, "note": "a b&c=d/é?"}
    assert info.state == SandboxState.RUNNING
    assert isinstance(info.started_at, datetime) and isinstance(info.end_at, datetime)
    lifetime = (info.end_at - info.started_at).total_seconds()
    assert abs(lifetime - 120) <= 2, f"lifetime {lifetime} s, want 120"
    assert info.template_id
    assert sbx.is_running()
    # The context manager kills on exit.
    with Sandbox.connect(sbx.sandbox_id) as again:
        assert again.commands.run("echo hi").stdout == "hi\n"
    assert not sbx.is_running()
    with pytest.raises(SandboxNotFoundException):
        Sandbox.get_info(sbx.sandbox_id)
    with pytest.raises(SandboxNotFoundException):
        Sandbox.connect(sbx.sandbox_id)
    assert Sandbox.kill(sbx.sandbox_id) is False


def test_list_filters_and_paging(server):
    run = tag()
    made = []
    for i in range(3):
        made.append(server.track(Sandbox.create(metadata={"run": run, "i": str(i)})))
        time.sleep(0.02)  # distinct start times
    pager = Sandbox.list(query=SandboxQuery(metadata={"run": run}), limit=2, order="asc")
    pages = []
    while pager.has_next:
        pages.append(pager.next_items())
    assert [len(p) for p in pages] == [2, 1]
    assert [s.metadata["i"] for p in pages for s in p] == ["0", "1", "2"]
    desc = Sandbox.list(query=SandboxQuery(metadata={"run": run}), order="desc").next_items()
    assert [s.metadata["i"] for s in desc] == ["2", "1", "0"]
    running = Sandbox.list(query=SandboxQuery(metadata={"run": run}, state=[SandboxState.RUNNING])).next_items()
    assert len(running) == 3
    assert Sandbox.list(query=SandboxQuery(metadata={"run": run}, state=[SandboxState.PAUSED])).next_items() == []
    assert len(Sandbox.list(query=SandboxQuery(metadata={"run": run}, template="base")).next_items()) == 3
    assert Sandbox.list(query=SandboxQuery(metadata={"run": run, "i": "1"})).next_items()[0].sandbox_id == made[1].sandbox_id
    for s in made:
        assert s.kill() is True
    assert Sandbox.list(query=SandboxQuery(metadata={"run": run})).next_items() == []


def test_set_timeout_and_expiry(server):
    sbx = server.track(Sandbox.create(timeout=300))
    sbx.set_timeout(3)
    info = sbx.get_info()
    left = (info.end_at - datetime.now(info.end_at.tzinfo)).total_seconds()
    assert -1 <= left <= 4, f"{left} s left after set_timeout(3)"
    gone = wait_gone(sbx.sandbox_id, 20)
    assert gone >= 1
    assert not sbx.is_running()
    with pytest.raises(SandboxException):
        sbx.commands.run("echo zombie")


def test_pause_and_resume(server):
    sbx = server.track(Sandbox.create())
    sbx.commands.run("echo kept > /tmp/state; sleep 300 & echo $! > /tmp/pid")
    assert sbx.pause() is True
    assert sbx.pause() is False, "pausing a paused sandbox"
    assert Sandbox.get_info(sbx.sandbox_id).state == SandboxState.PAUSED
    paused = Sandbox.list(query=SandboxQuery(state=[SandboxState.PAUSED])).next_items()
    assert sbx.sandbox_id in [s.sandbox_id for s in paused]
    # With no state filter the list has running and paused sandboxes.
    assert sbx.sandbox_id in [s.sandbox_id for s in Sandbox.list().next_items()]
    again = Sandbox.connect(sbx.sandbox_id)
    assert Sandbox.get_info(sbx.sandbox_id).state == SandboxState.RUNNING
    assert again.commands.run("cat /tmp/state; kill -0 $(cat /tmp/pid) && echo alive").stdout == "kept\nalive\n"
    again.kill()


def test_lifecycle_on_timeout_pause(server):
    # lifecycle on_timeout "pause" (autoPause on the wire): the timeout
    # pauses the sandbox, connect resumes it with its memory and files.
    sbx = server.track(Sandbox.create(timeout=2, lifecycle={"on_timeout": "pause"}))
    sbx.commands.run("echo kept > /tmp/state; sleep 300 & echo $! > /tmp/pid")
    deadline = time.monotonic() + 20
    while Sandbox.get_info(sbx.sandbox_id).state != SandboxState.PAUSED:
        assert time.monotonic() < deadline, "the sandbox did not pause at its timeout"
        time.sleep(0.2)
    again = Sandbox.connect(sbx.sandbox_id, timeout=60)
    assert again.commands.run("cat /tmp/state; kill -0 $(cat /tmp/pid) && echo alive").stdout == "kept\nalive\n"
    again.kill()


def test_idempotency_key(server):
    # The SDK resends idempotency_key when it retries a create: the same key
    # must answer the same sandbox, not start another.
    key = "retry-" + tag()
    a = server.track(Sandbox.create(idempotency_key=key, metadata={"k": key}))
    b = Sandbox.create(idempotency_key=key, metadata={"k": key})
    assert b.sandbox_id == a.sandbox_id
    assert b.commands.run("echo same").stdout == "same\n"
    assert len(Sandbox.list(query=SandboxQuery(metadata={"k": key})).next_items()) == 1
    c = server.track(Sandbox.create(idempotency_key=key + "-other"))
    assert c.sandbox_id != a.sandbox_id
    a.kill()
    c.kill()


def test_explicit_client_config(server, monkeypatch):
    # Settings passed in code instead of the environment: an E2B client,
    # and per-call parameters.
    from e2b import E2B

    for k in ("E2B_API_KEY", "E2B_API_URL", "E2B_SANDBOX_URL"):
        monkeypatch.delenv(k)
    client = E2B(api_key=server.api_key, api_url=server.url, sandbox_url=server.url)
    sbx = client.Sandbox.create(metadata={"via": "client"})
    server.track(sbx)
    assert sbx.commands.run("echo via-client").stdout == "via-client\n"
    assert sbx.files.read("/etc/hostname")
    assert client.Template.exists("base") is True
    ids = [s.sandbox_id for s in client.Sandbox.list(query=SandboxQuery(metadata={"via": "client"})).next_items()]
    assert ids == [sbx.sandbox_id]
    same = Sandbox.connect(sbx.sandbox_id, api_key=server.api_key, api_url=server.url, sandbox_url=server.url)
    assert same.commands.run("echo per-call").stdout == "per-call\n"
    assert client.Sandbox.kill(sbx.sandbox_id) is True


def test_metrics(server):
    sbx = server.track(Sandbox.create())
    sbx.commands.run("head -c 8388608 /dev/urandom > ~/blob")
    ms = sbx.get_metrics()
    assert len(ms) >= 1
    m = ms[-1]
    assert m.cpu_count >= 1
    assert 0 < m.mem_used <= m.mem_total
    assert m.disk_used >= 8 << 20 and m.disk_total > m.disk_used
    sbx.kill()


def test_control_plane_exceptions(server):
    assert Sandbox.kill("inosuchsandbox" + tag()) is False
    with pytest.raises(SandboxNotFoundException) as e:
        Sandbox.get_info("inosuchsandbox" + tag())
    assert isinstance(e.value, NotFoundException)
    with pytest.raises(NotFoundException):
        Sandbox.set_timeout("inosuchsandbox" + tag(), 30)
    with pytest.raises(SandboxException):
        Sandbox.create("no-such-template-" + tag())
    bad = new_api_key()
    with pytest.raises(AuthenticationException):
        Sandbox.create(api_key=bad)
    with pytest.raises(AuthenticationException):
        Sandbox.list(api_key=bad).next_items()
    with pytest.raises(AuthenticationException):
        Sandbox.kill("whatever", api_key=bad)
    # A bad request to the control plane is a SandboxException carrying the
    # status (the SDK keeps InvalidArgumentException for envd's answers).
    with pytest.raises(SandboxException) as e:
        Sandbox.create(timeout=-5)
    assert e.value.status_code == 400


@pytest.mark.asyncio
async def test_async_lifecycle(server):
    run = tag()
    sbx = await AsyncSandbox.create("base", timeout=60, metadata={"run": run}, envs={"A": "async"})
    server.track(sbx)
    r = await sbx.commands.run('echo "$A"')
    assert r.stdout == "async\n"
    info = await sbx.get_info()
    assert info.metadata == {"run": run}
    listed = await AsyncSandbox.list(query=SandboxQuery(metadata={"run": run})).next_items()
    assert [s.sandbox_id for s in listed] == [sbx.sandbox_id]
    await sbx.set_timeout(120)
    info = await sbx.get_info()
    assert abs((info.end_at - datetime.now(info.end_at.tzinfo)).total_seconds() - 120) <= 3
    assert await sbx.pause() is True
    assert (await AsyncSandbox.get_info(sbx.sandbox_id)).state == SandboxState.PAUSED
    again = await AsyncSandbox.connect(sbx.sandbox_id)
    assert (await again.commands.run("echo back")).stdout == "back\n"
    assert await again.is_running()
    assert await again.kill() is True
    assert await AsyncSandbox.kill(sbx.sandbox_id) is False
    with pytest.raises(SandboxNotFoundException):
        await AsyncSandbox.get_info(sbx.sandbox_id)
    with pytest.raises(AuthenticationException):
        await AsyncSandbox.create(api_key=new_api_key())
