package sandbox

import (
	"errors"
	"strings"
	"testing"

	"github.com/sandpit-dev/sandpit/internal/errdefs"
	"github.com/sandpit-dev/sandpit/internal/runtime"
	"github.com/sandpit-dev/sandpit/internal/store"
)

// A team's egress maximum refuses a create asking for more, and lowers the
// server's default (or unbounded) limits for the team's sandboxes.
func TestTeamEgress(t *testing.T) {
	team := store.Team{Name: "acme", Limits: store.Limits{MaxEgressRate: 1000, MaxEgressConns: 8}}
	lim := func(rate uint64, conns int) *Network {
		return &Network{Limits: runtime.EgressLimits{Rate: rate, Conns: conns}}
	}
	for _, c := range []struct {
		name string
		team store.Team
		req  *Network
		def  runtime.EgressLimits
		want runtime.EgressLimits
		err  string
	}{
		{"no team maximum: unchanged", store.Team{}, nil, runtime.EgressLimits{Rate: 5000}, runtime.EgressLimits{}, ""},
		{"unbounded default: the team's maximum", team, nil, runtime.EgressLimits{}, runtime.EgressLimits{Rate: 1000, Conns: 8}, ""},
		{"default above the maximum: lowered", team, nil, runtime.EgressLimits{Rate: 5000, Conns: 4}, runtime.EgressLimits{Rate: 1000}, ""},
		{"default below the maximum: kept", team, nil, runtime.EgressLimits{Rate: 500, Conns: 4}, runtime.EgressLimits{}, ""},
		{"asked within: kept", team, lim(900, 2), runtime.EgressLimits{}, runtime.EgressLimits{Rate: 900, Conns: 2}, ""},
		{"rate over", team, lim(2000, 0), runtime.EgressLimits{}, runtime.EgressLimits{}, `over team "acme"'s maximum of 1000 (max-egress-rate)`},
		{"connections over", team, lim(0, 9), runtime.EgressLimits{}, runtime.EgressLimits{}, `maxConnections 9 is over team "acme"'s maximum of 8`},
	} {
		t.Run(c.name, func(t *testing.T) {
			before := c.req.clone()
			got, err := teamEgress(c.team, c.req, c.def)
			if c.err != "" {
				if !errors.Is(err, errdefs.ErrInvalidArgument) || !strings.Contains(err.Error(), c.err) {
					t.Fatalf("err = %v, want invalid argument with %q", err, c.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var l runtime.EgressLimits
			if got != nil {
				l = got.Limits
			}
			if l != c.want {
				t.Errorf("limits %+v, want %+v", l, c.want)
			}
			if c.req != nil && c.req.Limits != before.Limits {
				t.Error("the request's network was changed in place")
			}
		})
	}
}
