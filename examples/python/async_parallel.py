"""The async SDK: several sandboxes at once with asyncio, output streamed
as it is printed.

    python examples/python/async_parallel.py
"""

import asyncio

from e2b_code_interpreter import AsyncSandbox


async def square(n):
    sandbox = await AsyncSandbox.create()
    try:
        execution = await sandbox.run_code(
            f"import time\nfor i in range(2):\n    print('job {n} step', i, flush=True)\n    time.sleep(0.2)\n{n} ** 2",
            on_stdout=lambda msg: print("streamed:", msg.line.rstrip()),
        )
        await sandbox.files.write(f"/home/user/job{n}.txt", str(execution.text))
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
