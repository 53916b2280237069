"""A stand-in internet for the Python network tests, built as
test/compat/testnet.mjs builds it: a network namespace joined to the host by
a veth, on TEST-NET-3 addresses (a /29 of its own, so that it can run beside
the JS suite's), with a DNS server (UDP) for a few names and web servers (HTTP :80, HTTPS
:443 with a self-signed certificate) on two addresses. Each web server
answers "<scheme> <address reached> <Host>\n". It needs root, ip(8), curl
and openssl, and nothing outside the standard library.
"""

import json
import os
import subprocess
import tempfile
import time
from pathlib import Path

HOST_ADDR = "203.0.113.49"  # the host's own end of the link
ADDR_A = "203.0.113.50"  # DNS, and the web server of allowed.test
ADDR_B = "203.0.113.51"  # the web server of the other names

NAMES = {
    "allowed.test": ADDR_A,
    "api.wild.test": ADDR_B,
    "deep.api.wild.test": ADDR_B,
    "wild.test": ADDR_B,
    "blocked.test": ADDR_B,
}

# Run with python3 inside the namespace: DNS over UDP for NAMES (A records;
# NXDOMAIN for other names), HTTP on :80 and HTTPS on :443 of each address.
SERVERS = r"""
import http.server, json, os, socket, ssl, struct, threading
names = json.loads(os.environ["NAMES"])

def dns():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((os.environ["DNS_ADDR"], 53))
    while True:
        q, peer = s.recvfrom(512)
        i, labels = 12, []
        while q[i] != 0:
            labels.append(q[i + 1:i + 1 + q[i]].decode())
            i += q[i] + 1
        qtype = struct.unpack(">H", q[i + 1:i + 3])[0]
        qend = i + 5
        addr = names.get(".".join(labels).lower())
        answer = addr is not None and qtype == 1
        flags = 0x8580 | (0 if addr else 3)
        out = q[:2] + struct.pack(">HHHHH", flags, 1, 1 if answer else 0, 0, 0) + q[12:qend]
        if answer:
            out += struct.pack(">HHHIH", 0xC00C, 1, 1, 5, 4) + socket.inet_aton(addr)
        s.sendto(out, peer)

class Handler(http.server.BaseHTTPRequestHandler):
    scheme = "http"
    def log_message(self, *a):
        pass
    def do_GET(self):
        body = ("%s %s %s\n" % (self.scheme, self.connection.getsockname()[0], self.headers.get("Host"))).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

class TLSHandler(Handler):
    scheme = "https"

tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
tls.load_cert_chain(os.environ["CERT"], os.environ["KEY"])
for a in os.environ["WEB_ADDRS"].split(","):
    srv = http.server.ThreadingHTTPServer((a, 80), Handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    srv = http.server.ThreadingHTTPServer((a, 443), TLSHandler)
    srv.socket = tls.wrap_socket(srv.socket, server_side=True)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
dns()
"""


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


class Internet:
    """The stand-in internet; stop() removes it."""

    def __init__(self):
        n = os.getpid() % 100000
        self.ns = f"sppy{n}"
        self.host_side = f"spp{n}"
        self.dir = tempfile.mkdtemp(prefix="sandpit-testnet-py-")
        self.proc = None
        try:
            self._start()
        except BaseException:
            self.stop()
            raise

    def _start(self):
        d = Path(self.dir)
        script = d / "servers.py"
        script.write_text(SERVERS)
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=sandpit-test",
             "-keyout", str(d / "key.pem"), "-out", str(d / "cert.pem")],
            check=True, capture_output=True,
        )
        _ip("netns", "add", self.ns)
        _ip("link", "add", self.host_side, "type", "veth", "peer", "name", "eth0", "netns", self.ns)
        _ip("addr", "add", f"{HOST_ADDR}/29", "dev", self.host_side)
        _ip("link", "set", self.host_side, "up")
        _ip("-n", self.ns, "addr", "add", f"{ADDR_A}/29", "dev", "eth0")
        _ip("-n", self.ns, "addr", "add", f"{ADDR_B}/29", "dev", "eth0")
        _ip("-n", self.ns, "link", "set", "eth0", "up")
        _ip("-n", self.ns, "link", "set", "lo", "up")
        env = {**os.environ, "NAMES": json.dumps(NAMES), "DNS_ADDR": ADDR_A, "WEB_ADDRS": f"{ADDR_A},{ADDR_B}",
               "KEY": str(d / "key.pem"), "CERT": str(d / "cert.pem")}
        # The system interpreter: the servers need nothing from the venv.
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", self.ns, "/usr/bin/python3", str(script)],
            env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30
        while True:
            r = subprocess.run(["curl", "-skf", "-m", "2", f"https://{ADDR_B}/"], capture_output=True)
            if r.returncode == 0:
                return
            if self.proc.poll() is not None:
                raise RuntimeError(f"the test internet's servers exited with {self.proc.returncode}")
            if time.monotonic() > deadline:
                raise RuntimeError("the test internet did not answer within 30s")
            time.sleep(0.2)

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        for args in (("link", "del", self.host_side), ("netns", "del", self.ns)):
            try:
                _ip(*args)
            except subprocess.CalledProcessError:
                pass
        subprocess.run(["rm", "-rf", self.dir], check=False)
