package sandboxinit

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"

	"github.com/sandpit-dev/sandpit/internal/seccomp"
)

// The daemon's filter reaches the init instruction for instruction.
func TestFilterJSONRoundTrip(t *testing.T) {
	prog, err := seccomp.Program()
	if err != nil {
		t.Fatal(err)
	}
	msg, err := json.Marshal(Config{ID: "x", Seccomp: prog})
	if err != nil {
		t.Fatal(err)
	}
	// 8 bytes an instruction in base64, not an object each.
	if max := len(prog) * 8 * 4 / 3 * 11 / 10; len(msg) > max+200 {
		t.Errorf("config of %d instructions is %d bytes, want at most ~%d", len(prog), len(msg), max)
	}
	var got Config
	if err := json.Unmarshal(msg, &got); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got.Seccomp, Filter(prog)) {
		t.Fatalf("filter changed on the way: %d instructions sent, %d received", len(prog), len(got.Seccomp))
	}
	var none Config
	if err := json.Unmarshal([]byte(`{"seccomp":null}`), &none); err != nil || none.Seccomp != nil {
		t.Fatalf("null filter: %v, %v", none.Seccomp, err)
	}
}

func TestFilterJSONRejects(t *testing.T) {
	for _, in := range []string{`[{"Code":6}]`, `"not base64!"`, `"AAAA"`, `7`} {
		var f Filter
		err := json.Unmarshal([]byte(in), &f)
		if err == nil {
			t.Errorf("%s: accepted as %v", in, f)
		} else if !strings.Contains(err.Error(), "seccomp filter") && !strings.Contains(err.Error(), "json") {
			t.Errorf("%s: %v", in, err)
		}
	}
}
