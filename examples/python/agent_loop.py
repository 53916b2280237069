"""An AI agent's reason-execute-reflect loop: the model reasons about the
task and writes code, the sandbox executes it, and the model reflects on the
real output until it can answer.

    export OPENAI_API_KEY=...          # (and OPENAI_BASE_URL for another server)
    python examples/python/agent_loop.py "What is the 20th Fibonacci number?"
"""

import json
import os
import sys

from e2b_code_interpreter import Sandbox
from openai import OpenAI

MODEL = os.environ.get("OPENAI_MODEL", "gpt-4o")
MAX_STEPS = 6

SYSTEM = (
    "You are a careful data scientist. Solve the task by writing Python and running it "
    "with the execute_python tool (a Jupyter kernel; state persists between calls). "
    "Look at the output, fix mistakes, and answer only when the output proves it."
)
TOOLS = [{
    "type": "function",
    "function": {
        "name": "execute_python",
        "description": "Execute Python code in a Jupyter sandbox and return stdout, stderr, results and errors.",
        "parameters": {
            "type": "object",
            "properties": {"code": {"type": "string", "description": "Python code to run"}},
            "required": ["code"],
        },
    },
}]


def observe(execution):
    """What the model gets back: everything the code produced."""
    parts = []
    if execution.logs.stdout:
        parts.append("stdout:\n" + "".join(execution.logs.stdout))
    if execution.logs.stderr:
        parts.append("stderr:\n" + "".join(execution.logs.stderr))
    for result in execution.results:
        if result.text:
            parts.append("result: " + result.text)
    if execution.error:
        parts.append(f"error: {execution.error.name}: {execution.error.value}\n{execution.error.traceback}")
    return "\n".join(parts) or "(no output)"


def main(task):
    client = OpenAI()
    messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": task}]
    with Sandbox.create() as sandbox:
        for step in range(1, MAX_STEPS + 1):
            response = client.chat.completions.create(model=MODEL, messages=messages, tools=TOOLS)
            message = response.choices[0].message
            messages.append(message.model_dump(exclude_none=True))
            if message.content:
                print(f"[{step}] reason: {message.content}")
            if not message.tool_calls:
                print("answer:", message.content)
                return message.content
            for call in message.tool_calls:
                code = json.loads(call.function.arguments)["code"]
                print(f"[{step}] execute:\n{code}")
                observation = observe(sandbox.run_code(code))
                print(f"[{step}] observe:\n{observation}")
                messages.append({"role": "tool", "tool_call_id": call.id, "content": observation})
    print("no answer after", MAX_STEPS, "steps")
    return None


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "What is the 20th Fibonacci number?")
