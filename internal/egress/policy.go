package egress

import (
	"errors"
	"fmt"
	"net/netip"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// SetPolicy replaces the policy of a sandbox's link; an empty one removes
// it. It takes effect for new connections at once. A policy with Names
// and something denied, or with Intercept, also sends the sandbox's TCP
// through the Proxy (redirect.go); l.Pid must then name the sandbox's
// process.
func (e *Egress) SetPolicy(l Link, p Policy) error {
	for _, pf := range append(append([]netip.Prefix(nil), p.Allow...), p.Deny...) {
		if !pf.Addr().Is4() {
			return fmt.Errorf("policy for %s: %s is not IPv4", l.Host, pf)
		}
	}
	p.Limits = p.Limits.Or(e.defaults)
	if err := e.setChain(l, p); err != nil {
		return err
	}
	if err := e.setLimits(l, p.Limits); err != nil {
		return err
	}
	if err := e.setRedirect(l, p); err != nil {
		return err
	}
	e.mu.Lock()
	if l.Pid > 0 {
		e.pids[l.Index] = l.Pid
	}
	if p.Empty() {
		delete(e.policies, l.Index)
	} else {
		e.policies[l.Index] = p
	}
	e.mu.Unlock()
	return nil
}

// setChain makes l's policy chain hold p's address rules, or removes it
// when p has none.
func (e *Egress) setChain(l Link, p Policy) error {
	if len(p.Allow)+len(p.Deny) == 0 {
		e.mu.Lock()
		old, had := e.policies[l.Index]
		e.mu.Unlock()
		if !had || len(old.Allow)+len(old.Deny) == 0 {
			return nil
		}
		return e.dropPolicy(l)
	}
	c, t, set, err := e.policyMap()
	if err != nil {
		return err
	}
	ch := c.AddChain(&nftables.Chain{Name: policyChain(l), Table: t})
	c.FlushChain(ch)
	for _, pf := range p.Allow {
		c.AddRule(&nftables.Rule{Table: t, Chain: ch, Exprs: append(daddrIn(pf), verdict(expr.VerdictAccept)...)})
	}
	for _, pf := range p.Deny {
		c.AddRule(&nftables.Rule{Table: t, Chain: ch, Exprs: append(daddrIn(pf), reject()...)})
	}
	elem := nftables.SetElement{Key: ifnameKey(l.Host), VerdictData: &expr.Verdict{Kind: expr.VerdictJump, Chain: ch.Name}}
	if err := c.SetAddElements(set, []nftables.SetElement{elem}); err != nil {
		return fmt.Errorf("mapping %s to its policy: %w", l.Host, err)
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("setting the egress policy of %s: %w", l.Host, err)
	}
	return nil
}

// dropPolicy removes a link's map entry and chain, whichever exist (one
// batch each, since a batch fails whole on a missing object).
func (e *Egress) dropPolicy(l Link) error {
	c, t, set, err := e.policyMap()
	if err != nil {
		return err
	}
	var errs []error
	if err := c.SetDeleteElements(set, []nftables.SetElement{{Key: ifnameKey(l.Host)}}); err == nil {
		if err := c.Flush(); err != nil && !errors.Is(err, unix.ENOENT) {
			errs = append(errs, fmt.Errorf("unmapping the policy of %s: %w", l.Host, err))
		}
	}
	c.DelChain(&nftables.Chain{Name: policyChain(l), Table: t})
	if err := c.Flush(); err != nil && !errors.Is(err, unix.ENOENT) {
		errs = append(errs, fmt.Errorf("removing the policy chain of %s: %w", l.Host, err))
	}
	return errors.Join(errs...)
}

// policyMap opens nftables on this daemon's table and its policy map.
func (e *Egress) policyMap() (*nftables.Conn, *nftables.Table, *nftables.Set, error) {
	c, err := nftables.New()
	if err != nil {
		return nil, nil, nil, fmt.Errorf("opening nftables: %w", err)
	}
	t := &nftables.Table{Family: nftables.TableFamilyINet, Name: e.table}
	set, err := c.GetSetByName(t, policyMap)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("finding the policy map of %s: %w", e.table, err)
	}
	return c, t, set, nil
}

func policyChain(l Link) string { return "policy_" + l.Host }

// ifnameKey is an interface name as nftables keys it: 16 bytes, NUL
// padded.
func ifnameKey(name string) []byte {
	b := make([]byte, unix.IFNAMSIZ)
	copy(b, name)
	return b
}

func netPrefix32(a netip.Addr) netip.Prefix { return netip.PrefixFrom(a, 32) }

func isNotExist(err error) bool { return errors.Is(err, unix.ENOENT) }
