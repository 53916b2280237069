"""Commands through the official e2b Python SDK, sync and async: output and
exit codes, streaming callbacks, background commands, stdin, kill, timeouts,
envs, cwd and user, and the exceptions each failure raises."""

import asyncio
import time

import pytest
from e2b import (
    AsyncSandbox,
    AuthenticationException,
    CommandExitException,
    InvalidArgumentException,
    NotFoundException,
    Sandbox,
    SandboxException,
    TimeoutException,
)


@pytest.fixture(scope="module")
def sbx(server):
    s = server.track(Sandbox.create(envs={"GLOBAL_VAR": "from-create", "SHARED": "global"}))
    yield s
    s.kill()


def wait_until(fn, timeout=10.0, what="condition"):
    deadline = time.monotonic() + timeout
    while not fn():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.02)


def test_stdout_stderr_exit_code(sbx):
    r = sbx.commands.run("echo oops >&2; echo out")
    assert (r.stdout, r.stderr, r.exit_code, r.error) == ("out\n", "oops\n", 0, None)


def test_nonzero_exit_raises_command_exit_exception(sbx):
    with pytest.raises(CommandExitException) as e:
        sbx.commands.run("echo before; echo bad >&2; exit 3")
    assert isinstance(e.value, SandboxException)
    assert e.value.exit_code == 3
    assert e.value.stdout == "before\n"
    assert e.value.stderr == "bad\n"


def test_streaming_callbacks_arrive_while_running(sbx):
    out, err = [], []
    t0 = time.monotonic()
    r = sbx.commands.run(
        "for i in 1 2 3; do echo $i; echo e$i >&2; sleep 0.3; done",
        on_stdout=lambda d: out.append((d, time.monotonic() - t0)),
        on_stderr=lambda d: err.append(d),
    )
    done = time.monotonic() - t0
    assert r.stdout == "1\n2\n3\n"
    assert "".join(d for d, _ in out) == "1\n2\n3\n"
    assert "".join(err) == "e1\ne2\ne3\n"
    assert len(out) >= 2, "not streamed"
    assert out[0][1] < done - 0.4, f"first chunk at {out[0][1]:.2f} s, end at {done:.2f} s: buffered"


def test_background_list_kill_wait(sbx):
    h = sbx.commands.run("sleep 60; echo finished", background=True)
    assert isinstance(h.pid, int)
    assert h.pid in [p.pid for p in sbx.commands.list()]
    assert h.kill() is True
    with pytest.raises(CommandExitException) as e:
        h.wait()
    assert "finished" not in e.value.stdout
    assert sbx.commands.kill(h.pid) is False
    assert h.pid not in [p.pid for p in sbx.commands.list()]


def test_background_wait_with_callbacks(sbx):
    h = sbx.commands.run("sleep 0.2; echo done", background=True)
    seen = []
    r = h.wait(on_stdout=seen.append)
    assert (r.exit_code, r.stdout, "".join(seen)) == (0, "done\n", "done\n")


def test_connect_to_a_running_command(sbx):
    h = sbx.commands.run("sleep 0.5; echo late", background=True)
    again = sbx.commands.connect(h.pid)
    assert again.wait().stdout == "late\n"


def test_stdin(sbx):
    h = sbx.commands.run("cat", background=True, stdin=True)
    sbx.commands.send_stdin(h.pid, "hello\n")
    h.send_stdin(b"world\n")
    sbx.commands.close_stdin(h.pid)
    r = h.wait()
    assert (r.exit_code, r.stdout) == (0, "hello\nworld\n")


def test_stream_input(sbx):
    h = sbx.commands.run("cat", background=True, stdin=True)
    sbx.commands.stream_input(h.pid, iter(["a\n", b"b\n", "c\n"]))
    sbx.commands.close_stdin(h.pid)
    assert h.wait().stdout == "a\nb\nc\n"


def test_envs_cwd_user(sbx):
    assert sbx.commands.run('echo "$GLOBAL_VAR"').stdout == "from-create\n"
    r = sbx.commands.run('echo "$PER_CMD $SHARED"', envs={"PER_CMD": "per-command", "SHARED": "override"})
    assert r.stdout == "per-command override\n"
    assert sbx.commands.run("pwd", cwd="/tmp").stdout == "/tmp\n"
    assert sbx.commands.run("whoami; pwd").stdout == "user\n/home/user\n"
    # The base template's workdir, as in E2B's templates, whoever runs.
    assert sbx.commands.run("whoami; id -u; pwd", user="root").stdout == "root\n0\n/home/user\n"


def test_e2b_default_envs(sbx):
    # What E2B sets in every sandbox, so code can tell it runs in one.
    r = sbx.commands.run('echo "$E2B_SANDBOX $E2B_SANDBOX_ID $E2B_TEMPLATE_ID"')
    assert r.stdout == f"true {sbx.sandbox_id} {sbx.get_info().template_id}\n"


def test_timeout_raises_timeout_exception_and_kills(sbx):
    t0 = time.monotonic()
    with pytest.raises(TimeoutException):
        sbx.commands.run("sleep 30", timeout=1)
    assert time.monotonic() - t0 < 10
    wait_until(lambda: sbx.commands.run("pgrep -x sleep || echo none").stdout == "none\n", what="the timed-out sleep to die")


def test_errors(sbx):
    with pytest.raises(NotFoundException):
        sbx.commands.connect(999999)
    with pytest.raises(NotFoundException):
        sbx.commands.send_stdin(999999, "x")
    # envd answers an unknown user with unauthenticated, as E2B's does.
    with pytest.raises(AuthenticationException, match="error looking up user 'nosuchuser'"):
        sbx.commands.run("true", user="nosuchuser")
    with pytest.raises(InvalidArgumentException, match="cwd '/no/such/dir' does not exist"):
        sbx.commands.run("true", cwd="/no/such/dir")


@pytest.mark.asyncio
async def test_async_commands(server):
    s = await AsyncSandbox.create()
    server.track(s)
    r = await s.commands.run("echo hi; echo there >&2")
    assert (r.stdout, r.stderr) == ("hi\n", "there\n")
    chunks = []

    async def on_out(d):
        chunks.append(d)

    r = await s.commands.run("for i in 1 2; do echo $i; sleep 0.2; done", on_stdout=on_out)
    assert "".join(chunks) == "1\n2\n" and r.stdout == "1\n2\n"
    with pytest.raises(CommandExitException) as e:
        await s.commands.run("exit 7")
    assert e.value.exit_code == 7
    h = await s.commands.run("cat", background=True, stdin=True)
    await s.commands.send_stdin(h.pid, "in\n")
    await s.commands.close_stdin(h.pid)
    assert (await h.wait()).stdout == "in\n"
    h = await s.commands.run("sleep 60", background=True)
    assert h.pid in [p.pid for p in await s.commands.list()]
    assert await h.kill() is True
    with pytest.raises(CommandExitException):
        await h.wait()
    with pytest.raises(TimeoutException):
        await s.commands.run("sleep 30", timeout=1)
    # Several commands at once on one sandbox.
    rs = await asyncio.gather(*(s.commands.run(f"sleep 0.2; echo {i}") for i in range(5)))
    assert [x.stdout for x in rs] == [f"{i}\n" for i in range(5)]
    await s.kill()
