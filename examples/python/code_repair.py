"""A code-repair agent: run a program in a sandbox, and while it fails,
show the model the error and run the fix it proposes.

    export OPENAI_API_KEY=...          # (and OPENAI_BASE_URL for another server)
    python examples/python/code_repair.py [program.py]
"""

import os
import re
import sys

from e2b_code_interpreter import Sandbox
from openai import OpenAI

MODEL = os.environ.get("OPENAI_MODEL", "gpt-4o")
MAX_ATTEMPTS = 4

BUGGY = '''\
def average(xs):
    return sum(xs) / len(xs)

readings = {"mon": [3, 5], "tue": []}
for day, xs in readings.items():
    print(day, average(xs))
'''


def extract_code(text):
    """The first fenced code block in the model's reply, or all of it."""
    match = re.search(r"```(?:python)?\n(.*?)```", text, re.DOTALL)
    return match.group(1) if match else text


def repair(code):
    client = OpenAI()
    messages = [{
        "role": "system",
        "content": "You fix Python programs. Reply with the whole corrected program in one ```python block.",
    }]
    with Sandbox.create() as sandbox:
        for attempt in range(1, MAX_ATTEMPTS + 1):
            execution = sandbox.run_code(code)
            if execution.error is None:
                print(f"attempt {attempt}: ok")
                print("output:", "".join(execution.logs.stdout), end="")
                return code
            error = f"{execution.error.name}: {execution.error.value}"
            print(f"attempt {attempt}: {error}")
            messages.append({
                "role": "user",
                "content": f"This program:\n```python\n{code}```\nfails with:\n{execution.error.traceback}\n"
                           f"Output before the error:\n{''.join(execution.logs.stdout)}",
            })
            reply = client.chat.completions.create(model=MODEL, messages=messages).choices[0].message.content
            messages.append({"role": "assistant", "content": reply})
            code = extract_code(reply)
    print("could not repair the program")
    return None


if __name__ == "__main__":
    source = open(sys.argv[1]).read() if len(sys.argv) > 1 else BUGGY
    fixed = repair(source)
    if fixed is None:
        sys.exit(1)
    print("fixed program:\n" + fixed, end="")
