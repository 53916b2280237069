package sandpit_test

import (
	"bytes"
	"io"
	"strings"
	"testing"
	"time"

	sandpit "github.com/sandpit-dev/sandpit/sdk"
)

// readUntil reads r until its output contains want or 10s pass.
func readUntil(t *testing.T, r io.Reader, want string) string {
	t.Helper()
	var buf bytes.Buffer
	done := make(chan struct{})
	go func() {
		defer close(done)
		p := make([]byte, 4096)
		for !strings.Contains(buf.String(), want) {
			n, err := r.Read(p)
			buf.Write(p[:n])
			if err != nil {
				return
			}
		}
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatalf("no %q in terminal output within 10s", want)
	}
	if !strings.Contains(buf.String(), want) {
		t.Fatalf("terminal ended before %q; got %q", want, buf.String())
	}
	return buf.String()
}

func TestPTY(t *testing.T) {
	sb := newSandbox(t)
	ctx := t.Context()
	term, err := sb.PTY.Create(ctx, sandpit.PTYSize{Cols: 100, Rows: 30}, sandpit.WithEnvs(map[string]string{"GREETING": "hi-from-pty"}))
	if err != nil {
		t.Fatal(err)
	}
	defer term.Close()
	if _, err := io.WriteString(term, "echo $GREETING; stty size\n"); err != nil {
		t.Fatal(err)
	}
	readUntil(t, term, "30 100")
	if err := term.Resize(ctx, sandpit.PTYSize{Cols: 120, Rows: 40}); err != nil {
		t.Fatal(err)
	}
	if err := term.SendInput(ctx, []byte("stty size; tty\n")); err != nil {
		t.Fatal(err)
	}
	out := readUntil(t, term, "/dev/pts/")
	if !strings.Contains(out, "40 120") {
		t.Errorf("after Resize: %q", out)
	}
	if err := term.SendInput(ctx, []byte("exit 7\n")); err != nil {
		t.Fatal(err)
	}
	res, err := term.Wait(ctx)
	if res == nil || res.ExitCode != 7 {
		t.Errorf("Wait after exit 7 = %+v, %v", res, err)
	}

	// Kill, and WithOutput.
	var buf bytes.Buffer
	term2, err := sb.PTY.Create(ctx, sandpit.PTYSize{Cols: 80, Rows: 24}, sandpit.WithOutput(&buf))
	if err != nil {
		t.Fatal(err)
	}
	if err := term2.Kill(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case <-term2.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("terminal stream open 10s after Kill")
	}
	if n, err := term2.Read(make([]byte, 1)); n != 0 || err != io.EOF {
		t.Errorf("Read of a WithOutput handle = %d, %v", n, err)
	}
}
