package console_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/sandpit-dev/sandpit/sdk/sandpittest"
)

// TestServedByTheDaemon: a real `sandpit serve` answers a browser at /
// with the console, an API client at / with the 404 it always got, and
// a request carrying E2B's sandbox routing headers is sandbox traffic even
// when it asks for HTML.
func TestServedByTheDaemon(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	s, err := sandpittest.Start(ctx, sandpittest.Options{})
	if errors.Is(err, sandpittest.ErrNotRoot) {
		t.Skip("needs root to run sandpit serve (run as root, as CI does)")
	}
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()

	get := func(header map[string]string) (*http.Response, string) {
		t.Helper()
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.URL+"/", nil)
		if err != nil {
			t.Fatal(err)
		}
		for k, v := range header {
			req.Header.Set(k, v)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return resp, string(b)
	}

	const html = "text/html,application/xhtml+xml,*/*;q=0.8"
	resp, body := get(map[string]string{"Accept": html})
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, "sandpit console") {
		t.Fatalf("a browser at /: %d %.200s", resp.StatusCode, body)
	}
	if resp.Header.Get("Content-Security-Policy") == "" {
		t.Error("the console is served without a Content-Security-Policy")
	}

	resp, body = get(nil)
	if resp.StatusCode != http.StatusNotFound || strings.Contains(body, "sandpit console") {
		t.Errorf("an API client at /: %d %.200s; want the 404 it always got", resp.StatusCode, body)
	}

	resp, body = get(map[string]string{"Accept": html, "E2b-Sandbox-Id": "inosuchsandbox", "E2b-Sandbox-Port": "49983"})
	if resp.StatusCode == http.StatusOK || strings.Contains(body, "sandpit console") {
		t.Errorf("sandbox traffic asking for HTML got the console: %d %.200s", resp.StatusCode, body)
	}
}
