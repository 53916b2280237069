"""Timeouts and cleanup: sandboxes that end themselves, commands and code
that run too long, and making sure nothing is left running.

    python examples/python/timeouts.py
"""

import time

from e2b import NotFoundException, Sandbox, SandboxQuery, TimeoutException
from e2b_code_interpreter import Sandbox as CodeSandbox

# 1. A sandbox lives for its timeout (seconds), then ends by itself.
short = Sandbox.create(timeout=3)
print("short-lived sandbox running:", short.is_running())
time.sleep(4)
deadline = time.time() + 30  # a loaded machine may take a moment to end it
while short.is_running() and time.time() < deadline:
    time.sleep(0.5)
print("after its timeout, running:", short.is_running())
try:
    Sandbox.connect(short.sandbox_id)
except NotFoundException:
    print("connect after timeout: not found")

# 2. set_timeout moves the end: here, further away.
sandbox = Sandbox.create(timeout=60)
try:
    before = sandbox.get_info().end_at
    sandbox.set_timeout(600)
    after = sandbox.get_info().end_at
    print("set_timeout moved the end by about", round((after - before).total_seconds() / 60), "minutes")

    # 3. A command that runs too long raises TimeoutException.
    try:
        sandbox.commands.run("sleep 30", timeout=2)
    except TimeoutException:
        print("command timed out")
    print("the sandbox still answers:", sandbox.commands.run("echo yes").stdout.strip())
finally:
    # 4. Always clean up: kill in finally ...
    sandbox.kill()
print("killed; running:", sandbox.is_running())

# ... or let a with block do it.
with CodeSandbox.create() as code_sandbox:
    try:
        code_sandbox.run_code("import time; time.sleep(30)", timeout=2)
    except TimeoutException:
        print("code timed out")
    print("the kernel still answers:", code_sandbox.run_code("6 * 7").text)
    kept_id = code_sandbox.sandbox_id

# 5. Sandboxes someone forgot: find them by their metadata and kill them.
for _ in range(2):
    Sandbox.create(metadata={"job": "cleanup-demo"})
forgotten = Sandbox.list(query=SandboxQuery(metadata={"job": "cleanup-demo"})).next_items()
print("forgotten sandboxes found:", len(forgotten))
for info in forgotten:
    Sandbox.kill(info.sandbox_id)
print("after killing them:", len(Sandbox.list(query=SandboxQuery(metadata={"job": "cleanup-demo"})).next_items()))

# 6. Nothing of ours is left.
running = [info.sandbox_id for info in Sandbox.list().next_items()]
print("still running after cleanup:", [i for i in running if i in (short.sandbox_id, sandbox.sandbox_id, kept_id)])
