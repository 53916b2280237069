package process

import "testing"

func TestParseStat(t *testing.T) {
	for _, tc := range []struct {
		in         string
		pgrp, sess int
		ok         bool
	}{
		{"123 (bash) S 1 123 123 34816 0", 123, 123, true},
		{"7 (a) b) c) R 1 5 6 0", 5, 6, true},
		{"garbage", 0, 0, false},
		{"1 (x) S", 0, 0, false},
	} {
		pg, se, ok := parseStat([]byte(tc.in))
		if pg != tc.pgrp || se != tc.sess || ok != tc.ok {
			t.Errorf("parseStat(%q) = %d %d %v", tc.in, pg, se, ok)
		}
	}
}

func FuzzParseStat(f *testing.F) {
	f.Add([]byte("123 (bash) S 1 123 123 34816 0"))
	f.Fuzz(func(t *testing.T, b []byte) { parseStat(b) })
}
