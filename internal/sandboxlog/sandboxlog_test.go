package sandboxlog

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

func TestRingBounds(t *testing.T) {
	r := NewSized(3, 1<<20)
	t0 := time.Unix(1000, 0)
	for i := range 5 {
		r.Append(Entry{Time: t0.Add(time.Duration(i) * time.Second), Message: string(rune('a' + i))})
	}
	got := r.Entries(Query{})
	if len(got) != 3 || got[0].Message != "c" || got[2].Message != "e" {
		t.Fatalf("entries = %+v, want c, d, e", got)
	}

	big := NewSized(1000, 300)
	for range 10 {
		big.Append(Entry{Message: strings.Repeat("x", 100)})
	}
	if n := len(big.Entries(Query{})); n != 1 {
		t.Fatalf("a 300-byte ring holds %d 164-byte entries, want 1", n)
	}
	big.Append(Entry{Message: strings.Repeat("y", 2*MaxLine)})
	got = big.Entries(Query{})
	if len(got) != 1 || len(got[0].Message) != MaxLine {
		t.Fatalf("an over-long line: %d entries, message of %d bytes; want 1 of %d", len(got), len(got[0].Message), MaxLine)
	}
}

func TestRingQuery(t *testing.T) {
	r := New()
	t0 := time.Unix(1000, 0)
	levels := []string{LevelDebug, LevelInfo, LevelWarn, LevelError, LevelInfo}
	for i, l := range levels {
		r.Append(Entry{Time: t0.Add(time.Duration(i) * time.Second), Level: l, Message: "line " + string(rune('0'+i))})
	}
	tests := []struct {
		name string
		q    Query
		want string
	}{
		{"all", Query{}, "01234"},
		{"from cursor", Query{Cursor: t0.Add(2 * time.Second)}, "234"},
		{"limit", Query{Limit: 2}, "01"},
		{"min level", Query{MinLevel: LevelWarn}, "23"},
		{"search", Query{Search: "line 4"}, "4"},
		{"backward", Query{Backward: true, Limit: 2}, "43"},
		{"backward to cursor", Query{Backward: true, Cursor: t0.Add(time.Second)}, "10"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got strings.Builder
			for _, e := range r.Entries(tt.q) {
				got.WriteString(strings.TrimPrefix(e.Message, "line "))
			}
			if got.String() != tt.want {
				t.Fatalf("got %q, want %q", got.String(), tt.want)
			}
		})
	}
}

func TestParseAgentLine(t *testing.T) {
	now := time.Unix(2000, 0)
	e := ParseAgentLine([]byte(`{"time":"2026-01-02T03:04:05.123456Z","level":"WARN","msg":"process ended","logger":"processSvc","pid":42,"cmd":"/bin/bash"}`), now)
	if e.Time.Format(time.RFC3339Nano) != "2026-01-02T03:04:05.123456Z" || e.Level != LevelWarn || e.Logger != "processSvc" ||
		e.Message != "process ended" || e.Fields["pid"] != "42" || e.Fields["cmd"] != "/bin/bash" {
		t.Fatalf("parsed %+v", e)
	}
	e = ParseAgentLine([]byte("sandbox init: mounting /proc: permission denied"), now)
	if e.Level != LevelError || e.Logger != "init" || !e.Time.Equal(now) || !strings.Contains(e.Message, "mounting /proc") {
		t.Fatalf("a plain line parsed as %+v", e)
	}
}

func TestLine(t *testing.T) {
	e := Entry{Level: LevelInfo, Logger: "processSvc", Message: "hello", Fields: map[string]string{"pid": "7"}}
	var m map[string]string
	if err := json.Unmarshal([]byte(e.Line()), &m); err != nil {
		t.Fatal(err)
	}
	if m["level"] != "info" || m["logger"] != "processSvc" || m["msg"] != "hello" || m["pid"] != "7" {
		t.Fatalf("line = %s", e.Line())
	}
}
