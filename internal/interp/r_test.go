package interp

import (
	"os"
	"testing"
)

func TestR(t *testing.T) {
	if _, err := os.Stat("/usr/lib/R/site-library/IRkernel"); err != nil {
		t.Skip("needs R with IRkernel (Debian r-cran-irkernel)")
	}
	e := newTestEnv(t, nil)
	mustOK(t, e.exec(code("x <- 41", `"language":"r"`)))
	x := e.exec(code("cat('hi\\n'); x + 1", `"language":"r"`))
	mustOK(t, x)
	// IRkernel shows values with display_data, so they are not main
	// results (as with upstream's IRkernel).
	if x.stdout() != "hi\n" || resultText(x) != "[1] 42" {
		t.Errorf("R: %v", x.lines)
	}
	x = e.exec(code("Sys.getenv('E')", `"language":"r"`, `"env_vars":{"E":"v"}`))
	if resultText(x) != `[1] "v"` {
		t.Errorf("R env: %v", x.lines)
	}
	x = e.exec(code("stop('boom')", `"language":"r"`))
	if er := x.errorLine(); er == nil {
		t.Errorf("R error: %v", x.lines)
	}
}

func resultText(x execution) string {
	if r := x.of("result"); len(r) > 0 {
		return str(r[0].m["text"])
	}
	return ""
}
