"""Hello world: run code in a sandbox with E2B's code interpreter.

    export E2B_API_URL=http://127.0.0.1:49982 E2B_SANDBOX_URL=http://127.0.0.1:49982
    export E2B_API_KEY=e2b_...   # the key `sandpit serve` was started with
    python examples/python/hello.py
"""

from e2b_code_interpreter import Sandbox

with Sandbox.create() as sandbox:
    execution = sandbox.run_code("print('hello world')")
    print(execution.logs.stdout[0], end="")

    # State lives on between calls, and the last expression is the result.
    sandbox.run_code("x = 41")
    execution = sandbox.run_code("x + 1")
    print("x + 1 =", execution.text)

    files = sandbox.files.list("/")
    print("files in /:", ", ".join(sorted(f.name for f in files)))
