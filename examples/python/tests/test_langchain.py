"""LangChain with a sandbox: a @tool over e2b_code_interpreter in a
LangChain agent, and langchain-e2b's Deep Agents backend, both with
ChatOpenAI against the scripted OpenAI-compatible server."""

import subprocess

from openai_stub import call_tool, say


def test_langchain_tool(run_example, openai_stub):
    code = "from datetime import date\n(date(2024, 12, 25) - date(2024, 1, 1)).days"
    openai_stub.script(
        call_tool("run_python", code=code),
        say("There are 359 days between them."),
    )
    q = "How many days are there between 2024-01-01 and 2024-12-25?"
    out = run_example("langchain_tool.py", q, env=openai_stub.env()).stdout
    assert out.splitlines() == [
        "tool says: 3",
        "tool result: 359",
        "answer: There are 359 days between them.",
    ], out
    reqs = openai_stub.requests
    assert len(reqs) == 2 and openai_stub.unused == 0
    assert [t["function"]["name"] for t in reqs[0]["tools"]] == ["run_python"]
    tool_msg = reqs[1]["messages"][-1]
    assert tool_msg["role"] == "tool" and tool_msg["content"] == "359", tool_msg


def test_deep_agent_with_langchain_e2b(run_example, openai_stub):
    openai_stub.script(
        call_tool("execute", command="python3 -c 'import sys; print(sys.version.split()[0])'"),
        say("The sandbox runs Python 3."),
    )
    out = run_example("deep_agent.py", env=openai_stub.env()).stdout
    host_python = subprocess.run(["/usr/bin/python3", "-c", "import sys; print(sys.version.split()[0])"],
                                 capture_output=True, text=True, check=True).stdout.strip()
    lines = out.splitlines()
    assert lines[0] == "backend says: hello", out
    assert f"execute result: {host_python}" in lines, out  # base is the host's userland
    assert lines[-1] == "answer: The sandbox runs Python 3.", out
    reqs = openai_stub.requests
    assert len(reqs) == 2 and openai_stub.unused == 0
    assert "execute" in [t["function"]["name"] for t in reqs[0]["tools"]]
    assert host_python in reqs[1]["messages"][-1]["content"]
