package egress

import (
	"bytes"
	"fmt"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/userdata"
)

// Docker, with iptables' nftables backend, keeps its rules in table ip
// filter and sets its FORWARD chain's policy to drop. A drop in any base
// chain is final, whatever sandpit's own table says, so on such a host
// sandbox traffic would die there. Docker gives users the DOCKER-USER
// chain, jumped to first from FORWARD, for exactly this: sandpit puts two
// accept rules for sandbox links at its head. They only spare sandbox
// traffic from Docker's drop; sandpit's own table still filters it as
// everywhere else. Docker's rules and its own bridges' traffic are left
// as they are.
const (
	// DockerTable is where Docker's iptables-nft rules live (family ip).
	DockerTable = "filter"
	// dockerUserChain is Docker's chain for its users' rules.
	dockerUserChain = "DOCKER-USER"
)

// dockerMark tags this daemon's rules in DOCKER-USER (a comment, as `nft
// list ruleset` shows it), so Close removes its own and nothing else.
func (e *Egress) dockerMark() []byte {
	return userdata.AppendString(nil, userdata.TypeComment, "sandpit "+e.table)
}

// dockerUser finds the DOCKER-USER chain; nil when there is none.
func (e *Egress) dockerUser(c *nftables.Conn) (*nftables.Chain, error) {
	chains, err := c.ListChainsOfTableFamily(nftables.TableFamilyIPv4)
	if err != nil {
		return nil, fmt.Errorf("listing ip chains: %w", err)
	}
	for _, ch := range chains {
		if ch.Table.Name == e.dockerTable && ch.Name == dockerUserChain {
			return ch, nil
		}
	}
	return nil, nil
}

// besideDocker puts this daemon's accept rules at the head of DOCKER-USER
// when the chain exists and they are not there yet; it reports whether it
// added them. Docker may start after sandpit, so Keep calls it again.
func (e *Egress) besideDocker() (bool, error) {
	e.dockerMu.Lock()
	defer e.dockerMu.Unlock()
	if e.closed {
		return false, nil
	}
	c, unlock, err := openLocked()
	if err != nil {
		return false, err
	}
	defer unlock()
	ch, err := e.dockerUser(c)
	if err != nil || ch == nil {
		return false, err
	}
	rules, err := c.GetRules(ch.Table, ch)
	if err != nil {
		return false, fmt.Errorf("listing %s rules: %w", dockerUserChain, err)
	}
	mark := e.dockerMark()
	var ours []*nftables.Rule
	for _, r := range rules {
		if bytes.Equal(r.UserData, mark) {
			ours = append(ours, r)
		}
	}
	if len(ours) == 2 {
		return false, nil
	}
	for _, r := range ours { // half a pair: start again
		if err := c.DelRule(r); err != nil {
			return false, fmt.Errorf("removing a stale %s rule: %w", dockerUserChain, err)
		}
	}
	// Only meta iifname/oifname and accept: expressions iptables-nft
	// reads back as `-i spv+ -j ACCEPT`, so Docker's own iptables calls
	// keep working on the table.
	for _, key := range []expr.MetaKey{expr.MetaKeyOIFNAME, expr.MetaKeyIIFNAME} {
		c.InsertRule(&nftables.Rule{
			Table: ch.Table, Chain: ch, UserData: mark,
			Exprs: append(ifname(key, expr.CmpOpEq), &expr.Verdict{Kind: expr.VerdictAccept}),
		})
	}
	if err := c.Flush(); err != nil {
		return false, fmt.Errorf("adding sandbox rules to %s: %w", dockerUserChain, err)
	}
	return true, nil
}

// Leave is Close for a daemon whose sandboxes outlive it: Keep adds
// nothing more, and sandpit's rules stay as they are, its DOCKER-USER ones
// included, so the sandboxes still get out until the next daemon takes
// them over (its New finds the rules in place).
func (e *Egress) Leave() {
	e.dockerMu.Lock()
	defer e.dockerMu.Unlock()
	e.closed = true
}

// Close removes what sandpit added to other software's rules (its
// DOCKER-USER rules) and stops Keep from adding them again. Sandpit's own
// table stays: sandboxes that outlive the daemon still need it. Calling
// Close twice is fine.
func (e *Egress) Close() error {
	e.dockerMu.Lock()
	defer e.dockerMu.Unlock()
	e.closed = true
	c, unlock, err := openLocked()
	if err != nil {
		return err
	}
	defer unlock()
	ch, err := e.dockerUser(c)
	if err != nil || ch == nil {
		return err
	}
	rules, err := c.GetRules(ch.Table, ch)
	if err != nil {
		return fmt.Errorf("listing %s rules: %w", dockerUserChain, err)
	}
	mark := e.dockerMark()
	for _, r := range rules {
		if bytes.Equal(r.UserData, mark) {
			if err := c.DelRule(r); err != nil {
				return fmt.Errorf("removing a %s rule: %w", dockerUserChain, err)
			}
		}
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("removing sandbox rules from %s: %w", dockerUserChain, err)
	}
	return nil
}
