"""A Deep Agent whose shell and files are an E2B sandbox, through the
langchain-e2b backend.

    export OPENAI_API_KEY=...          # (and OPENAI_BASE_URL for another server)
    python examples/python/deep_agent.py "Which Python version does the sandbox run?"
"""

import os
import sys

from deepagents import create_deep_agent
from e2b import Sandbox
from langchain_e2b import E2BSandbox
from langchain_openai import ChatOpenAI

e2b_sandbox = Sandbox.create()
backend = E2BSandbox(sandbox=e2b_sandbox)

try:
    print("backend says:", backend.execute("echo hello").output.strip())

    agent = create_deep_agent(
        model=ChatOpenAI(model=os.environ.get("OPENAI_MODEL", "gpt-4o"), temperature=0),
        backend=backend,
        system_prompt="You work in a Linux sandbox. Run commands to find answers.",
    )
    question = sys.argv[1] if len(sys.argv) > 1 else "Which Python version does the sandbox run?"
    state = agent.invoke({"messages": [{"role": "user", "content": question}]})
    for message in state["messages"]:
        if message.type == "tool":
            print(f"{message.name} result:", message.content.strip())
    print("answer:", state["messages"][-1].content)
finally:
    e2b_sandbox.kill()
