"""The async SDK: several sandboxes at once with asyncio, output streamed
as it is printed.

    python examples/python/async_parallel.py
"""

import asyncio

from e2b_code_interpreter import AsyncSandbox

CODE = """
import time
for step in range(2):
    # One write per line: each arrives as one streamed message.
    print(f"job {n} step {step}\\n", end="", flush=True)
    time.sleep(0.2)
n ** 2
"""


async def square(n):
    sandbox = await AsyncSandbox.create()
    try:
        await sandbox.run_code(f"n = {n}")
        execution = await sandbox.run_code(CODE, on_stdout=lambda msg: print("streamed:", msg.line.rstrip()))
        await sandbox.files.write(f"/home/user/job{n}.txt", execution.text)
        written = await sandbox.files.read(f"/home/user/job{n}.txt")
        result = await sandbox.commands.run("echo $((6*7))")
        return n, execution.text, written, result.stdout.strip()
    finally:
        await sandbox.kill()


async def main():
    results = await asyncio.gather(*(square(n) for n in range(1, 4)))
    for n, text, written, shell in results:
        print(f"job {n}: {n}^2 = {text}, file says {written}, shell says {shell}")
    running = await AsyncSandbox.list().next_items()
    print("running after all jobs:", len(running))


asyncio.run(main())
