"""Error handling with retries: tell the errors apart, retry what is worth
retrying with exponential backoff, and give up cleanly on the rest.

    python examples/python/retries.py
"""

import time

from e2b import (
    AuthenticationException,
    CommandExitException,
    NotFoundException,
    Sandbox,
    SandboxException,
    TimeoutException,
)

RETRYABLE = (TimeoutException, CommandExitException)


def with_retries(action, attempts=4, base_delay=0.2):
    """Runs action(), retrying retryable errors with exponential backoff."""
    for attempt in range(1, attempts + 1):
        try:
            return action()
        except RETRYABLE as err:
            if attempt == attempts:
                raise
            delay = base_delay * 2 ** (attempt - 1)
            print(f"attempt {attempt} failed ({type(err).__name__}); retrying in {delay:.1f}s")
            time.sleep(delay)


sandbox = Sandbox.create()
try:
    # A flaky command: it fails the first two times it runs.
    flaky = (
        "n=$(cat /tmp/tries 2>/dev/null || echo 0); n=$((n+1)); echo $n > /tmp/tries; "
        "if [ $n -lt 3 ]; then echo 'not yet' >&2; exit 1; fi; echo ok after $n tries"
    )
    result = with_retries(lambda: sandbox.commands.run(flaky))
    print(result.stdout.strip())

    # A command's failure carries its exit code and output.
    try:
        sandbox.commands.run("echo about to fail; exit 3")
    except CommandExitException as err:
        print("exit code:", err.exit_code, "stdout:", err.stdout.strip())

    # A slow command: give each try a short timeout and more time the next.
    timeouts = iter([1, 1, 5])
    result = with_retries(lambda: sandbox.commands.run("sleep 2; echo slow but done", timeout=next(timeouts)))
    print(result.stdout.strip())

    # Some errors are not worth retrying.
    try:
        with_retries(lambda: sandbox.commands.run("exit 1"), attempts=2, base_delay=0.1)
    except CommandExitException:
        print("gave up after 2 attempts")
    try:
        sandbox.files.read("/no/such/file")
    except NotFoundException:
        print("missing file: not found (not retried)")
finally:
    sandbox.kill()

try:
    Sandbox.connect(sandbox.sandbox_id)
except NotFoundException:
    print("killed sandbox: not found")

try:
    Sandbox.create(api_key="e2b_" + "0" * 40)
except AuthenticationException:
    print("wrong API key: authentication error")
except SandboxException as err:
    print("wrong API key: unexpected", type(err).__name__, err)
