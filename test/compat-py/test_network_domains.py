"""Issue 14's domain rules through the official Python SDK: names in
network.allow_out (exact and *.wildcard) reached over HTTP and HTTPS through sandpit's
egress proxy, a name outside the list refused, and update_network opening a
name on a running sandbox. Mirrors the essential checks of
test/compat/network_domains.test.mjs.

The "internet" is a network namespace this module makes (testnet.py), on
TEST-NET-3 addresses, with its own DNS server that the daemon is pointed at
with --dns.
"""

import pytest
from e2b import ALL_TRAFFIC, CommandExitException, Sandbox

from testnet import ADDR_A, ADDR_B, Internet

SERVER_ARGS = ["--dns", ADDR_A]


@pytest.fixture(scope="module")
def testnet():
    net = Internet()
    try:
        yield net
    finally:
        net.stop()


def fetch_in(sbx, url: str, *args: str) -> str:
    """What curl in sbx gets from url; "" when refused."""
    try:
        return sbx.commands.run(f"curl -sk -m 10 {' '.join(args)} {url}", timeout=30).stdout
    except CommandExitException:
        return ""


def test_allowed_names_exact_and_wildcard(server, testnet):
    sbx = server.track(Sandbox.create(network={"allow_out": ["allowed.test", "*.wild.test"], "deny_out": [ALL_TRAFFIC]}))
    resolv = sbx.commands.run("cat /etc/resolv.conf").stdout
    assert f"nameserver {ADDR_A}" in resolv.splitlines(), "the sandbox resolves through --dns"

    assert fetch_in(sbx, "http://allowed.test/") == f"http {ADDR_A} allowed.test\n"
    assert fetch_in(sbx, "https://allowed.test/") == f"https {ADDR_A} allowed.test\n"
    assert fetch_in(sbx, "http://api.wild.test/") == f"http {ADDR_B} api.wild.test\n"
    assert fetch_in(sbx, "https://deep.api.wild.test/") == f"https {ADDR_B} deep.api.wild.test\n"

    assert fetch_in(sbx, "http://blocked.test/") == "", "a name outside allow_out"
    assert fetch_in(sbx, "https://wild.test/") == "", "a wildcard does not hold its apex"
    assert fetch_in(sbx, f"http://{ADDR_A}/") == "", "the bare address of an allowed name"
    # The sandbox cannot borrow an allowed name's address for another name.
    assert fetch_in(sbx, "https://blocked.test/", "--resolve", f"blocked.test:443:{ADDR_A}") == ""

    info = Sandbox.get_info(sbx.sandbox_id)
    assert info.network is not None
    assert info.network.get("allow_out") == ["allowed.test", "*.wild.test"]
    assert info.network.get("deny_out") == [ALL_TRAFFIC]


def test_update_network_opens_and_closes_names(server, testnet):
    sbx = server.track(Sandbox.create(network={"allow_out": ["allowed.test"], "deny_out": [ALL_TRAFFIC]}))
    assert fetch_in(sbx, "http://allowed.test/") == f"http {ADDR_A} allowed.test\n"
    assert fetch_in(sbx, "http://blocked.test/") == ""

    sbx.update_network({"allow_out": ["blocked.test"], "deny_out": [ALL_TRAFFIC]})
    assert fetch_in(sbx, "https://blocked.test/") == f"https {ADDR_B} blocked.test\n", "opened"
    assert fetch_in(sbx, "http://allowed.test/") == "", "closed"
    assert Sandbox.get_info(sbx.sandbox_id).network.get("allow_out") == ["blocked.test"]
