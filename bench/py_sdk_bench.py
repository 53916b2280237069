"""sandpit latency as an E2B Python user sees it.

The official `e2b_code_interpreter` package (from test/compat-py's venv)
against a `sandpit serve` started here the way the compat suites start one.

    test/compat-py/run.sh --co -q >/dev/null      # makes the venv once
    test/compat-py/.venv/bin/python bench/py_sdk_bench.py [--creates 30] [--runs 200]

Prints a Markdown table of p50/p95/min/max in ms for: Sandbox.create
(code-interpreter template, warm pool on), commands.run("true"),
files.read of a small file, run_code("1+1"), and kill.
"""

import argparse
import os
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(args):
    port = free_port()
    data = tempfile.mkdtemp(prefix="sandpit-pybench-")
    key = "e2b_" + secrets.token_hex(20)
    log = open(data + ".log", "w")
    proc = subprocess.Popen(
        [os.path.join(REPO, "bin", "sandpit"), "serve", "--listen", f"127.0.0.1:{port}", "--data-dir", data, "--kill-on-stop", *args],
        env={**os.environ, "SANDPIT_API_KEY": key},
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            urllib.request.urlopen(url + "/health", timeout=1)
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"sandpit serve did not become healthy; log in {log.name}")
            time.sleep(0.1)
    os.environ.update(E2B_API_URL=url, E2B_SANDBOX_URL=url, E2B_API_KEY=key)
    return proc, data, log


def stop_server(proc, data, log):
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=60)
    log.close()
    shutil.rmtree(data, ignore_errors=True)
    os.remove(log.name)


def row(name, ms):
    s = sorted(ms)
    p95 = s[max(0, -(-95 * len(s) // 100) - 1)]
    return f"| {name} | {len(s)} | {statistics.median(s):.2f} | {p95:.2f} | {s[0]:.2f} | {s[-1]:.2f} |"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--creates", type=int, default=30)
    ap.add_argument("--runs", type=int, default=200)
    opt = ap.parse_args()

    proc, data, log = start_server(["--warm-pool", "code-interpreter-v1=2"])
    try:
        from e2b_code_interpreter import Sandbox

        def timed(fn):
            t = time.perf_counter()
            out = fn()
            return (time.perf_counter() - t) * 1000, out

        creates, kills = [], []
        for _ in range(opt.creates):
            ms, sbx = timed(Sandbox.create)
            creates.append(ms)
            sbx.commands.run("true")
            ms, _ = timed(sbx.kill)
            kills.append(ms)
            time.sleep(0.3)  # let the pool refill: this measures a pooled create

        sbx = Sandbox.create()
        sbx.files.write("/home/user/small.txt", "x" * 1024)
        for _ in range(3):
            sbx.commands.run("true")
            sbx.run_code("1+1")
        cmds = [timed(lambda: sbx.commands.run("true"))[0] for _ in range(opt.runs)]
        reads = [timed(lambda: sbx.files.read("/home/user/small.txt"))[0] for _ in range(opt.runs)]
        codes = [timed(lambda: sbx.run_code("1+1"))[0] for _ in range(opt.runs)]
        sbx.kill()
    finally:
        stop_server(proc, data, log)

    print("| step (e2b-code-interpreter, Python) | n | p50 ms | p95 ms | min | max |")
    print("|---|---:|---:|---:|---:|---:|")
    print(row("Sandbox.create (pooled code-interpreter)", creates))
    print(row('commands.run("true")', cmds))
    print(row("files.read (1 KiB)", reads))
    print(row('run_code("1+1")', codes))
    print(row("kill", kills))


if __name__ == "__main__":
    sys.exit(main())
