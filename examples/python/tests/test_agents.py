"""The agent examples with the real openai client, against a scripted
OpenAI-compatible server: the model's replies are scripted, the sandbox's
output is real and must reach the model."""

from openai_stub import call_tool, say


def test_reason_execute_reflect(run_example, openai_stub):
    openai_stub.script(
        call_tool("execute_python", "I'll call a Fibonacci function.", code="fib(20)"),
        call_tool("execute_python", "fib is not defined yet: define it, then call it.",
                  code="def fib(n):\n    a, b = 0, 1\n    for _ in range(n):\n        a, b = b, a + b\n    return a\n\nprint('fib(20) =', fib(20))\nfib(20)"),
        say("The 20th Fibonacci number is 6765."),
    )
    out = run_example("agent_loop.py", "What is the 20th Fibonacci number?", env=openai_stub.env()).stdout
    assert "[1] observe:\nerror: NameError: name 'fib' is not defined" in out, out
    assert "[2] observe:\nstdout:\nfib(20) = 6765\n\nresult: 6765" in out, out
    assert out.splitlines()[-1] == "answer: The 20th Fibonacci number is 6765.", out

    reqs = openai_stub.requests
    assert len(reqs) == 3 and openai_stub.unused == 0
    assert reqs[0]["model"] == "gpt-4o"
    assert reqs[0]["tools"][0]["function"]["name"] == "execute_python"
    assert reqs[0]["messages"][1] == {"role": "user", "content": "What is the 20th Fibonacci number?"}
    # Reflect: each request after the first carries the sandbox's real output.
    first, second = reqs[1]["messages"][-1], reqs[2]["messages"][-1]
    assert first["role"] == "tool" and "NameError" in first["content"], first
    assert reqs[1]["messages"][-2]["tool_calls"][0]["id"] == first["tool_call_id"]
    assert second["role"] == "tool" and "fib(20) = 6765" in second["content"], second


FIX_1 = """Guard against the empty list:
```python
def average(xs):
    return sum(xs) / len(xs) if xs else None

readings = {"mon": [3, 5], "tue": []}
for day, xs in readings.items():
    print(day, round(average(xs), 1))
```"""

FIX_2 = """round() cannot take None: only round real averages.
```python
def average(xs):
    return sum(xs) / len(xs) if xs else None

readings = {"mon": [3, 5], "tue": []}
for day, xs in readings.items():
    avg = average(xs)
    print(day, "no data" if avg is None else round(avg, 1))
```"""


def test_code_repair(run_example, openai_stub):
    openai_stub.script(say(FIX_1), say(FIX_2))
    out = run_example("code_repair.py", env=openai_stub.env()).stdout
    lines = out.splitlines()
    assert lines[:5] == [
        "attempt 1: ZeroDivisionError: division by zero",
        "attempt 2: TypeError: type NoneType doesn't define __round__ method",
        "attempt 3: ok",
        "output: mon 4.0",
        "tue no data",
    ], out
    assert lines[5] == "fixed program:" and 'print(day, "no data" if avg is None' in out, out

    reqs = openai_stub.requests
    assert len(reqs) == 2 and openai_stub.unused == 0
    # The model saw the real tracebacks and the output before them.
    assert "ZeroDivisionError" in reqs[0]["messages"][-1]["content"]
    assert "mon 4.0" in reqs[0]["messages"][-1]["content"]
    assert "TypeError" in reqs[1]["messages"][-1]["content"]
    assert reqs[1]["messages"][-2] == {"role": "assistant", "content": FIX_1}
