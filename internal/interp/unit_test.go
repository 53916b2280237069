package interp

import (
	"bytes"
	"context"
	"encoding/json"
	"os/exec"
	"strings"
	"testing"
)

func TestResultFromMIME(t *testing.T) {
	data := map[string]json.RawMessage{
		"text/plain":             json.RawMessage(`"'abc'"`),
		"text/html":              json.RawMessage(`["<b>", "x</b>"]`),
		"image/png":              json.RawMessage(`"iVBOR"`),
		"application/json":       json.RawMessage(`["a","b"]`),
		"e2b/data":               json.RawMessage(`{"a":[1]}`),
		"application/vnd.custom": json.RawMessage(`"v"`),
		"text/latex":             json.RawMessage(`"$x$"`),
	}
	r := resultFromMIME(data, true)
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	_ = json.Unmarshal(b, &got)
	want := map[string]any{
		"type": "result", "is_main_result": true, "text": "abc", "html": "<b>x</b>", "png": "iVBOR",
		"json": []any{"a", "b"}, "data": map[string]any{"a": []any{float64(1)}}, "latex": "$x$",
		"extra": map[string]any{"application/vnd.custom": "v"},
	}
	gb, _ := json.Marshal(got)
	wb, _ := json.Marshal(want)
	if !bytes.Equal(gb, wb) {
		t.Errorf("got  %s\nwant %s", gb, wb)
	}
}

func TestStripQuotes(t *testing.T) {
	for in, want := range map[string]string{`'a'`: "a", `"a"`: "a", `'a"`: `'a"`, `'`: `'`, `''`: ``, `a`: `a`, `'it's'`: `it's`} {
		if got := stripQuotes(in); got != want {
			t.Errorf("stripQuotes(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestSignerRoundTrip(t *testing.T) {
	s := signer{key: []byte("k")}
	frames, id, err := s.encode("sess", "execute_request", map[string]string{"code": "1"})
	if err != nil {
		t.Fatal(err)
	}
	// As received from a PUB socket: a topic before the delimiter.
	m, err := s.decode(append([][]byte{[]byte("kernel.x.status")}, frames...))
	if err != nil {
		t.Fatal(err)
	}
	if m.Header.MsgID != id || m.Header.MsgType != "execute_request" || string(m.Content) != `{"code":"1"}` {
		t.Errorf("decoded %+v", m)
	}
	frames[5] = []byte(`{"code":"2"}`)
	if _, err := s.decode(frames); err != errBadSignature {
		t.Errorf("tampered message: %v", err)
	}
	if _, err := s.decode(frames[:3]); err == nil {
		t.Error("short message decoded")
	}
}

func TestNormalizeLanguage(t *testing.T) {
	for in, want := range map[string]string{"": "python", " Python ": "python", "JS": "javascript", "ts": "typescript", "sh": "bash", "R": "r", "deno": "deno"} {
		if got := normalizeLanguage(in); got != want {
			t.Errorf("normalizeLanguage(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestPartialPrefix(t *testing.T) {
	s := []byte("\x1esandpit-ab:")
	for _, tc := range []struct {
		p    string
		want int
	}{{"hello", 0}, {"hello\x1e", 1}, {"x\x1esandp", 6}, {"", 0}, {"\x1esandpit-ab", 11}} {
		if got := partialPrefix([]byte(tc.p), s); got != tc.want {
			t.Errorf("partialPrefix(%q) = %d, want %d", tc.p, got, tc.want)
		}
	}
}

// FuzzBashQuote checks that bash reads back exactly what bashQuote quoted.
func FuzzBashQuote(f *testing.F) {
	if _, err := exec.LookPath("bash"); err != nil {
		f.Skip("needs bash")
	}
	for _, s := range []string{"", "a b", "it's", `\`, "line\nline", "\x01\x1f\x7f", "é€😀", `$HOME "q" $(x) ;|&`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		want := strings.ReplaceAll(s, "\x00", "")
		out, err := exec.CommandContext(context.Background(), "bash", "--norc", "-c", "printf %s "+bashQuote(s)).Output()
		if err != nil {
			t.Fatalf("bash: %v", err)
		}
		if string(out) != want {
			t.Errorf("round trip of %q gave %q", want, out)
		}
	})
}
