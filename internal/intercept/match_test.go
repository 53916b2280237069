package intercept_test

import (
	"testing"

	"github.com/sandpit-dev/sandpit/internal/intercept"
)

func TestMatchRule(t *testing.T) {
	patterns := []string{"api.example.com", "*.example.com", "*.eu.example.com", "*.org"}
	for _, c := range []struct{ host, want string }{
		{"api.example.com", "api.example.com"},
		{"API.Example.com.", "api.example.com"},
		{"x.example.com", "*.example.com"},
		{"a.b.example.com", "*.example.com"},
		{"x.eu.example.com", "*.eu.example.com"},
		{"example.com", ""}, // a wildcard never matches the apex
		{"notexample.com", ""},
		{"x.example.org", "*.org"},
		{"org", ""},
	} {
		got, ok := intercept.MatchRule(patterns, c.host)
		if got != c.want || ok != (c.want != "") {
			t.Errorf("MatchRule(%q) = %q, %v; want %q", c.host, got, ok, c.want)
		}
	}
}
