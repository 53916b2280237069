package interp

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"image/png"
	"maps"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestPythonState(t *testing.T) {
	e := newTestEnv(t, nil)
	x := e.exec(pyCode("x = 1"))
	mustOK(t, x)
	x = e.exec(pyCode("x + 1"))
	mustOK(t, x)
	if got := x.mainText(); got != "2" {
		t.Fatalf("x + 1 = %q, lines %v", got, x.lines)
	}
	if c := x.of("number_of_executions"); len(c) != 1 || c[0].m["execution_count"] != float64(2) {
		t.Fatalf("number_of_executions: %v", c)
	}
	t.Logf("lines: %v", x.lines)
}

func TestPythonStreamsWhileRunning(t *testing.T) {
	e := newTestEnv(t, nil)
	x := e.exec(pyCode("import time\nfor i in range(3):\n    print(i, flush=True)\n    time.sleep(0.3)"))
	mustOK(t, x)
	outs := x.of("stdout")
	if len(outs) != 3 {
		t.Fatalf("want 3 stdout chunks, got %v", outs)
	}
	for i, o := range outs {
		if str(o.m["text"]) != fmt.Sprintf("%d\n", i) || str(o.m["timestamp"]) == "" {
			t.Errorf("chunk %d: %v", i, o.m)
		}
	}
	end := x.lines[len(x.lines)-1].at
	if gap := end.Sub(outs[0].at); gap < 500*time.Millisecond {
		t.Errorf("first chunk arrived only %v before the end: not streamed", gap)
	}
	if gap := outs[1].at.Sub(outs[0].at); gap < 200*time.Millisecond {
		t.Errorf("chunks 0 and 1 arrived %v apart", gap)
	}
}

func TestPythonMatplotlibPNG(t *testing.T) {
	e := newTestEnv(t, nil)
	for _, src := range []string{
		"import matplotlib.pyplot as plt\nplt.figure(figsize=(4, 3), dpi=100)\nplt.plot([1, 2, 3], [1, 4, 9])\nplt.show()",
		"import matplotlib.pyplot as plt\nfig = plt.figure(figsize=(4, 3), dpi=100)\nfig.gca().plot([1, 2], [3, 4])\nplt.close(fig)\nfig",
	} {
		x := e.exec(pyCode(src))
		mustOK(t, x)
		var pngs []string
		for _, r := range x.of("result") {
			if p := str(r.m["png"]); p != "" {
				pngs = append(pngs, p)
			}
		}
		if len(pngs) != 1 {
			t.Fatalf("%q: want one png result, got %v", src, x.lines)
		}
		raw, err := base64.StdEncoding.DecodeString(pngs[0])
		if err != nil {
			t.Fatal(err)
		}
		img, err := png.Decode(bytes.NewReader(raw))
		if err != nil {
			t.Fatalf("decoding png: %v", err)
		}
		// 4x3 inches at 100 dpi; the inline backend crops to the tight
		// bounding box, so allow some slack.
		b := img.Bounds()
		if b.Dx() < 300 || b.Dx() > 420 || b.Dy() < 220 || b.Dy() > 320 {
			t.Errorf("%q: image %dx%d, want about 400x300", src, b.Dx(), b.Dy())
		}
	}
}

func TestPythonDataFrame(t *testing.T) {
	e := newTestEnv(t, nil)
	x := e.exec(pyCode("import pandas as pd\npd.DataFrame({'a': [1, 2], 'b': ['x', 'y']})"))
	mustOK(t, x)
	r := x.of("result")
	if len(r) != 1 {
		t.Fatalf("results: %v", x.lines)
	}
	if html := str(r[0].m["html"]); !strings.Contains(html, "<table") {
		t.Errorf("html: %q", html)
	}
	data, _ := r[0].m["data"].(map[string]any)
	if fmt.Sprint(data["a"]) != "[1 2]" || fmt.Sprint(data["b"]) != "[x y]" {
		t.Errorf("data: %v", r[0].m["data"])
	}
	if r[0].m["is_main_result"] != true || str(r[0].m["text"]) == "" {
		t.Errorf("result: %v", r[0].m)
	}
}

func TestPythonRichAndMagics(t *testing.T) {
	e := newTestEnv(t, nil)
	x := e.exec(pyCode(`class R:
    def _repr_html_(self): return "<b>hi</b>"
    def _repr_markdown_(self): return "**hi**"
    def _repr_json_(self): return {"k": [1, 2]}
from IPython.display import display
display(R())
R()`))
	mustOK(t, x)
	r := x.of("result")
	if len(r) != 2 || r[0].m["is_main_result"] != false || r[1].m["is_main_result"] != true {
		t.Fatalf("results: %v", r)
	}
	if r[1].m["html"] != "<b>hi</b>" || r[1].m["markdown"] != "**hi**" || fmt.Sprint(r[1].m["json"]) != "map[k:[1 2]]" {
		t.Errorf("mime fields: %v", r[1].m)
	}
	x = e.exec(pyCode("!echo shell-$((1+2))\n%cd /tmp\nimport os\nos.getcwd()"))
	mustOK(t, x)
	if !strings.Contains(x.stdout(), "shell-3") || x.mainText() != "/tmp" {
		t.Errorf("! and %%cd: %v", x.lines)
	}
	x = e.exec(pyCode("'quoted'"))
	if x.mainText() != "quoted" {
		t.Errorf("quotes not stripped: %q", x.mainText())
	}
}

func TestPythonErrors(t *testing.T) {
	e := newTestEnv(t, nil)
	x := e.exec(pyCode("print('before')\n1/0\nprint('after')"))
	er := x.errorLine()
	if er == nil || er["name"] != "ZeroDivisionError" || er["value"] != "division by zero" || !strings.Contains(str(er["traceback"]), "ZeroDivisionError") {
		t.Fatalf("error: %v", x.lines)
	}
	if got := x.stdout(); got != "before\n" {
		t.Errorf("stdout %q: statements after the error ran", got)
	}
	if x.lines[len(x.lines)-1].typ() != "end_of_execution" {
		t.Errorf("no end_of_execution")
	}
	x = e.exec(pyCode("def f(:\n  pass"))
	if er := x.errorLine(); er == nil || er["name"] != "SyntaxError" {
		t.Errorf("syntax error: %v", x.lines)
	}
	for _, k := range []string{"name", "value", "traceback"} {
		if _, ok := x.errorLine()[k]; !ok {
			t.Errorf("error line lacks %s", k)
		}
	}
	// The context is still usable.
	if got := e.exec(pyCode("2 * 21")).mainText(); got != "42" {
		t.Errorf("after errors: %q", got)
	}
}

func TestPythonEnv(t *testing.T) {
	global := map[string]string{"G": "one"}
	var mu sync.Mutex
	e := newTestEnv(t, func(c *Config) {
		c.Env = func() map[string]string {
			mu.Lock()
			defer mu.Unlock()
			return maps.Clone(global)
		}
	})
	x := e.exec(code("import os; (os.environ.get('G'), os.environ.get('E'))", `"env_vars":{"E":"exec","G":"over"}`))
	if got := x.mainText(); got != "('over', 'exec')" {
		t.Errorf("with env_vars: %q %v", got, x.lines)
	}
	x = e.exec(pyCode("import os; (os.environ.get('G'), os.environ.get('E'))"))
	if got := x.mainText(); got != "('one', None)" {
		t.Errorf("after env_vars: %q", got)
	}
	mu.Lock()
	global["G"] = "two"
	global["H"] = "new"
	mu.Unlock()
	x = e.exec(pyCode("import os; (os.environ.get('G'), os.environ.get('H'))"))
	if got := x.mainText(); got != "('two', 'new')" {
		t.Errorf("global env change: %q", got)
	}
}

func TestPythonInterruptOnDisconnect(t *testing.T) {
	e := newTestEnv(t, nil)
	mustOK(t, e.exec(pyCode("y = 7")))
	ctx, cancel := context.WithCancel(t.Context())
	resp := e.post(ctx, "/execute", pyCode("while True: pass"))
	// Read the first line (number_of_executions): the loop is running.
	buf := make([]byte, 1)
	if _, err := resp.Body.Read(buf); err != nil {
		t.Fatal(err)
	}
	cancel()
	resp.Body.Close()
	start := time.Now()
	x := e.exec(pyCode("y + 1"))
	mustOK(t, x)
	if got := x.mainText(); got != "8" {
		t.Fatalf("after interrupt: %q %v", got, x.lines)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("next execution waited %v", d)
	}
}

func TestPythonKernelDeath(t *testing.T) {
	e := newTestEnv(t, nil)
	mustOK(t, e.exec(pyCode("z = 1")))
	x := e.exec(pyCode("import os\nos._exit(1)"))
	er := x.errorLine()
	if er == nil || er["name"] != "DeadKernelError" {
		t.Fatalf("want DeadKernelError, got %v", x.lines)
	}
	if x.lines[len(x.lines)-1].typ() != "end_of_execution" {
		t.Errorf("no end_of_execution")
	}
	x = e.exec(pyCode("'z' in dir()"))
	mustOK(t, x)
	if got := x.mainText(); got != "False" {
		t.Errorf("state after restart: %q", got)
	}
	if got := e.exec(pyCode("1 + 1")).mainText(); got != "2" {
		t.Errorf("after recovery: %q", got)
	}
}

func TestKeepalive(t *testing.T) {
	e := newTestEnv(t, func(c *Config) { c.Keepalive = 200 * time.Millisecond })
	x := e.exec(pyCode("import time; time.sleep(0.7)"))
	mustOK(t, x)
	if n := len(x.of("keepalive")); n < 2 {
		t.Errorf("keepalive lines: %d (%v)", n, x.lines)
	}
}

func TestPythonCharts(t *testing.T) {
	e := newTestEnv(t, nil)
	chartOf := func(src string) map[string]any {
		t.Helper()
		x := e.exec(pyCode(src))
		mustOK(t, x)
		for _, r := range x.of("result") {
			if c, ok := r.m["chart"].(map[string]any); ok {
				if r.m["png"] == nil {
					t.Errorf("chart without png: %v", r.m)
				}
				return c
			}
		}
		t.Fatalf("no chart in %v", x.lines)
		return nil
	}
	c := chartOf("import matplotlib.pyplot as plt\nplt.plot([1, 2, 3], [1, 4, 9], label='sq')\nplt.title('T')\nplt.xlabel('x')\nplt.show()")
	if c["type"] != "line" || c["title"] != "T" || c["x_label"] != "x" {
		t.Errorf("line chart: %v", c)
	}
	els, _ := c["elements"].([]any)
	if len(els) != 1 || fmt.Sprint(els[0]) != "map[label:sq points:[[1 1] [2 4] [3 9]]]" {
		t.Errorf("line elements: %v", els)
	}
	c = chartOf("import matplotlib.pyplot as plt\nplt.bar(['a', 'b'], [3, 5], label='g')\nplt.show()")
	if c["type"] != "bar" || fmt.Sprint(c["elements"]) != "[map[group:g label:a value:3] map[group:g label:b value:5]]" {
		t.Errorf("bar chart: %v", c)
	}
	c = chartOf("import matplotlib.pyplot as plt\nplt.pie([1, 3], labels=['a', 'b'])\nplt.show()")
	if c["type"] != "pie" || len(c["elements"].([]any)) != 2 {
		t.Errorf("pie chart: %v", c)
	}
	c = chartOf("import matplotlib.pyplot as plt\nplt.scatter([1, 2], [3, 4])\nplt.show()")
	if c["type"] != "scatter" {
		t.Errorf("scatter chart: %v", c)
	}
	c = chartOf("import matplotlib.pyplot as plt\nfig, (a, b) = plt.subplots(1, 2)\na.plot([1, 2])\nb.bar(['x'], [1])\nplt.show()")
	if c["type"] != "superchart" || len(c["elements"].([]any)) != 2 {
		t.Errorf("superchart: %v", c)
	}
}

func TestPythonBlockedModulesImportable(t *testing.T) {
	e := newTestEnv(t, nil)
	// The launcher keeps debugpy and jedi out of the kernel's start; user
	// code can still import them where they are installed.
	x := e.exec(pyCode("import sys, importlib.util\n[m for m in ('debugpy', 'jedi') if m in sys.modules and sys.modules[m] is None]"))
	mustOK(t, x)
	if got := x.mainText(); got != "[]" {
		t.Errorf("blocked modules left: %s", got)
	}
}
