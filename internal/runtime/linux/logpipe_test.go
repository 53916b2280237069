package linux

import (
	"bufio"
	"io"
	"strings"
	"testing"
)

// TestReadLine cuts a runaway line at the buffer and goes on with the
// next, so the agent's stderr pipe is always drained.
func TestReadLine(t *testing.T) {
	in := "short\n" + strings.Repeat("x", 100) + "\nnext\nno newline"
	br := bufio.NewReaderSize(strings.NewReader(in), 16)
	var got []string
	for {
		line, err := readLine(br)
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, string(line))
	}
	want := []string{"short", strings.Repeat("x", 16), "next", "no newline"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Fatalf("lines = %q, want %q", got, want)
	}
}
