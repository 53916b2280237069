"""A LangChain tool that runs code in a sandbox, used by a LangChain agent.

    export OPENAI_API_KEY=...          # (and OPENAI_BASE_URL for another server)
    python examples/python/langchain_tool.py "How many days are there between 2024-01-01 and 2024-12-25?"
"""

import os
import sys

from e2b_code_interpreter import Sandbox
from langchain.agents import create_agent
from langchain_core.tools import tool
from langchain_openai import ChatOpenAI

sandbox = Sandbox.create()


@tool
def run_python(code: str) -> str:
    """Run Python code in a sandboxed Jupyter kernel and return its output.
    Variables persist between calls; the last expression's value is returned."""
    execution = sandbox.run_code(code)
    if execution.error:
        return f"{execution.error.name}: {execution.error.value}\n{execution.error.traceback}"
    output = "".join(execution.logs.stdout + execution.logs.stderr)
    if execution.text:
        output += execution.text
    return output or "(no output)"


try:
    # The tool on its own, as LangChain calls it.
    print("tool says:", run_python.invoke({"code": "import sys; sys.version_info[0]"}))

    # The tool in an agent's hands.
    agent = create_agent(
        ChatOpenAI(model=os.environ.get("OPENAI_MODEL", "gpt-4o"), temperature=0),
        tools=[run_python],
        system_prompt="Use run_python to compute answers; never guess.",
    )
    question = sys.argv[1] if len(sys.argv) > 1 else "How many days are there between 2024-01-01 and 2024-12-25?"
    state = agent.invoke({"messages": [{"role": "user", "content": question}]})
    for message in state["messages"]:
        if message.type == "tool":
            print("tool result:", message.content.strip())
    print("answer:", state["messages"][-1].content)
finally:
    sandbox.kill()
