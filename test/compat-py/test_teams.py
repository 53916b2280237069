"""Issue 11 through the official Python SDK: another team's sandbox is an
unknown one, and a team's limits raise the SDK's rate limit error without
the SDK retrying in vain (the server says Should-Retry: false where
waiting does not help)."""

import json
import subprocess
import time

import pytest
from e2b import NotFoundException, RateLimitException, Sandbox, SandboxNotFoundException


def cli(server, *args) -> str:
    return subprocess.run(
        [server.args[0], *args, "--data-dir", server.data_dir], check=True, capture_output=True, text=True
    ).stdout


def team_key(server, name, *limits) -> str:
    cli(server, "teams", "create", name, *limits)
    return cli(server, "keys", "create", f"{name}-key", "--team", name).strip().splitlines()[-1]


def test_another_teams_sandbox_is_unknown(server):
    key_b = team_key(server, "b")
    sbx = server.track(Sandbox.create(metadata={"owner_tag": "a"}))
    with pytest.raises((SandboxNotFoundException, NotFoundException)):
        Sandbox.get_info(sbx.sandbox_id, api_key=key_b)
    with pytest.raises((SandboxNotFoundException, NotFoundException)):
        Sandbox.connect(sbx.sandbox_id, api_key=key_b)
    with pytest.raises((SandboxNotFoundException, NotFoundException)):
        Sandbox.set_timeout(sbx.sandbox_id, 30, api_key=key_b)
    assert Sandbox.kill(sbx.sandbox_id, api_key=key_b) is False
    assert Sandbox.list(api_key=key_b).next_items() == []
    assert sbx.commands.run("echo alive").stdout == "alive\n"


def test_concurrent_limit_raises_at_once_and_frees_on_kill(server):
    key_c = team_key(server, "c", "--max-sandboxes", "1")
    first = server.track(Sandbox.create(api_key=key_c))
    with pytest.raises(RateLimitException, match="max-sandboxes 1"):
        Sandbox.create(api_key=key_c)
    # Should-Retry: false, so the SDK asked once: the audit log (written
    # off the request path, hence the wait) has one refused create.
    refused = []
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        out = cli(server, "audit", "--team", "c", "--action", "sandbox.create", "--json")
        refused = [line for line in out.splitlines() if json.loads(line)["result"] == "429"]
        if refused:
            break
        time.sleep(0.1)
    time.sleep(0.3)  # a retry would land by now
    out = cli(server, "audit", "--team", "c", "--action", "sandbox.create", "--json")
    assert [json.loads(line)["result"] for line in out.splitlines()] == ["201", "429"]
    first.kill()
    server.track(Sandbox.create(api_key=key_c)).kill()
