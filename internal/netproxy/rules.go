package netproxy

import (
	"net/netip"
	"strings"

	"github.com/sandpit-dev/sandpit/internal/egress"
)

// rules is one sandbox's policy, ready for matching.
type rules struct {
	sandbox     string
	allow, deny []netip.Prefix
	exact       map[string]bool
	wild        []string // "*.example.com" entries without the "*"
}

func newRules(p egress.Policy) *rules {
	r := &rules{sandbox: p.Sandbox, allow: p.Allow, deny: p.Deny, exact: map[string]bool{}}
	for _, n := range p.Names {
		n = strings.ToLower(strings.TrimSuffix(n, "."))
		if suffix, ok := strings.CutPrefix(n, "*"); ok {
			r.wild = append(r.wild, suffix)
		} else {
			r.exact[n] = true
		}
	}
	return r
}

// address judges a destination by its address alone, as the sandbox's
// nftables chain does: allowOut wins over denyOut. It returns the rule
// that decided, "" when none did (allowed).
func (r *rules) address(a netip.Addr) (bool, string) {
	a = a.Unmap()
	for _, p := range r.allow {
		if p.Contains(a) {
			return true, "allowOut " + p.String()
		}
	}
	for _, p := range r.deny {
		if p.Contains(a) {
			return false, "denyOut " + p.String()
		}
	}
	return true, ""
}

// match returns the allowOut entry that allows name, "" when none does:
// an exact entry first, then the longest wildcard whose subdomains hold
// it (never its apex).
func (r *rules) match(name string) string {
	name = strings.ToLower(strings.TrimSuffix(name, "."))
	if name == "" {
		return ""
	}
	if r.exact[name] {
		return name
	}
	best := ""
	for _, suffix := range r.wild {
		if strings.HasSuffix(name, suffix) && len(name) > len(suffix) && len(suffix) > len(best) {
			best = suffix
		}
	}
	if best == "" {
		return ""
	}
	return "*" + best
}
