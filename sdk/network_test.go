package sandpit_test

import (
	"errors"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	sandpit "github.com/sandpit-dev/sandpit/sdk"
)

// sharedMaxConns is the shared server's --egress-max-conns-max (main_test.go).
const sharedMaxConns = 64

func TestNetworkCreateInfoUpdate(t *testing.T) {
	ctx := t.Context()
	sb := newSandbox(t, sandpit.WithNetwork(sandpit.Network{
		AllowOut: []string{"example.com", "*.example.org"},
		DenyOut:  []string{"0.0.0.0/0"},
		Rules: map[string][]sandpit.NetworkRule{
			"api.example.com": {{Transform: &sandpit.NetworkTransform{Headers: map[string]string{"X-Team": "blue"}}}},
		},
	}))
	info, err := sb.Info(ctx)
	if err != nil {
		t.Fatalf("Info: %v", err)
	}
	if info.Network == nil {
		t.Fatal("Info: no network")
	}
	if got, want := info.Network.AllowOut, []string{"example.com", "*.example.org"}; !slices.Equal(got, want) {
		t.Errorf("allowOut = %q, want %q", got, want)
	}
	if got, want := info.Network.DenyOut, []string{"0.0.0.0/0"}; !slices.Equal(got, want) {
		t.Errorf("denyOut = %q, want %q", got, want)
	}
	if r := info.Network.Rules["api.example.com"]; len(r) != 1 || r[0].Transform == nil || r[0].Transform.Headers["X-Team"] != "blue" {
		t.Errorf("rules = %+v, want X-Team: blue for api.example.com", info.Network.Rules)
	}
	if sb.TrafficAccessToken() != "" {
		t.Errorf("public sandbox has traffic token %q", sb.TrafficAccessToken())
	}

	if err := sb.UpdateNetwork(ctx, sandpit.NetworkUpdate{
		AllowOut: []string{"example.net"},
		DenyOut:  []string{"0.0.0.0/0"},
	}); err != nil {
		t.Fatalf("UpdateNetwork: %v", err)
	}
	info, err = sb.Info(ctx)
	if err != nil {
		t.Fatalf("Info: %v", err)
	}
	if info.Network == nil || !slices.Equal(info.Network.AllowOut, []string{"example.net"}) {
		t.Errorf("after update network = %+v, want allowOut [example.net]", info.Network)
	}
	if info.Network != nil && len(info.Network.Rules) != 0 {
		t.Errorf("after an update without rules, rules = %+v, want none", info.Network.Rules)
	}
}

func TestUpdateNetworkNotFound(t *testing.T) {
	c := newClient(t)
	err := c.UpdateNetwork(t.Context(), "nosuchsandbox", sandpit.NetworkUpdate{DenyOut: []string{"0.0.0.0/0"}})
	if !errors.Is(err, sandpit.ErrNotFound) {
		t.Fatalf("UpdateNetwork of a missing sandbox: %v, want ErrNotFound", err)
	}
}

func TestNetworkLimits(t *testing.T) {
	c := newClient(t)
	_, err := c.Create(t.Context(), sandpit.WithNetworkLimits(sandpit.NetworkLimits{MaxConnections: sharedMaxConns + 1}))
	if !errors.Is(err, sandpit.ErrInvalidArgument) {
		t.Fatalf("Create over the maximum: %v, want ErrInvalidArgument", err)
	}
	var e *sandpit.Error
	if !errors.As(err, &e) || !strings.Contains(e.Message, "over this server's maximum of 64") {
		t.Errorf("error %v does not carry the server's message", err)
	}
	// Within the maximum is fine.
	newSandbox(t, sandpit.WithNetworkLimits(sandpit.NetworkLimits{MaxConnections: sharedMaxConns}))
}

func TestPrivateTraffic(t *testing.T) {
	ctx := t.Context()
	private := false
	sb := newSandbox(t, sandpit.WithNetwork(sandpit.Network{AllowPublicTraffic: &private}))
	token := sb.TrafficAccessToken()
	if token == "" {
		t.Fatal("private sandbox has no traffic access token")
	}
	info, err := sb.Info(ctx)
	if err != nil {
		t.Fatalf("Info: %v", err)
	}
	if info.Network == nil || info.Network.AllowPublicTraffic == nil || *info.Network.AllowPublicTraffic {
		t.Errorf("Info network = %+v, want allowPublicTraffic false", info.Network)
	}

	if _, err := sb.Files.Write(ctx, "/tmp/www/hello.txt", []byte("hello from the sandbox")); err != nil {
		t.Fatalf("Write: %v", err)
	}
	srv, err := sb.Commands.Start(ctx, "python3 -m http.server 8000 --directory /tmp/www", sandpit.WithTimeout(0))
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() { _ = srv.Kill(ctx) })

	get := func(withToken bool) (int, string) {
		t.Helper()
		req, err := sb.PortRequest(ctx, http.MethodGet, 8000, "/hello.txt", nil)
		if err != nil {
			t.Fatalf("PortRequest: %v", err)
		}
		if got := req.Header.Get("E2B-Traffic-Access-Token"); got != token {
			t.Fatalf("PortRequest token header = %q, want the sandbox's", got)
		}
		if !withToken {
			req.Header.Del("E2B-Traffic-Access-Token")
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("GET: %v", err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}

	// The server takes a moment to listen: until then the proxy answers
	// 502.
	deadline := time.Now().Add(60 * time.Second)
	for {
		code, body := get(true)
		if code == http.StatusOK {
			if body != "hello from the sandbox" {
				t.Errorf("body = %q", body)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("with the token: %d %s", code, body)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if code, body := get(false); code != http.StatusForbidden || !strings.Contains(body, "traffic access token") {
		t.Errorf("without the token: %d %s, want 403 naming the token", code, body)
	}

	// A handle from Connect carries the token too.
	again, err := newClient(t).Connect(ctx, sb.ID)
	if err != nil {
		t.Fatalf("Connect: %v", err)
	}
	if again.TrafficAccessToken() != token {
		t.Errorf("Connect's traffic token = %q, want the sandbox's", again.TrafficAccessToken())
	}
}
