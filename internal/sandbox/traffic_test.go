package sandbox_test

import (
	"context"
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/sandpit-dev/sandpit/internal/errdefs"
	"github.com/sandpit-dev/sandpit/internal/runtime/fake"
	"github.com/sandpit-dev/sandpit/internal/sandbox"
	"github.com/sandpit-dev/sandpit/internal/sandbox/sandboxtest"
)

// A sandbox created with private ports gets a traffic access token of
// its own, which the proxy reads through Traffic, paused or not, and which
// a restarted daemon keeps; rules and the Host mask are kept the same way.
func TestTrafficSettingsSurviveRestart(t *testing.T) {
	e := newEnv(t, fake.Options{})
	ctx := t.Context()
	rules := map[string][]sandbox.Rule{"API.example.com": {{Headers: map[string]string{"Authorization": "Bearer ${e2b.secrets.k}"}}}}
	a := e.create(t, sandbox.CreateRequest{Timeout: 10 * time.Minute, PrivatePorts: true, MaskRequestHost: "localhost:${PORT}", Rules: rules})
	b := e.create(t, sandbox.CreateRequest{Timeout: 10 * time.Minute, PrivatePorts: true})
	plain := e.create(t, sandbox.CreateRequest{Timeout: 10 * time.Minute})
	if a.Traffic == nil || len(a.Traffic.AccessToken) < 32 || a.Traffic.MaskRequestHost != "localhost:${PORT}" {
		t.Fatalf("created with %+v", a.Traffic)
	}
	if a.Traffic.AccessToken == b.Traffic.AccessToken {
		t.Error("two sandboxes share a traffic token")
	}
	if _, ok := a.Traffic.Rules["api.example.com"]; !ok {
		t.Errorf("rule hosts are not lower-cased: %v", a.Traffic.Rules)
	}
	if plain.Traffic != nil {
		t.Errorf("a plain sandbox has traffic settings %+v", plain.Traffic)
	}
	if err := e.m.Pause(ctx, b.ID); err != nil {
		t.Fatal(err)
	}
	if tr, ok := e.m.Traffic(b.ID); !ok || tr.AccessToken != b.Traffic.AccessToken {
		t.Errorf("a paused sandbox's Traffic = %+v, %v", tr, ok)
	}
	if err := e.m.SetRules(ctx, b.ID, map[string][]sandbox.Rule{"*.example.org": {{Headers: map[string]string{"X-K": "v"}}}}); err != nil {
		t.Fatal(err)
	}
	if err := e.m.SetRules(ctx, b.ID, map[string][]sandbox.Rule{"*": {{}}}); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("a bare * rule: %v", err)
	}
	a, _ = e.m.Get(ctx, a.ID)
	b, _ = e.m.Get(ctx, b.ID)

	m2, err := sandbox.NewManager(sandbox.Config{Runtime: e.rt, Store: e.st, Templates: templates(),
		Clock: sandboxtest.NewClock(t0.Add(time.Minute)), MaxTimeout: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer m2.Close(context.Background())
	if err := m2.Recover(ctx); err != nil {
		t.Fatal(err)
	}
	for _, want := range []sandbox.Info{a, b} {
		got, ok := m2.Traffic(want.ID)
		if !ok || !reflect.DeepEqual(got, *want.Traffic) {
			t.Errorf("after restart %s has %+v, want %+v", want.ID, got, *want.Traffic)
		}
	}
	if got, ok := m2.Traffic(plain.ID); !ok || got.AccessToken != "" {
		t.Errorf("plain after restart: %+v, %v", got, ok)
	}
	if _, ok := m2.Traffic("inope"); ok {
		t.Error("an unknown sandbox has traffic settings")
	}
}

func TestCreateRefusesBadTrafficSettings(t *testing.T) {
	e := newEnv(t, fake.Options{})
	for name, req := range map[string]sandbox.CreateRequest{
		"mask with a path":  {MaskRequestHost: "example.com/x"},
		"rule on an IP":     {Rules: map[string][]sandbox.Rule{"192.0.2.1": {{}}}},
		"header with CRLF":  {Rules: map[string][]sandbox.Rule{"a.example": {{Headers: map[string]string{"X": "a\r\nB: c"}}}}},
		"bad header name":   {Rules: map[string][]sandbox.Rule{"a.example": {{Headers: map[string]string{"X Y": "v"}}}}},
		"wildcard mid-name": {Rules: map[string][]sandbox.Rule{"a.*.example": {{}}}},
	} {
		req.Template = "base"
		if _, err := e.m.Create(t.Context(), req); !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Errorf("%s: %v, want invalid argument", name, err)
		}
	}
}

// Rules added to a sandbox created without any need the interception CA
// installed in it, which a paused sandbox cannot take: that update is a
// conflict, and nothing changes (its traffic is not routed for rules).
func TestAddingRulesToPausedSandboxConflicts(t *testing.T) {
	e := newEnvConfig(t, fake.Options{}, templates(), func(c *sandbox.Config) {
		c.InterceptCA = []byte("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n")
	})
	ctx := t.Context()
	sb := e.create(t, sandbox.CreateRequest{Timeout: 10 * time.Minute, AllowInternetAccess: true})
	if err := e.m.Pause(ctx, sb.ID); err != nil {
		t.Fatal(err)
	}
	rules := map[string][]sandbox.Rule{"api.example.com": {{Headers: map[string]string{"X-K": "v"}}}}
	if err := e.m.SetRules(ctx, sb.ID, rules); !errors.Is(err, errdefs.ErrConflict) {
		t.Fatalf("adding rules to a paused sandbox: %v, want a conflict", err)
	}
	if tr, _ := e.m.Traffic(sb.ID); len(tr.Rules) != 0 {
		t.Errorf("the refused rules were kept: %+v", tr.Rules)
	}
	if spec, _ := e.rt.Spec(sb.ID); spec.Egress.Intercept {
		t.Error("the refused rules route the sandbox through the proxy")
	}
	// Clearing (no rules to add) is fine paused.
	if err := e.m.SetRules(ctx, sb.ID, nil); err != nil {
		t.Fatal(err)
	}
}
