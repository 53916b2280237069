"""Issue 14 (part B) through the official Python SDKs: private ports answer
only requests carrying the sandbox's traffic access token, the code
interpreter SDK sends it itself, maskRequestHost is the Host a server in the
sandbox sees, and secrets are write-only and team-owned."""

import http.client
import json
import subprocess
import time

import pytest
from e2b import Sandbox, Secret, SecretNotFoundException
from e2b_code_interpreter import Sandbox as CodeSandbox

# Answers every GET with the Host it saw.
HOST_SERVER = r"""cat > /tmp/host_server.py <<'EOF'
import http.server
class H(http.server.BaseHTTPRequestHandler):
    def log_message(self, *a): pass
    def do_GET(self):
        body = ('host=%s\n' % self.headers.get('Host')).encode()
        self.send_response(200)
        self.send_header('Content-Length', str(len(body)))
        self.end_headers()
        self.wfile.write(body)
http.server.ThreadingHTTPServer(('127.0.0.1', 8000), H).serve_forever()
EOF
python3 /tmp/host_server.py"""

PROBE = "python3 -c \"import urllib.request as u; u.urlopen('http://127.0.0.1:8000/')\" && echo up || true"


def get(server, headers: dict) -> tuple[int, bytes]:
    c = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        c.request("GET", "/", headers=headers)
        r = c.getresponse()
        return r.status, r.read()
    finally:
        c.close()


def serve_host(sbx) -> None:
    sbx.commands.run(HOST_SERVER, background=True)
    deadline = time.monotonic() + 15
    while sbx.commands.run(PROBE).stdout != "up\n":
        assert time.monotonic() < deadline, "the server in the sandbox did not listen"
        time.sleep(0.2)


def cli(server, *args) -> str:
    return subprocess.run(
        [server.args[0], *args, "--data-dir", server.data_dir], check=True, capture_output=True, text=True
    ).stdout


def test_private_ports_need_the_traffic_token(server):
    sbx = server.track(Sandbox.create(network={"allow_public_traffic": False}))
    token = sbx.traffic_access_token
    assert token and len(token) == 64
    serve_host(sbx)  # envd keeps its own token: commands work without it
    host = sbx.get_host(8000)
    status, body = get(server, {"Host": host})
    assert status == 403
    assert json.loads(body) == {
        "sandboxId": sbx.sandbox_id,
        "message": "Sandbox is secured with traffic access token. Token header 'e2b-traffic-access-token' is missing",
        "code": 403,
    }
    assert get(server, {"Host": host, "e2b-traffic-access-token": "0" * 64})[0] == 403
    assert get(server, {"Host": host, "e2b-traffic-access-token": token}) == (200, f"host={host}\n".encode())
    info = Sandbox.get_info(sbx.sandbox_id)
    assert info.network and info.network.get("allow_public_traffic") is False


def test_code_interpreter_sends_the_token(server):
    sbx = server.track(CodeSandbox.create(network={"allow_public_traffic": False}))
    assert sbx.traffic_access_token
    assert sbx.run_code("6 * 7").text == "42"


def test_mask_request_host(server):
    sbx = server.track(Sandbox.create(network={"mask_request_host": "masked.example:${PORT}"}))
    serve_host(sbx)
    assert get(server, {"Host": sbx.get_host(8000)}) == (200, b"host=masked.example:8000\n")


def test_secrets_are_write_only_and_team_owned(server):
    value = f"py-secret-{time.time_ns()}"
    sec = Secret.create("Py-Key", value, metadata={"env": "test"})
    assert sec.secret_id.startswith("sec_") and sec.name == "py-key" and sec.version == 1 and sec.metadata == {"env": "test"}
    assert Secret.get_info("py-key").secret_id == sec.secret_id
    assert any(s.secret_id == sec.secret_id for s in Secret.list().next_items())
    assert value not in repr(Secret.list().next_items())
    assert Secret.update(sec.secret_id, value + "2").version == 2

    cli(server, "teams", "create", "b")
    key_b = cli(server, "keys", "create", "b-key", "--team", "b").strip().splitlines()[-1]
    with pytest.raises(SecretNotFoundException):
        Secret.get_info(sec.secret_id, api_key=key_b)
    assert Secret.exists("py-key", api_key=key_b) is False
    assert Secret.destroy(sec.secret_id, api_key=key_b) is False
    assert Secret.list(api_key=key_b).next_items() == []

    assert Secret.destroy(sec.secret_id) is True
    assert Secret.exists(sec.secret_id) is False
