package interp

import (
	"testing"
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
