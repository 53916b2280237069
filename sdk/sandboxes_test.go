package sandpit_test

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"
	"time"

	sandpit "github.com/sandpit-dev/sandpit/sdk"
)

func TestSandboxLifecycle(t *testing.T) {
	c := newClient(t)
	ctx := t.Context()
	md := map[string]string{"test": t.Name(), "run": sandpittestRun()}
	sb, err := c.Create(ctx, sandpit.WithTemplate("base"), sandpit.WithTimeout(90*time.Second), sandpit.WithMetadata(md))
	if err != nil {
		t.Fatal(err)
	}
	defer sb.Close()
	if sb.ID == "" || sb.EnvdVersion == "" {
		t.Fatalf("sandbox without ID or envd version: %+v", sb)
	}

	info, err := sb.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.ID != sb.ID || info.State != sandpit.StateRunning || info.Metadata["test"] != t.Name() {
		t.Errorf("Info = %+v", info)
	}
	if left := time.Until(info.EndAt); left < 60*time.Second || left > 100*time.Second {
		t.Errorf("EndAt is %v away, want about 90s", left)
	}

	// List: the iterator, with a metadata filter that matches only this one.
	var found []string
	for s, err := range c.List(ctx, sandpit.WithMetadata(md), sandpit.WithState(sandpit.StateRunning)) {
		if err != nil {
			t.Fatal(err)
		}
		found = append(found, s.ID)
	}
	if !slices.Equal(found, []string{sb.ID}) {
		t.Errorf("List with its metadata = %v, want [%s]", found, sb.ID)
	}
	none, err := c.ListAll(ctx, sandpit.WithMetadata(map[string]string{"test": "no such value"}))
	if err != nil || len(none) != 0 {
		t.Errorf("List with other metadata = %v, %v; want nothing", none, err)
	}
	// Paging: a page size of 1 still yields everything.
	all, err := c.ListAll(ctx, sandpit.WithLimit(1))
	if err != nil || !slices.ContainsFunc(all, func(s sandpit.SandboxInfo) bool { return s.ID == sb.ID }) {
		t.Errorf("ListAll(limit 1) = %v, %v; want it to include %s", all, err, sb.ID)
	}

	if err := sb.SetTimeout(ctx, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	info, _ = sb.Info(ctx)
	if left := time.Until(info.EndAt); left > 35*time.Second {
		t.Errorf("after SetTimeout(30s) EndAt is %v away", left)
	}
	if ok, err := sb.IsRunning(ctx); !ok || err != nil {
		t.Errorf("IsRunning = %v, %v", ok, err)
	}

	// Connect returns a working handle on the same sandbox.
	again, err := c.Connect(ctx, sb.ID, sandpit.WithTimeout(2*time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if res, err := again.Commands.Run(ctx, "echo connected"); err != nil || res.Stdout != "connected\n" {
		t.Errorf("Run through Connect's handle = %+v, %v", res, err)
	}

	if err := c.Kill(ctx, sb.ID); err != nil {
		t.Fatal(err)
	}
	if err := c.Kill(ctx, sb.ID); !errors.Is(err, sandpit.ErrNotFound) {
		t.Errorf("second Kill = %v, want ErrNotFound", err)
	}
	if _, err := c.GetInfo(ctx, sb.ID); !errors.Is(err, sandpit.ErrNotFound) {
		t.Errorf("GetInfo after Kill = %v, want ErrNotFound", err)
	}
	if _, err := c.Connect(ctx, sb.ID); !errors.Is(err, sandpit.ErrNotFound) {
		t.Errorf("Connect after Kill = %v, want ErrNotFound", err)
	}
	if err := c.SetTimeout(ctx, sb.ID, time.Minute); !errors.Is(err, sandpit.ErrNotFound) {
		t.Errorf("SetTimeout after Kill = %v, want ErrNotFound", err)
	}
	// The sandbox path: the killed sandbox's agent is gone.
	if ok, err := sb.IsRunning(ctx); ok || err != nil {
		t.Errorf("IsRunning after Kill = %v, %v; want false, nil", ok, err)
	}
	if _, err := sb.Commands.Run(ctx, "true"); !errors.Is(err, sandpit.ErrNotFound) {
		t.Errorf("Run after Kill = %v, want ErrNotFound", err)
	}
	if _, err := sb.Files.Read(ctx, "/etc/hostname"); !errors.Is(err, sandpit.ErrNotFound) {
		t.Errorf("Read after Kill = %v, want ErrNotFound", err)
	}
	// Close after Kill is fine, and so is a second Close.
	if err := sb.Close(); err != nil {
		t.Errorf("Close after Kill = %v", err)
	}
	if err := sb.Close(); err != nil {
		t.Errorf("second Close = %v", err)
	}
}

func TestCloseKills(t *testing.T) {
	c := newClient(t)
	sb, err := c.Create(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if err := sb.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.GetInfo(t.Context(), sb.ID); !errors.Is(err, sandpit.ErrNotFound) {
		t.Errorf("GetInfo after Close = %v, want ErrNotFound", err)
	}
}

func TestCreateOptions(t *testing.T) {
	sb := newSandbox(t, sandpit.WithEnvs(map[string]string{"SANDBOX_WIDE": "everywhere"}), sandpit.WithSecure(false))
	res, err := sb.Commands.Run(t.Context(), "echo $SANDBOX_WIDE")
	if err != nil || res.Stdout != "everywhere\n" {
		t.Errorf("sandbox env var: %+v, %v", res, err)
	}
	if _, err := newClient(t).Create(t.Context(), sandpit.WithTemplate("no-such-template")); err == nil {
		t.Error("Create with an unknown template succeeded")
	}
}

func TestBadKey(t *testing.T) {
	c := newClient(t, sandpit.WithAPIKey("e2b_"+"0000000000000000000000000000000000000000"))
	_, err := c.Create(t.Context())
	if !errors.Is(err, sandpit.ErrAuth) {
		t.Fatalf("Create with a bad key = %v, want ErrAuth", err)
	}
	var e *sandpit.Error
	if !errors.As(err, &e) || e.StatusCode != http.StatusUnauthorized {
		t.Errorf("errors.As(*Error) = %+v", e)
	}
	for _, err := range c.List(t.Context()) {
		if !errors.Is(err, sandpit.ErrAuth) {
			t.Errorf("List with a bad key = %v, want ErrAuth", err)
		}
	}
}

// TestErrorMapping covers statuses a healthy test server does not produce.
func TestErrorMapping(t *testing.T) {
	for _, tc := range []struct {
		status int
		want   error
	}{
		{http.StatusTooManyRequests, sandpit.ErrRateLimited},
		{http.StatusUnauthorized, sandpit.ErrAuth},
		{http.StatusNotFound, sandpit.ErrNotFound},
		{http.StatusServiceUnavailable, sandpit.ErrUnavailable},
		{http.StatusBadRequest, sandpit.ErrInvalidArgument},
	} {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(tc.status)
			w.Write([]byte(`{"code":` + itoa(tc.status) + `,"message":"from the test"}`))
		}))
		c, err := sandpit.NewClient(sandpit.WithURL(srv.URL), sandpit.WithAPIKey("e2b_00"))
		if err != nil {
			t.Fatal(err)
		}
		_, err = c.Create(t.Context())
		if !errors.Is(err, tc.want) {
			t.Errorf("status %d: %v, want %v", tc.status, err, tc.want)
		}
		var e *sandpit.Error
		if !errors.As(err, &e) || e.StatusCode != tc.status || e.Message != "from the test" {
			t.Errorf("status %d: *Error = %+v", tc.status, e)
		}
		srv.Close()
	}

	// Nothing listening.
	ln := httptest.NewServer(http.NotFoundHandler())
	url := ln.URL
	ln.Close()
	c, _ := sandpit.NewClient(sandpit.WithURL(url), sandpit.WithAPIKey("e2b_00"))
	if _, err := c.Create(t.Context()); !errors.Is(err, sandpit.ErrUnavailable) {
		t.Errorf("no server: %v, want ErrUnavailable", err)
	}
}

func TestNewClientEnv(t *testing.T) {
	for _, k := range []string{"E2B_API_URL", "E2B_SANDBOX_URL", "E2B_API_KEY", "SANDPIT_URL", "SANDPIT_API_KEY", "E2B_DOMAIN"} {
		t.Setenv(k, "")
	}
	if _, err := sandpit.NewClient(); !errors.Is(err, sandpit.ErrAuth) {
		t.Errorf("no key: %v, want ErrAuth", err)
	}
	t.Setenv("E2B_API_KEY", "e2b_1")
	c, err := sandpit.NewClient()
	if err != nil || c.APIURL() != "https://api.e2b.app" {
		t.Errorf("defaults: %v, %v", c.APIURL(), err)
	}
	t.Setenv("SANDPIT_URL", "http://127.0.0.1:1/")
	if c, _ := sandpit.NewClient(); c.APIURL() != "http://127.0.0.1:1" {
		t.Errorf("SANDPIT_URL: %v", c.APIURL())
	}
	t.Setenv("E2B_API_URL", "http://127.0.0.1:2")
	if c, _ := sandpit.NewClient(); c.APIURL() != "http://127.0.0.1:2" {
		t.Errorf("E2B_API_URL over SANDPIT_URL: %v", c.APIURL())
	}
	if c, _ := sandpit.NewClient(sandpit.WithAPIURL("http://x")); c.APIURL() != "http://x" {
		t.Errorf("option over env: %v", c.APIURL())
	}
}

func itoa(n int) string { return fmtInt(n) }

func TestPauseMetrics(t *testing.T) {
	c := newClient(t)
	ctx := t.Context()
	sb, err := c.Create(ctx, sandpit.WithTemplate("base"))
	if err != nil {
		t.Fatal(err)
	}
	defer sb.Close()
	ms, err := c.Metrics(ctx, sb.ID)
	if err != nil || len(ms) != 1 || ms[0].CPUCount < 1 || ms[0].MemUsed <= 0 || ms[0].DiskTotal <= 0 {
		t.Fatalf("metrics %+v %v", ms, err)
	}
	if ok, err := c.Pause(ctx, sb.ID); !ok || err != nil {
		t.Fatalf("pause: %v %v", ok, err)
	}
	if ok, err := c.Pause(ctx, sb.ID); ok || err != nil {
		t.Fatalf("second pause: %v %v, want false and no error", ok, err)
	}
	if info, _ := c.GetInfo(ctx, sb.ID); info.State != sandpit.StatePaused {
		t.Errorf("state %s", info.State)
	}
	again, err := c.Connect(ctx, sb.ID)
	if err != nil {
		t.Fatal(err)
	}
	if out, err := again.Commands.Run(ctx, "echo back"); err != nil || out.Stdout != "back\n" {
		t.Fatalf("after resume: %+v %v", out, err)
	}
	if _, err := c.Pause(ctx, "nope"); !errors.Is(err, sandpit.ErrNotFound) {
		t.Errorf("pausing an unknown sandbox: %v", err)
	}
}
