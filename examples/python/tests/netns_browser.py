"""Chromium and chromedriver in a network namespace of their own.

Every sandbox that comes or goes adds or removes a host network interface
(its veth), and Chromium answers each change by failing its requests in
flight with net::ERR_NETWORK_CHANGED: a page that stays blank, a chart
that never loads. test/compat does the same for its console test
(chromium-netns.sh). Inside the namespace only loopback exists, and two
bridges cross it through Unix sockets, which are files, not network
addresses:

- the app's port: a page inside opens 127.0.0.1:APP, which leads to the
  app's 127.0.0.1:APP outside (the same URL on both sides);
- chromedriver's port: selenium outside talks to a free loopback port
  that leads to chromedriver's port inside.

Run as a script (`unshare --net python3 netns_browser.py DIR APP DRIVER
CHROMEDRIVER`), this is the inside half; start() is the outside half.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path


def _pipe(a: socket.socket, b: socket.socket) -> None:
    """Copies a to b until a ends, then ends b's writing side."""
    try:
        while data := a.recv(65536):
            b.sendall(data)
    except OSError:
        pass
    finally:
        try:
            b.shutdown(socket.SHUT_WR)
        except OSError:
            pass


def _splice(a: socket.socket, connect) -> None:
    try:
        b = connect()
    except OSError:
        a.close()
        return
    t = threading.Thread(target=_pipe, args=(b, a), daemon=True)
    t.start()
    _pipe(a, b)
    t.join()
    a.close()
    b.close()


def _serve(listener: socket.socket, connect) -> None:
    """Accepts on listener for ever, joining each connection to a new one
    from connect."""
    while True:
        try:
            conn, _ = listener.accept()
        except OSError:
            return  # closed
        threading.Thread(target=_splice, args=(conn, connect), daemon=True).start()


def _tcp(port: int):
    return lambda: socket.create_connection(("127.0.0.1", port))


def _unix(path: str):
    def connect():
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(path)
        return s
    return connect


def _listen_tcp(port: int) -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", port))
    s.listen(64)
    return s


def _listen_unix(path: str) -> socket.socket:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(path)
    s.listen(64)
    return s


def _inside(work: str, app_port: int, driver_port: int, chromedriver: str) -> int:
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True,
                   env={**os.environ, "PATH": os.environ.get("PATH", "") + ":/usr/sbin:/sbin"})
    app = _listen_tcp(app_port)
    threading.Thread(target=_serve, args=(app, _unix(os.path.join(work, "app.sock"))), daemon=True).start()
    driver = subprocess.Popen([chromedriver, f"--port={driver_port}"], stdout=sys.stderr, stderr=sys.stderr)
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", driver_port), timeout=1).close()
            break
        except OSError:
            if driver.poll() is not None or time.monotonic() > deadline:
                print("netns_browser: chromedriver did not come up", file=sys.stderr)
                driver.kill()
                return 1
            time.sleep(0.05)
    listener = _listen_unix(os.path.join(work, "driver.sock"))
    threading.Thread(target=_serve, args=(listener, _tcp(driver_port)), daemon=True).start()
    print("ready", flush=True)
    # Until the outside half closes our stdin.
    sys.stdin.read()
    driver.terminate()
    try:
        driver.wait(10)
    except subprocess.TimeoutExpired:
        driver.kill()
    return 0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def start(work: Path, app_port: int, chromedriver: str):
    """Starts chromedriver in a network namespace of its own, with
    127.0.0.1:app_port inside leading to the same port outside, and yields
    the URL selenium reaches it at."""
    work.mkdir(parents=True, exist_ok=True)
    app = _listen_unix(str(work / "app.sock"))
    threading.Thread(target=_serve, args=(app, _tcp(app_port)), daemon=True).start()
    inside = subprocess.Popen(["unshare", "--net", sys.executable, __file__, str(work), str(app_port),
                               str(_free_port()), chromedriver],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        if inside.stdout.readline().strip() != "ready":
            raise RuntimeError(f"chromedriver in its network namespace did not start (exit {inside.wait(10)})")
        port = _free_port()
        driver = _listen_tcp(port)
        threading.Thread(target=_serve, args=(driver, _unix(str(work / "driver.sock"))), daemon=True).start()
        try:
            yield f"http://127.0.0.1:{port}"
        finally:
            driver.close()
    finally:
        app.close()
        inside.stdin.close()
        try:
            inside.wait(20)
        except subprocess.TimeoutExpired:
            inside.kill()
            inside.wait()


if __name__ == "__main__":
    sys.exit(_inside(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]))
