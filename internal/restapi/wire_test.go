package restapi_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestOverTheWire drives the handler through a real HTTP server and client:
// header names arrive canonicalised and percent-encoded path segments keep
// their encoding until routing.
func TestOverTheWire(t *testing.T) {
	e := newEnv(t, "")
	srv := httptest.NewServer(e.h)
	defer srv.Close()
	do := func(method, path, body string) (int, string) {
		t.Helper()
		req, err := http.NewRequestWithContext(t.Context(), method, srv.URL+path, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header["x-api-key"] = []string{e.key} // lower case on the wire
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	status, body := do("POST", "/v2/sandboxes", `{"templateID":"base"}`)
	if status != 201 {
		t.Fatalf("create = %d %s", status, body)
	}
	status, body = do("GET", "/sandboxes/team%2Fbox%3Av1", "")
	if status != 404 || !strings.Contains(body, `"code":404`) || !strings.Contains(body, `team/box:v1`) {
		t.Errorf("GET encoded id = %d %s", status, body)
	}
	status, body = do("GET", "/v2/sandboxes?metadata=user%3Dabc%26app%3Dprod&state=running,paused", "")
	if status != 200 || strings.TrimSpace(body) != "[]" {
		t.Errorf("list = %d %s", status, body)
	}
	if !strings.Contains(e.logs.String(), `"sandbox_id":"team/box:v1"`) {
		t.Errorf("request log lacks sandbox_id: %s", e.logs.String())
	}
}

func TestFallbackServesNonAPIRoutesWithoutKey(t *testing.T) {
	e := newEnv(t, "")
	h := restapiWithFallback(e, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "fallback "+r.URL.Path)
	}))
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	if rec.Code != 200 || rec.Body.String() != "fallback /metrics" {
		t.Errorf("GET /metrics = %d %q", rec.Code, rec.Body.String())
	}
	// API routes still need a key.
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/v2/sandboxes", nil))
	if rec.Code != 401 {
		t.Errorf("GET /v2/sandboxes without key = %d", rec.Code)
	}
}

func TestBodyTooLarge(t *testing.T) {
	e := newEnv(t, "")
	big := `{"templateID":"base","metadata":{"k":"` + strings.Repeat("x", 2<<20) + `"}}`
	wantError(t, e.do(t, "POST", "/v2/sandboxes", big), 400, "larger than")
}

// FuzzCreateBody sends arbitrary bodies to both create endpoints: the
// answer is always 201 or an E2B error body whose code is the status, never
// a 500.
func FuzzCreateBody(f *testing.F) {
	f.Add(`{"templateID":"base"}`)
	f.Add(`{"templateID":"base","timeout":-1,"metadata":{"":""}}`)
	f.Add(`{"templateID":"nope","envVars":{"A":"\u0000"}}`)
	f.Add(`{"templateID":1}`)
	f.Add(`null`)
	e := newEnvF(f)
	f.Fuzz(func(t *testing.T, body string) {
		for _, path := range []string{"/v2/sandboxes", "/sandboxes"} {
			req := httptest.NewRequest("POST", path, strings.NewReader(body))
			req.Header.Set("X-API-KEY", e.key)
			rec := httptest.NewRecorder()
			e.h.ServeHTTP(rec, req)
			switch rec.Code {
			case 201:
				var sb struct{ SandboxID string }
				if err := json.Unmarshal(rec.Body.Bytes(), &sb); err != nil || sb.SandboxID == "" {
					t.Fatalf("201 body %q", rec.Body.String())
				}
				_ = e.m.Kill(t.Context(), sb.SandboxID)
			case 400, 404:
				var eb struct{ Code int }
				if err := json.Unmarshal(rec.Body.Bytes(), &eb); err != nil || eb.Code != rec.Code {
					t.Fatalf("%d body %q", rec.Code, rec.Body.String())
				}
			default:
				t.Fatalf("POST %s %q = %d %s", path, body, rec.Code, rec.Body.String())
			}
		}
	})
}

// E2B endpoints sandpit lacks answer 501 in E2B's error body, also when a
// fallback (the web UI) serves everything else, so the SDKs raise their
// API error instead of failing to parse a plain-text 404.
func TestUnimplementedEndpointsAnswer501(t *testing.T) {
	e := newEnv(t, "")
	h := restapiWithFallback(e, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.NotFound(w, r)
	}))
	for _, c := range []struct{ method, path, feature string }{
		{"DELETE", "/secrets/s1", "secrets"},
		{"GET", "/volumes/v1", "volumes"},
		{"POST", "/secrets", "secrets"},
	} {
		rec := httptest.NewRecorder()
		req := httptest.NewRequest(c.method, c.path, strings.NewReader("{}"))
		req.Header.Set("X-API-KEY", e.key)
		h.ServeHTTP(rec, req)
		var body struct {
			Code    int
			Message string
		}
		if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil || rec.Code != 501 || body.Code != 501 ||
			!strings.Contains(body.Message, c.feature+" ("+c.method+" "+c.path+") is not implemented") {
			t.Errorf("%s %s = %d %q", c.method, c.path, rec.Code, rec.Body.String())
		}
	}
	// Near misses still reach the fallback.
	for _, path := range []string{"/sandboxes/abc/forks", "/snapshots/x/y", "/volumesx"} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", path, nil))
		if rec.Code != 404 {
			t.Errorf("GET %s = %d %q", path, rec.Code, rec.Body.String())
		}
	}
}
