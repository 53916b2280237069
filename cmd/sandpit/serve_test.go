package main

import (
	"io"
	"strings"
	"testing"
)

// The id range and backpressure flags are checked before anything starts.
func TestServeRefusesBadLimits(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--uid-base", "1000"}, "uid base 1000 is below 65536"},
		{[]string{"--max-sandboxes", "70000"}, "at most 65455 with this base"},
		{[]string{"--uid-base", "4294000000", "--max-sandboxes", "1"}, "passes 4294967294"},
		{[]string{"--max-sandboxes", "0"}, "max sandboxes 0"},
		{[]string{"--max-pending-creates", "-1"}, "max pending creates -1"},
		{[]string{"--min-free-memory", "12"}, `size "12": want a number with a unit`},
	} {
		var stderr strings.Builder
		err := serve(append(tc.args, "--data-dir", t.TempDir()), io.Discard, &stderr)
		if err == nil || !strings.Contains(err.Error()+stderr.String(), tc.want) {
			t.Errorf("serve %v = %v (stderr %q), want %q", tc.args, err, stderr.String(), tc.want)
		}
	}
}
