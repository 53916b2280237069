#!/usr/bin/python3
"""Command round trip through sandpit with a bare HTTP/1.1 keep-alive client:
what the server costs, without an SDK's own share. Creates a sandbox through
the REST API, sends process.Process/Start exactly as the SDKs do (Connect
JSON envelope, same headers), once directly to the agent's Unix socket and
once through the daemon, and prints p50/p95 in ms as a Markdown table.

Usage: bench/raw_rpc.py URL API_KEY DATA_DIR [RUNS]
"""
import http.client, json, socket, struct, sys, time, urllib.request

url, key, data_dir = sys.argv[1], sys.argv[2], sys.argv[3]
runs = int(sys.argv[4]) if len(sys.argv) > 4 else 200
host, port = url.removeprefix("http://").split(":")

req = urllib.request.Request(url + "/v2/sandboxes", data=b'{"templateID":"base"}', method="POST",
                             headers={"X-API-KEY": key, "Content-Type": "application/json"})
sbx = json.load(urllib.request.urlopen(req))
sid, tok = sbx["sandboxID"], sbx["envdAccessToken"]


class UnixConn(http.client.HTTPConnection):
    def __init__(self, path):
        super().__init__("localhost")
        self.path_ = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.connect(self.path_)


def measure(conn, argv, extra):
    msg = json.dumps({"process": {"cmd": argv[0], "args": argv[1:]}, "stdin": False}).encode()
    body = b"\x00" + struct.pack(">I", len(msg)) + msg
    headers = {"Content-Type": "application/connect+json", "Connect-Protocol-Version": "1",
               "X-Access-Token": tok, "Connect-Timeout-Ms": "60000", "Keepalive-Ping-Interval": "50", **extra}
    lat = []
    for _ in range(10 + runs):
        t = time.perf_counter()
        conn.request("POST", "/process.Process/Start", body=body, headers=headers)
        out = conn.getresponse().read()
        lat.append((time.perf_counter() - t) * 1000)
        if b'"end"' not in out:
            sys.exit(f"no end event: {out[-200:]!r}")
    lat = sorted(lat[10:])
    return lat[len(lat) // 2], lat[len(lat) * 95 // 100]


direct = UnixConn(f"{data_dir}/sandboxes/{sid}/envd.sock")
daemon = http.client.HTTPConnection(host, int(port))
routed = {"E2b-Sandbox-Id": sid, "E2b-Sandbox-Port": "49983"}
print(f"| process started | agent socket p50 / p95 ms | through the daemon p50 / p95 ms |")
print("|---|---:|---:|")
for name, argv in [("/usr/bin/true (exec)", ["/usr/bin/true"]),
                   ("bash -c true", ["/bin/bash", "-c", "true"]),
                   ("bash -l -c true (what commands.run sends)", ["/bin/bash", "-l", "-c", "true"])]:
    d, p = measure(direct, argv, {}), measure(daemon, argv, routed)
    print(f"| {name} | {d[0]:.2f} / {d[1]:.2f} | {p[0]:.2f} / {p[1]:.2f} |")
urllib.request.urlopen(urllib.request.Request(url + "/sandboxes/" + sid, method="DELETE", headers={"X-API-KEY": key}))
