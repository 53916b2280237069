"""Issue 18, item 6: a daemon whose host is below --min-free-memory refuses
creates at once with 503 and Retry-After, which the Python SDK raises as
ServiceBusyException after the retries it is allowed, waiting as told."""

import asyncio
import re
import time
import urllib.request

import pytest
from e2b import AsyncSandbox, Sandbox, SandboxException, ServiceBusyException

# Read by the server fixture: a floor no host reaches.
SERVER_ARGS = ["--warm-pool", "off", "--min-free-memory", "10TiB"]

FLOOR = re.compile(
    r"503: Service temporarily unavailable, please retry\. - the host has \d+ MiB of memory available, "
    r"below the 10485760 MiB floor \(sandpit serve --min-free-memory\)"
)


def refused(server) -> int:
    """The daemon's count of creates refused for memory."""
    req = urllib.request.Request(server.url + "/metrics", headers={"X-API-Key": server.api_key})
    with urllib.request.urlopen(req, timeout=10) as r:
        text = r.read().decode()
    m = re.search(r'^sandpit_creates_refused_total\{reason="memory"\} (\d+)', text, re.M)
    assert m, "no sandpit_creates_refused_total{reason=memory}"
    return int(m.group(1))


def assert_busy(err):
    assert type(err) is ServiceBusyException
    assert not isinstance(err, SandboxException)
    assert err.status_code == 503
    assert FLOOR.search(str(err)), str(err)


def test_create_below_the_memory_floor_without_retries(server):
    before = refused(server)
    with pytest.raises(ServiceBusyException) as e:
        Sandbox.create(retries=0)
    assert_busy(e.value)
    assert refused(server) == before + 1
    assert list(Sandbox.list().next_items()) == []


def test_default_retries_wait_retry_after_then_raise(server):
    # The SDK retries a 503 marked Should-Retry: true three times by default,
    # each after the Retry-After the daemon sent (2 s).
    before = refused(server)
    start = time.monotonic()
    with pytest.raises(ServiceBusyException) as e:
        Sandbox.create()
    took = time.monotonic() - start
    assert_busy(e.value)
    assert refused(server) == before + 4
    assert took >= 3 * 2 - 0.5, f"the retries waited {took:.1f}s in all, less than Retry-After"


def test_async_create_below_the_memory_floor(server):
    async def create():
        await AsyncSandbox.create(retries=0)

    with pytest.raises(ServiceBusyException) as e:
        asyncio.run(create())
    assert_busy(e.value)
