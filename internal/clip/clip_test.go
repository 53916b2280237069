package clip

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func TestMiddle(t *testing.T) {
	if got := Middle("short", 10); got != "short" {
		t.Errorf("short text changed: %q", got)
	}
	long := strings.Repeat("a", 100) + strings.Repeat("é", 100) + strings.Repeat("z", 100)
	got := Middle(long, 120)
	if !strings.HasPrefix(got, strings.Repeat("a", 60)) || !strings.HasSuffix(got, strings.Repeat("z", 60)) {
		t.Errorf("head or tail lost: %q", got)
	}
	if !strings.Contains(got, "[... 280 bytes truncated ...]") {
		t.Errorf("no note of 280 bytes cut: %q", got)
	}
	// Cuts fall on rune boundaries.
	mixed := strings.Repeat("é", 100)
	for _, limit := range []int{7, 8, 9, 51} {
		if got := Middle(mixed, limit); !utf8.ValidString(got) {
			t.Errorf("limit %d: invalid UTF-8 %q", limit, got)
		}
	}
}

func TestStripANSI(t *testing.T) {
	in := "\x1b[0;31mZeroDivisionError\x1b[0m: division by zero\x1b[?25h"
	if got, want := StripANSI(in), "ZeroDivisionError: division by zero"; got != want {
		t.Errorf("StripANSI = %q, want %q", got, want)
	}
}
