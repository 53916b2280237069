package sandbox

import (
	"testing"
	"time"
)

// FuzzParseCursor checks that any nextToken parses without panicking and
// that issued cursors round-trip.
func FuzzParseCursor(f *testing.F) {
	f.Add(int64(1764158400000000000), "iabc", "MTIzLmlk")
	f.Add(int64(0), "i", "!!")
	f.Add(int64(-5), "a.b", "")
	f.Fuzz(func(t *testing.T, ns int64, id, raw string) {
		_, _ = parseCursor(raw)
		if id == "" {
			return
		}
		c := cursor{started: time.Unix(0, ns), id: id}
		got, err := parseCursor(c.String())
		if err != nil {
			t.Fatalf("parse(%q): %v", c.String(), err)
		}
		if !got.started.Equal(c.started) || got.id != c.id {
			t.Fatalf("round trip %+v -> %+v", c, got)
		}
	})
}
