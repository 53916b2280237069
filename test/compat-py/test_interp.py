"""The code interpreter through the official e2b-code-interpreter Python SDK,
sync and async: run_code and its callbacks, rich results (PNG, HTML, charts),
errors, timeouts that interrupt the kernel, and contexts in several
languages."""

import asyncio
import base64
import struct
import time

import pytest
from e2b_code_interpreter import AsyncSandbox, Sandbox
from e2b_code_interpreter.charts import ChartType
from e2b import NotFoundException, TimeoutException


def png_size(b64: str) -> tuple[int, int]:
    buf = base64.b64decode(b64)
    assert buf[1:4] == b"PNG" and buf[12:16] == b"IHDR", "not a PNG"
    return struct.unpack(">II", buf[16:24])


@pytest.fixture(scope="module")
def sbx(server):
    s = server.track(Sandbox.create())
    yield s
    s.kill()


def test_state_and_main_result(sbx):
    assert sbx.run_code("x = 1").text is None
    r = sbx.run_code("x + 1")
    assert r.text == "2"
    assert r.results[0].is_main_result is True
    assert isinstance(r.execution_count, int)
    assert r.error is None


def test_callbacks_stream_while_the_cell_runs(sbx):
    out, err, results, errors = [], [], [], []
    t0 = time.monotonic()
    r = sbx.run_code(
        "import sys, time\nfor i in range(3):\n    print(i, flush=True)\n    time.sleep(0.3)\nprint('warn', file=sys.stderr)\ndisplay('shown')\n'last'",
        on_stdout=lambda m: out.append((m.line, time.monotonic() - t0)),
        on_stderr=lambda m: err.append(m.line),
        on_result=results.append,
        on_error=errors.append,
    )
    done = time.monotonic() - t0
    assert [line for line, _ in out] == ["0\n", "1\n", "2\n"]
    assert done - out[0][1] > 0.4, "stdout was buffered to the end"
    assert err == ["warn\n"]
    # As E2B's kernel does, a str result's text is the string itself.
    assert [x.text for x in results] == ["shown", "last"]
    assert [x.is_main_result for x in results] == [False, True]
    assert errors == []
    assert r.logs.stdout == ["0\n", "1\n", "2\n"] and r.logs.stderr == ["warn\n"]


def test_errors_and_on_error(sbx):
    errors = []
    r = sbx.run_code('print("before")\n1/0\nprint("after")', on_error=errors.append)
    assert (r.error.name, r.error.value) == ("ZeroDivisionError", "division by zero")
    assert "ZeroDivisionError" in r.error.traceback
    assert r.logs.stdout == ["before\n"]
    assert [e.name for e in errors] == ["ZeroDivisionError"]
    assert sbx.run_code("def f(:\n  pass").error.name == "SyntaxError"


def test_png_html_and_chart(sbx):
    r = sbx.run_code("import matplotlib.pyplot as plt\nplt.figure(figsize=(4, 3), dpi=100)\nplt.plot([1, 2, 3], [1, 4, 9], label='sq')\nplt.title('Squares')\nplt.xlabel('x')\nplt.show()")
    assert r.error is None
    fig = next(x for x in r.results if x.png)
    w, h = png_size(fig.png)
    assert 300 < w <= 420 and 220 < h <= 320, (w, h)
    assert "png" in fig.formats()
    assert fig.chart is not None, f"no chart in {list(fig.formats())}"
    assert fig.chart.type == ChartType.LINE and fig.chart.title == "Squares"
    assert fig.chart.x_label == "x"
    assert [p for p in fig.chart.elements[0].points] == [(1, 1), (2, 4), (3, 9)]
    r = sbx.run_code("import pandas as pd\npd.DataFrame({'a': [1, 2], 'b': ['x', 'y']})")
    assert "<table" in r.results[0].html
    assert r.results[0].data == {"a": [1, 2], "b": ["x", "y"]}
    r = sbx.run_code("from IPython.display import Markdown, HTML, display\ndisplay(HTML('<b>hi</b>'))\nMarkdown('# T')")
    assert r.results[0].html == "<b>hi</b>" and r.results[1].markdown == "# T"


def test_shell_magic_and_envs(sbx):
    r = sbx.run_code("!echo from-shell\n%cd /tmp\nimport os\nos.getcwd()")
    assert "from-shell" in "".join(r.logs.stdout) and r.text == "/tmp"
    assert sbx.run_code('import os; os.environ.get("ONLY_NOW")', envs={"ONLY_NOW": "yes"}).text == "yes"
    assert sbx.run_code('import os; str(os.environ.get("ONLY_NOW"))').text == "None"


def test_e2b_default_envs(sbx):
    r = sbx.run_code('import os; os.environ.get("E2B_SANDBOX"), os.environ.get("E2B_SANDBOX_ID")')
    assert r.text == f"('true', '{sbx.sandbox_id}')"


def test_timeout_interrupts_and_the_context_stays_usable(sbx):
    sbx.run_code("kept = 41")
    t0 = time.monotonic()
    with pytest.raises(TimeoutException):
        sbx.run_code("while True: pass", timeout=1)
    assert time.monotonic() - t0 < 10
    t0 = time.monotonic()
    assert sbx.run_code("kept + 1").text == "42"
    assert time.monotonic() - t0 < 5, "the next cell waited for the interrupted one"
    # A KeyboardInterrupt raised inside the cell is the cell's own error.
    r = sbx.run_code("raise KeyboardInterrupt")
    assert r.error.name == "KeyboardInterrupt"


def test_contexts(sbx):
    py = sbx.create_code_context(cwd="/tmp")
    js = sbx.create_code_context(language="javascript")
    sh = sbx.create_code_context(language="bash")
    assert (py.language, py.cwd) == ("python", "/tmp")
    sbx.run_code('v = "py"', context=py)
    sbx.run_code('let v = "js"', context=js)
    sbx.run_code("v=sh; cd /tmp", context=sh)
    assert sbx.run_code("import os; (v, os.getcwd())", context=py).text == "('py', '/tmp')"
    jr = sbx.run_code('console.log("log"); v + "!"', context=js)
    assert (jr.text, jr.logs.stdout) == ("js!", ["log\n"])
    assert sbx.run_code("echo $v $PWD", context=sh).logs.stdout == ["sh /tmp\n"]
    assert sbx.run_code("v").error.name == "NameError"
    assert sbx.run_code("typeof v", language="javascript").text == "undefined"
    ids = [c.id for c in sbx.list_code_contexts()]
    assert all(c.id in ids for c in (py, js, sh))
    sbx.restart_code_context(py)
    assert sbx.run_code("v", context=py).error.name == "NameError"
    sbx.remove_code_context(py)
    with pytest.raises(NotFoundException):
        sbx.run_code("1", context=py)
    assert py.id not in [c.id for c in sbx.list_code_contexts()]


def test_other_languages(sbx):
    r = sbx.run_code("x <- c(1, 2, 3)\nsum(x)", language="r")
    # IRkernel shows values as display data, so no result is the main one.
    assert ([x.text for x in r.results], r.error) == (["[1] 6"], None)
    assert sbx.run_code("cat('from r\\n')", language="r").logs.stdout == ["from r\n"]
    assert "boom" in sbx.run_code("stop('boom')", language="r").error.value
    assert sbx.run_code("const n: number = 41; n + 1", language="typescript").text == "42"
    assert sbx.run_code("await Promise.resolve(5)", language="js").text == "5"


@pytest.mark.asyncio
async def test_async_interp(server):
    s = await AsyncSandbox.create()
    server.track(s)
    lines = []

    async def on_stdout(m):
        lines.append(m.line)

    r = await s.run_code("print('a'); 6*7", on_stdout=on_stdout)
    assert (r.text, lines) == ("42", ["a\n"])
    ctx = await s.create_code_context(language="python")
    # Two contexts run at once: each cell's run overlaps the other's.
    cell = "import time; t0 = time.time(); time.sleep(1); (t0, time.time())"
    a, b = await asyncio.gather(s.run_code(cell), s.run_code(cell, context=ctx))
    (a0, a1), (b0, b1) = eval(a.text), eval(b.text)
    assert a0 < b1 and b0 < a1, f"contexts ran one after the other: {a.text} {b.text}"
    with pytest.raises(TimeoutException):
        await s.run_code("import time; time.sleep(30)", timeout=1)
    assert (await s.run_code("1+1")).text == "2"
    await s.remove_code_context(ctx)
    await s.kill()
