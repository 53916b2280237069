package restapi

import (
	"maps"
	"net/url"
	"strings"
	"testing"
)

// FuzzParseMetadataFilter checks that any metadata query value parses
// without panicking, and that a pair encoded the way the SDKs encode it
// comes back unchanged.
func FuzzParseMetadataFilter(f *testing.F) {
	f.Add("user", "abc", "user=abc&app=prod")
	f.Add("a&b", "x=y", "%zz")
	f.Add("ключ", "значение", "=&=&")
	f.Fuzz(func(t *testing.T, k, v, raw string) {
		_, _ = parseMetadataFilter(&raw)
		if k == "" {
			return
		}
		// encodeURIComponent per key and value, then URLSearchParams, as
		// the JS SDK does.
		enc := url.Values{encodeURIComponent(k): {encodeURIComponent(v)}}.Encode()
		// The server sees the value after query parsing unescaped it once.
		q, err := url.ParseQuery(url.Values{"metadata": {enc}}.Encode())
		if err != nil {
			t.Fatal(err)
		}
		value := q.Get("metadata")
		got, err := parseMetadataFilter(&value)
		if err != nil {
			t.Fatalf("parse %q: %v", value, err)
		}
		if want := map[string]string{k: v}; !maps.Equal(got, want) {
			t.Fatalf("parse(%q) = %v, want %v", value, got, want)
		}
	})
}

// encodeURIComponent escapes as JavaScript's function of that name does for
// the characters the tests use.
func encodeURIComponent(s string) string {
	return strings.ReplaceAll(url.QueryEscape(s), "+", "%20")
}
