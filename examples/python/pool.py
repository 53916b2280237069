"""A sandbox pool: keep a few code-interpreter sandboxes started ahead of
demand, hand them out to concurrent tasks, reset them between tasks, and
kill them all at the end.

    python examples/python/pool.py
"""

import queue
import threading
from concurrent.futures import ThreadPoolExecutor

from e2b_code_interpreter import Sandbox


class SandboxPool:
    def __init__(self, size, **create_opts):
        self._create_opts = create_opts
        self._idle = queue.Queue()
        self._all = []
        self._lock = threading.Lock()
        with ThreadPoolExecutor(size) as ex:
            for sandbox in ex.map(lambda _: Sandbox.create(**create_opts), range(size)):
                self._add(sandbox)

    def _add(self, sandbox):
        with self._lock:
            self._all.append(sandbox)
        self._idle.put(sandbox)

    def acquire(self, timeout=60):
        return self._idle.get(timeout=timeout)

    def release(self, sandbox):
        # A sandbox that no longer answers is replaced, not reused.
        if not sandbox.is_running():
            with self._lock:
                self._all.remove(sandbox)
            self._add(Sandbox.create(**self._create_opts))
            return
        sandbox.run_code("%reset -f")  # the next task starts from a clean kernel
        self._idle.put(sandbox)

    def run(self, code):
        sandbox = self.acquire()
        try:
            return sandbox.sandbox_id, sandbox.run_code(code)
        finally:
            self.release(sandbox)

    def close(self):
        with self._lock:
            sandboxes, self._all = self._all, []
        for sandbox in sandboxes:
            sandbox.kill()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


tasks = [f"n = {i}\nsum(k * k for k in range(n + 1))" for i in range(8)]

with SandboxPool(size=3, timeout=300) as pool:
    with ThreadPoolExecutor(max_workers=3) as workers:
        results = list(workers.map(pool.run, tasks))
    used = {sandbox_id for sandbox_id, _ in results}
    for i, (_, execution) in enumerate(results):
        print(f"task {i}: {execution.text}")
    print(f"{len(tasks)} tasks ran on {len(used)} pooled sandboxes")
    # The kernel was reset between tasks: no task sees another's variables.
    _, execution = pool.run("'n' in globals()")
    print("state left over from earlier tasks:", execution.text)
print("pool closed")
