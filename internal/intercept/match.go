package intercept

import "strings"

// MatchRule returns the pattern among patterns that applies to host, as
// E2B matches network rules: an exact name first, else the longest
// wildcard ("*.example.com") whose suffix host has. A wildcard matches
// subdomains at any depth, never the apex (example.com itself). Patterns
// and host compare case-insensitively.
func MatchRule(patterns []string, host string) (pattern string, ok bool) {
	host = strings.ToLower(strings.TrimSuffix(host, "."))
	best := ""
	for _, p := range patterns {
		lp := strings.ToLower(p)
		if lp == host {
			return p, true
		}
		suffix, wild := strings.CutPrefix(lp, "*")
		if wild && strings.HasPrefix(suffix, ".") && len(host) > len(suffix) && strings.HasSuffix(host, suffix) && len(p) > len(best) {
			best = p
		}
	}
	return best, best != ""
}
