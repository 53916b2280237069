package sandbox_test

import (
	"errors"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/sandpit-dev/sandpit/internal/errdefs"
	"github.com/sandpit-dev/sandpit/internal/runtime"
	"github.com/sandpit-dev/sandpit/internal/runtime/fake"
	"github.com/sandpit-dev/sandpit/internal/sandbox"
)

func prefixes(ss ...string) []netip.Prefix {
	var out []netip.Prefix
	for _, s := range ss {
		out = append(out, netip.MustParsePrefix(s))
	}
	return out
}

func TestCreateWithNetworkRules(t *testing.T) {
	e := newEnv(t, fake.Options{})
	info := e.create(t, sandbox.CreateRequest{AllowInternetAccess: true, Network: &sandbox.Network{
		AllowOut: []string{"1.1.1.1", "8.8.8.0/24", "2001:db8::1"}, DenyOut: []string{"0.0.0.0/0"},
	}})
	spec, _ := e.rt.Spec(info.ID)
	if !spec.AllowInternet || !slices.Equal(spec.Egress.Allow, prefixes("1.1.1.1/32", "8.8.8.0/24")) || !slices.Equal(spec.Egress.Deny, prefixes("0.0.0.0/0")) {
		t.Fatalf("spec: internet %v egress %+v", spec.AllowInternet, spec.Egress)
	}
	if info.Network == nil || len(info.Network.AllowOut) != 3 {
		t.Errorf("info does not echo the rules: %+v", info.Network)
	}

	// Rules with allowInternetAccess false: online, everything else denied.
	off := e.create(t, sandbox.CreateRequest{Network: &sandbox.Network{AllowOut: []string{"1.1.1.1"}}})
	spec, _ = e.rt.Spec(off.ID)
	if !spec.AllowInternet || !slices.Equal(spec.Egress.Deny, prefixes("0.0.0.0/0")) || !off.InternetBlocked {
		t.Fatalf("offline + allowOut: internet %v egress %+v", spec.AllowInternet, spec.Egress)
	}

	for _, bad := range []string{"*", "a.*.example.com", "*example.com", "-a.example.com", "1.2.3.4/40", "not an ip", "example.com/24"} {
		_, err := e.m.Create(t.Context(), sandbox.CreateRequest{Template: "base", AllowInternetAccess: true, Network: &sandbox.Network{AllowOut: []string{bad}}})
		if !errors.Is(err, errdefs.ErrInvalidArgument) || !strings.Contains(err.Error(), bad) {
			t.Errorf("allowOut %q: %v, want an invalid-argument error naming it", bad, err)
		}
	}
	// Domain names are allow rules only, as on E2B.
	_, err := e.m.Create(t.Context(), sandbox.CreateRequest{Template: "base", AllowInternetAccess: true, Network: &sandbox.Network{DenyOut: []string{"example.com"}}})
	if !errors.Is(err, errdefs.ErrInvalidArgument) || !strings.Contains(err.Error(), "allowOut only") {
		t.Errorf("denyOut example.com: %v, want an invalid-argument error saying names go in allowOut", err)
	}
}

func TestCreateWithDomainRules(t *testing.T) {
	e := newEnv(t, fake.Options{})
	info := e.create(t, sandbox.CreateRequest{AllowInternetAccess: true, Network: &sandbox.Network{
		AllowOut: []string{"API.Example.com.", "*.github.com", "1.1.1.1"}, DenyOut: []string{"0.0.0.0/0"},
	}})
	spec, _ := e.rt.Spec(info.ID)
	if !slices.Equal(spec.Egress.Names, []string{"api.example.com", "*.github.com"}) || !slices.Equal(spec.Egress.Allow, prefixes("1.1.1.1/32")) || !slices.Equal(spec.Egress.Deny, prefixes("0.0.0.0/0")) {
		t.Fatalf("egress %+v", spec.Egress)
	}
	// The client's spelling is what it reads back.
	if got, _ := e.m.Get(t.Context(), info.ID); got.Network == nil || got.Network.AllowOut[0] != "API.Example.com." {
		t.Errorf("info network %+v", got.Network)
	}
	// Names alone with allowInternetAccess false: online, only the names.
	off := e.create(t, sandbox.CreateRequest{Network: &sandbox.Network{AllowOut: []string{"pypi.org"}}})
	spec, _ = e.rt.Spec(off.ID)
	if !spec.AllowInternet || !slices.Equal(spec.Egress.Names, []string{"pypi.org"}) || !slices.Equal(spec.Egress.Deny, prefixes("0.0.0.0/0")) {
		t.Fatalf("offline + names: internet %v egress %+v", spec.AllowInternet, spec.Egress)
	}
	// An update opens and closes names.
	if err := e.m.UpdateNetwork(t.Context(), info.ID, &sandbox.Network{AllowOut: []string{"*.pypi.org"}}, false); err != nil {
		t.Fatal(err)
	}
	spec, _ = e.rt.Spec(info.ID)
	if !slices.Equal(spec.Egress.Names, []string{"*.pypi.org"}) || len(spec.Egress.Allow) != 0 || !slices.Equal(spec.Egress.Deny, prefixes("0.0.0.0/0")) {
		t.Fatalf("after update: egress %+v", spec.Egress)
	}
	if err := e.m.UpdateNetwork(t.Context(), info.ID, &sandbox.Network{DenyOut: []string{"*.pypi.org"}}, true); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("update with a denyOut name: %v", err)
	}
}

func TestUpdateNetwork(t *testing.T) {
	e := newEnv(t, fake.Options{})
	info := e.create(t, sandbox.CreateRequest{AllowInternetAccess: true})
	if err := e.m.UpdateNetwork(t.Context(), info.ID, &sandbox.Network{DenyOut: []string{"10.1.0.0/16"}}, true); err != nil {
		t.Fatal(err)
	}
	spec, _ := e.rt.Spec(info.ID)
	if !slices.Equal(spec.Egress.Deny, prefixes("10.1.0.0/16")) || len(spec.Egress.Allow) != 0 {
		t.Fatalf("egress %+v", spec.Egress)
	}
	got, _ := e.m.Get(t.Context(), info.ID)
	if got.Network == nil || got.Network.DenyOut[0] != "10.1.0.0/16" {
		t.Errorf("info network %+v", got.Network)
	}
	// allow_internet_access false through an update: deny everything.
	if err := e.m.UpdateNetwork(t.Context(), info.ID, nil, false); err != nil {
		t.Fatal(err)
	}
	spec, _ = e.rt.Spec(info.ID)
	if !slices.Equal(spec.Egress.Deny, prefixes("0.0.0.0/0")) {
		t.Fatalf("egress %+v", spec.Egress)
	}
	if err := e.m.UpdateNetwork(t.Context(), "nope", nil, true); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("unknown sandbox: %v", err)
	}
	offline := e.create(t, sandbox.CreateRequest{})
	if err := e.m.UpdateNetwork(t.Context(), offline.ID, nil, true); !errors.Is(err, errdefs.ErrConflict) || !strings.Contains(err.Error(), offline.ID) {
		t.Errorf("widening an offline sandbox: %v", err)
	}
	if err := e.m.UpdateNetwork(t.Context(), offline.ID, &sandbox.Network{DenyOut: []string{"example.com"}}, true); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("domain in an update's denyOut: %v", err)
	}
	if err := e.m.UpdateNetwork(t.Context(), offline.ID, &sandbox.Network{AllowOut: []string{"example.com"}}, false); !errors.Is(err, errdefs.ErrConflict) {
		t.Errorf("opening a name on an offline sandbox: %v", err)
	}
}

func TestEgressLimits(t *testing.T) {
	ceiling := runtime.EgressLimits{Rate: 1 << 20, Conns: 10}
	e := newEnvConfig(t, fake.Options{}, templates(), func(c *sandbox.Config) { c.EgressCeiling = ceiling })
	lim := runtime.EgressLimits{Rate: 512 << 10, Conns: 4}
	info := e.create(t, sandbox.CreateRequest{AllowInternetAccess: true, Network: &sandbox.Network{Limits: lim}})
	spec, _ := e.rt.Spec(info.ID)
	if !spec.AllowInternet || spec.Egress.Limits != lim || len(spec.Egress.Deny) != 0 {
		t.Fatalf("spec: internet %v egress %+v", spec.AllowInternet, spec.Egress)
	}
	// New rules keep the sandbox's limits, and so does the record a
	// restarted daemon reads.
	if err := e.m.UpdateNetwork(t.Context(), info.ID, &sandbox.Network{AllowOut: []string{"pypi.org"}, DenyOut: []string{"0.0.0.0/0"}}, true); err != nil {
		t.Fatal(err)
	}
	spec, _ = e.rt.Spec(info.ID)
	if spec.Egress.Limits != lim || len(spec.Egress.Names) != 1 {
		t.Fatalf("after an update: %+v", spec.Egress)
	}
	if err := e.m.UpdateNetwork(t.Context(), info.ID, nil, true); err != nil {
		t.Fatal(err)
	}
	if spec, _ = e.rt.Spec(info.ID); spec.Egress.Limits != lim {
		t.Fatalf("after clearing the rules: %+v", spec.Egress)
	}
	rec, err := e.st.GetSandbox(t.Context(), info.ID)
	if err != nil {
		t.Fatal(err)
	}
	if rec.Network == nil || rec.Network.EgressRate != lim.Rate || rec.Network.EgressConns != lim.Conns {
		t.Fatalf("stored network %+v", rec.Network)
	}

	for _, over := range []runtime.EgressLimits{{Rate: 2 << 20}, {Conns: 11}} {
		_, err := e.m.Create(t.Context(), sandbox.CreateRequest{Template: "base", AllowInternetAccess: true, Network: &sandbox.Network{Limits: over}})
		if !errors.Is(err, errdefs.ErrInvalidArgument) || !strings.Contains(err.Error(), "maximum") {
			t.Errorf("limits %+v over the ceiling: %v", over, err)
		}
	}
}
