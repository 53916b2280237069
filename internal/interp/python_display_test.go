package interp

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"image/png"
	"os"
	"os/exec"
	"testing"
)

// needPython skips unless /usr/bin/python3 can import every module named.
func needPython(t *testing.T, modules ...string) {
	t.Helper()
	for _, m := range modules {
		if err := exec.Command("/usr/bin/python3", "-c", "import "+m).Run(); err != nil {
			t.Skipf("/usr/bin/python3 cannot import %s (scripts/setup.sh installs it)", m)
		}
	}
}

// TestPythonPILImagePNG checks the three ways a PIL image becomes a PNG
// result on E2B: the last expression, display(), and Image.show(), which
// would otherwise look for a desktop viewer.
func TestPythonPILImagePNG(t *testing.T) {
	needPython(t, "PIL")
	e := newTestEnv(t, nil)
	mustOK(t, e.exec(pyCode("from PIL import Image\nimg = Image.new('RGB', (32, 24), (255, 0, 0))")))
	for _, tc := range []struct {
		src  string
		main bool
	}{
		{"img", true},
		{"display(img)", false},
		{"img.show()", false},
	} {
		x := e.exec(pyCode(tc.src))
		mustOK(t, x)
		results := x.of("result")
		if len(results) != 1 {
			t.Fatalf("%s: want one result, got %v", tc.src, x.lines)
		}
		r := results[0].m
		if r["is_main_result"] != tc.main {
			t.Errorf("%s: is_main_result = %v", tc.src, r["is_main_result"])
		}
		raw, err := base64.StdEncoding.DecodeString(str(r["png"]))
		if err != nil {
			t.Fatalf("%s: png field: %v (%v)", tc.src, err, r)
		}
		img, err := png.Decode(bytes.NewReader(raw))
		if err != nil {
			t.Fatalf("%s: decoding png: %v", tc.src, err)
		}
		if b := img.Bounds(); b.Dx() != 32 || b.Dy() != 24 {
			t.Errorf("%s: png is %v", tc.src, b)
		}
	}
}

// TestPythonChartsFromE2BExtractor checks that charts come from E2B's own
// extractor (e2b-charts), by kinds and fields only it produces.
func TestPythonChartsFromE2BExtractor(t *testing.T) {
	if _, err := os.Stat(pythonLibDir + "/e2b_charts"); err != nil {
		t.Skipf("e2b-charts is not installed in %s (scripts/setup.sh installs it)", pythonLibDir)
	}
	e := newTestEnv(t, nil)
	x := e.exec(pyCode(`import matplotlib.pyplot as plt
fig, ax = plt.subplots()
ax.boxplot([[85, 90, 78, 92, 88], [95, 89, 76, 91, 84, 87]], labels=['A', 'B'], patch_artist=True)
plt.show()`))
	mustOK(t, x)
	var chart map[string]any
	for _, r := range x.of("result") {
		chart, _ = r.m["chart"].(map[string]any)
	}
	if chart["type"] != "box_and_whisker" {
		t.Fatalf("box plot chart: %v", x.lines)
	}
	els, _ := chart["elements"].([]any)
	if len(els) != 2 {
		t.Fatalf("box plot elements: %v", chart)
	}
	first, _ := els[0].(map[string]any)
	if first["label"] != "A" || first["min"] != 78.0 || first["first_quartile"] != 85.0 || first["median"] != 88.0 ||
		first["third_quartile"] != 90.0 || first["max"] != 92.0 {
		t.Errorf("first box: %v", first)
	}
	if second, _ := els[1].(map[string]any); fmt.Sprint(second["outliers"]) != "[76]" {
		t.Errorf("second box: %v", second)
	}
	// A warning of the extractor's own must not reach the user.
	if s := x.of("stderr"); len(s) != 0 {
		t.Errorf("stderr: %v", s)
	}
}
