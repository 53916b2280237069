package restapi_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sandpit-dev/sandpit/internal/errdefs"
	"github.com/sandpit-dev/sandpit/internal/restapi"
	"github.com/sandpit-dev/sandpit/internal/runtime/fake"
	"github.com/sandpit-dev/sandpit/internal/sandbox"
	"github.com/sandpit-dev/sandpit/internal/sandbox/sandboxtest"
	"github.com/sandpit-dev/sandpit/internal/store"
	"github.com/sandpit-dev/sandpit/internal/template"
)

const extraKey = "e2b_" + "00112233445566778899aabbccddeeff00112233"

var t0 = time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)

type env struct {
	h     http.Handler
	m     *sandbox.Manager
	rt    *fake.Fake
	st    *store.SQLite
	clock *sandboxtest.Clock
	key   string // a key from the store
	logs  *syncBuffer
	// cfg is what e.h was made with, when a test may remake it.
	cfg restapi.Config
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func newEnv(t *testing.T, domain string) *env { return newEnvTB(t, t.Context(), domain) }

func newEnvF(f *testing.F) *env { return newEnvTB(f, context.Background(), "") }

func newEnvTB(t testing.TB, ctx context.Context, domain string) *env {
	t.Helper()
	st, err := store.OpenSQLite(ctx, filepath.Join(t.TempDir(), "sandpit.db"))
	if err != nil {
		t.Fatal(err)
	}
	e := &env{st: st, rt: fake.New(fake.Options{}), clock: sandboxtest.NewClock(t0), logs: &syncBuffer{}}
	log := slog.New(slog.NewJSONHandler(e.logs, nil))
	e.m, err = sandbox.NewManager(sandbox.Config{
		Runtime: e.rt,
		Store:   st,
		Templates: sandbox.StaticTemplates{
			{ID: "base"},
			{ID: "ci", Names: []string{"code-interpreter-v1"}, CPUCount: 4, MemoryMB: 1024, DiskMB: 2048},
		},
		Logger:     log,
		MaxTimeout: time.Hour,
		Clock:      e.clock,
	})
	if err != nil {
		t.Fatal(err)
	}
	e.key, _, err = st.CreateKey(ctx, store.NewKey{Name: "test"})
	if err != nil {
		t.Fatal(err)
	}
	e.h = restapi.New(restapi.Config{Manager: e.m, Keys: st, Logger: log, ExtraKey: extraKey, Domain: domain})
	t.Cleanup(func() {
		_ = e.m.Close(context.Background())
		_ = e.rt.Close()
		_ = st.Close()
	})
	return e
}

func restapiWithFallback(e *env, fb http.Handler) http.Handler {
	return restapi.New(restapi.Config{Manager: e.m, Keys: e.st, ExtraKey: extraKey, Fallback: fb})
}

type response struct {
	status int
	header http.Header
	body   []byte
}

func (r response) json(t *testing.T) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.body, &m); err != nil {
		t.Fatalf("body %q is not a JSON object: %v", r.body, err)
	}
	return m
}

func (r response) list(t *testing.T) []map[string]any {
	t.Helper()
	var l []map[string]any
	if err := json.Unmarshal(r.body, &l); err != nil {
		t.Fatalf("body %q is not a JSON array: %v", r.body, err)
	}
	return l
}

// do sends a request with the store key.
func (e *env) do(t *testing.T, method, target, body string) response {
	t.Helper()
	return e.doKey(t, method, target, body, map[string]string{"X-API-KEY": e.key})
}

func (e *env) doKey(t *testing.T, method, target, body string, headers map[string]string) response {
	t.Helper()
	var rd *strings.Reader
	if body != "" {
		rd = strings.NewReader(body)
	} else {
		rd = strings.NewReader("")
	}
	req := httptest.NewRequest(method, target, rd)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, v := range headers {
		req.Header[k] = []string{v} // raw, not canonicalised: the server must cope
	}
	rec := httptest.NewRecorder()
	e.h.ServeHTTP(rec, req)
	return response{status: rec.Code, header: rec.Header(), body: rec.Body.Bytes()}
}

// wantError checks an E2B error body: code equal to status, and message.
func wantError(t *testing.T, r response, status int, msgPart string) {
	t.Helper()
	if r.status != status {
		t.Errorf("status = %d, want %d (body %s)", r.status, status, r.body)
		return
	}
	if ct := r.header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type = %q", ct)
	}
	m := r.json(t)
	if code, ok := m["code"].(float64); !ok || int(code) != status {
		t.Errorf("body code = %v, want the integer %d (body %s)", m["code"], status, r.body)
	}
	msg, _ := m["message"].(string)
	if !strings.Contains(msg, msgPart) {
		t.Errorf("message %q does not contain %q", msg, msgPart)
	}
}

func (e *env) create(t *testing.T, body string) map[string]any {
	t.Helper()
	r := e.do(t, "POST", "/v2/sandboxes", body)
	if r.status != http.StatusCreated {
		t.Fatalf("create: %d %s", r.status, r.body)
	}
	return r.json(t)
}

func TestHealthNeedsNoKey(t *testing.T) {
	e := newEnv(t, "")
	r := e.doKey(t, "GET", "/health", "", nil)
	if r.status != http.StatusOK || r.json(t)["status"] != "ok" {
		t.Errorf("GET /health = %d %s", r.status, r.body)
	}
}

func TestAuth(t *testing.T) {
	e := newEnv(t, "")
	revoked, info, err := e.st.CreateKey(t.Context(), store.NewKey{Name: "old"})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.st.RevokeKey(t.Context(), info.ID); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		headers map[string]string
		status  int
		msg     string
	}{
		{"missing", nil, 401, "missing API key"},
		{"empty", map[string]string{"X-API-KEY": ""}, 401, "sandpit keys create"},
		{"malformed", map[string]string{"X-API-KEY": "hunter2"}, 401, "invalid API key"},
		{"unknown", map[string]string{"X-API-KEY": "e2b_" + strings.Repeat("f", 40)}, 401, "sandpit keys create"},
		{"revoked", map[string]string{"X-API-KEY": revoked}, 401, "invalid API key"},
		{"bearer only", map[string]string{"Authorization": "Bearer " + e.key}, 401, "missing API key"},
		{"store key, JS spelling", map[string]string{"X-API-KEY": e.key}, 200, ""},
		{"store key, lower case", map[string]string{"x-api-key": e.key}, 200, ""},
		{"store key, Go spelling", map[string]string{"X-Api-Key": e.key}, 200, ""},
		{"extra key", map[string]string{"X-API-KEY": extraKey}, 200, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := e.doKey(t, "GET", "/v2/sandboxes", "", tc.headers)
			if tc.status == 200 {
				if r.status != 200 {
					t.Errorf("status %d %s", r.status, r.body)
				}
				return
			}
			wantError(t, r, tc.status, tc.msg)
		})
	}
	// Unauthenticated requests learn nothing about routes or sandboxes.
	wantError(t, e.doKey(t, "DELETE", "/sandboxes/inope", "", nil), 401, "API key")
}

func TestCreateV2(t *testing.T) {
	e := newEnv(t, "")
	r := e.do(t, "POST", "/v2/sandboxes", `{"templateID":"base","metadata":{"user":"abc"},"envVars":{"A":"1"},"autoPause":false,"network":{"allowOut":["1.1.1.1"]},"mcp":null,"unknownField":1}`)
	if r.status != http.StatusCreated {
		t.Fatalf("status %d %s", r.status, r.body)
	}
	body := r.json(t)
	id, _ := body["sandboxID"].(string)
	if id == "" || body["templateID"] != "base" || body["clientID"] != "6532622b" || body["envdVersion"] != template.DefaultEnvdVersion {
		t.Errorf("body %s", r.body)
	}
	if tok, _ := body["envdAccessToken"].(string); tok == "" {
		t.Errorf("/v2 create must be secure: no envdAccessToken in %s", r.body)
	}
	for _, k := range []string{"trafficAccessToken", "domain"} {
		if v, ok := body[k]; !ok || v != nil {
			t.Errorf("%s = %v (present %v), want null", k, v, ok)
		}
	}
	spec, ok := e.rt.Spec(id)
	if !ok || spec.Env["A"] != "1" || !spec.AllowInternet || spec.AccessToken != body["envdAccessToken"] {
		t.Errorf("runtime spec %+v", spec)
	}
	if !strings.Contains(e.logs.String(), `"sandbox_id":"`+id+`"`) || !strings.Contains(e.logs.String(), `"status":201`) {
		t.Errorf("no request log line with sandbox_id and status: %s", e.logs.String())
	}
}

func TestCreateV1(t *testing.T) {
	e := newEnv(t, "sandpit.test")
	// Python's default body.
	r := e.do(t, "POST", "/sandboxes", `{"templateID":"code-interpreter-v1","timeout":300,"metadata":{},"envVars":{},"secure":true,"allow_internet_access":false}`)
	if r.status != http.StatusCreated {
		t.Fatalf("status %d %s", r.status, r.body)
	}
	body := r.json(t)
	if body["templateID"] != "ci" || body["alias"] != "code-interpreter-v1" || body["domain"] != "sandpit.test" {
		t.Errorf("body %s", r.body)
	}
	if tok, _ := body["envdAccessToken"].(string); tok == "" {
		t.Errorf("secure:true gave no token: %s", r.body)
	}
	if spec, _ := e.rt.Spec(body["sandboxID"].(string)); spec.AllowInternet {
		t.Error("allow_internet_access:false ignored")
	}
	r = e.do(t, "POST", "/sandboxes", `{"templateID":"base"}`)
	if r.status != http.StatusCreated {
		t.Fatalf("status %d %s", r.status, r.body)
	}
	if _, ok := r.json(t)["envdAccessToken"]; ok {
		t.Errorf("v1 create without secure returned a token: %s", r.body)
	}
}

func TestCreateErrors(t *testing.T) {
	e := newEnv(t, "")
	for _, tc := range []struct {
		name, path, body string
		status           int
		msg              string
	}{
		{"unknown template", "/v2/sandboxes", `{"templateID":"nope:v2"}`, 404, `template "nope:v2" not found`},
		{"zero timeout", "/v2/sandboxes", `{"templateID":"base","timeout":0}`, 400, "timeout must be between 1 and 3600 seconds"},
		{"negative timeout v1", "/sandboxes", `{"templateID":"base","timeout":-5}`, 400, "timeout must be between 1 and 3600 seconds"},
		{"timeout too long", "/v2/sandboxes", `{"templateID":"base","timeout":3601}`, 400, "timeout must be between 1 and 3600 seconds"},
		{"malformed JSON", "/v2/sandboxes", `{"templateID":`, 400, "invalid JSON body"},
		{"syntax error", "/sandboxes", `{"templateID" "base"}`, 400, "invalid JSON body"},
		{"wrong type", "/v2/sandboxes", `{"templateID":"base","timeout":"soon"}`, 400, `field "timeout" must be an integer`},
		{"not an object", "/v2/sandboxes", `[1,2]`, 400, "must be a JSON object"},
		{"trailing data", "/v2/sandboxes", `{"templateID":"base"} {}`, 400, "unexpected data"},
		{"empty body", "/v2/sandboxes", ``, 400, "request body is required"},
		{"no template", "/v2/sandboxes", `{}`, 400, "templateID is required"},
		{"bad env", "/v2/sandboxes", `{"templateID":"base","envVars":{"A=B":"x"}}`, 400, "must not contain '='"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			wantError(t, e.do(t, "POST", tc.path, tc.body), tc.status, tc.msg)
		})
	}
	if ids, _ := e.rt.List(t.Context()); len(ids) != 0 {
		t.Errorf("failed creates left %v", ids)
	}
}

func TestServerErrorsHideCauses(t *testing.T) {
	e := newEnv(t, "")
	e.rt.FailCreate(errors.New("mount /var/lib/sandpit/secret/layer: permission denied"))
	r := e.do(t, "POST", "/v2/sandboxes", `{"templateID":"base"}`)
	wantError(t, r, 500, "internal server error")
	if strings.Contains(string(r.body), "/var/lib") {
		t.Errorf("internal cause leaked: %s", r.body)
	}
	if !strings.Contains(e.logs.String(), "/var/lib/sandpit/secret/layer") {
		t.Error("internal cause not logged")
	}

	e.rt.FailCreate(errdefs.New(errdefs.ErrResourceExhausted, "too many sandboxes"))
	r = e.do(t, "POST", "/v2/sandboxes", `{"templateID":"base"}`)
	wantError(t, r, 429, "too many sandboxes")
	if r.header.Get("Retry-After") == "" {
		t.Error("429 without Retry-After")
	}

	e.rt.FailCreate(errdefs.New(errdefs.ErrDeadlineExceeded, "sandbox did not start in time"))
	wantError(t, e.do(t, "POST", "/v2/sandboxes", `{"templateID":"base"}`), 504, "did not start in time")

	if err := e.m.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	wantError(t, e.do(t, "POST", "/v2/sandboxes", `{"templateID":"base"}`), 503, "shutting down")
}

func TestGetSandbox(t *testing.T) {
	e := newEnv(t, "")
	created := e.create(t, `{"templateID":"code-interpreter-v1","timeout":120,"metadata":{"k":"v"}}`)
	id := created["sandboxID"].(string)
	r := e.do(t, "GET", "/sandboxes/"+id, "")
	if r.status != 200 {
		t.Fatalf("status %d %s", r.status, r.body)
	}
	d := r.json(t)
	for k, want := range map[string]any{
		"sandboxID": id, "templateID": "ci", "alias": "code-interpreter-v1", "clientID": "6532622b",
		"envdVersion": template.DefaultEnvdVersion, "cpuCount": 4.0, "memoryMB": 1024.0, "diskSizeMB": 2048.0,
		"state": "running", "startedAt": "2026-11-26T12:00:00Z", "endAt": "2026-11-26T12:02:00Z",
		"envdAccessToken": created["envdAccessToken"], "allowInternetAccess": true,
	} {
		if d[k] != want {
			t.Errorf("%s = %#v, want %#v", k, d[k], want)
		}
	}
	if md, _ := d["metadata"].(map[string]any); md["k"] != "v" {
		t.Errorf("metadata = %v", d["metadata"])
	}
	for _, k := range []string{"startedAt", "endAt"} {
		if _, err := time.Parse(time.RFC3339, d[k].(string)); err != nil {
			t.Errorf("%s not RFC 3339: %v", k, err)
		}
	}

	wantError(t, e.do(t, "GET", "/sandboxes/inope", ""), 404, `sandbox "inope" not found`)
}

func TestPathParamsDecodeAsOneSegment(t *testing.T) {
	e := newEnv(t, "")
	for _, tc := range []struct{ path, id string }{
		{"/sandboxes/team%2Fbox%3Atag", "team/box:tag"},
		{"/sandboxes/a%20b", "a b"},
		{"/sandboxes/x:y", "x:y"},
	} {
		wantError(t, e.do(t, "GET", tc.path, ""), 404, `sandbox "`+tc.id+`" not found`)
		wantError(t, e.do(t, "POST", tc.path+"/timeout", `{"timeout":10}`), 404, tc.id)
	}
}

func TestKill(t *testing.T) {
	e := newEnv(t, "")
	id := e.create(t, `{"templateID":"base"}`)["sandboxID"].(string)
	r := e.do(t, "DELETE", "/sandboxes/"+id, "")
	if r.status != http.StatusNoContent || len(r.body) != 0 {
		t.Fatalf("DELETE = %d %q", r.status, r.body)
	}
	if e.rt.Kills(id) != 1 {
		t.Error("runtime not asked to kill")
	}
	wantError(t, e.do(t, "DELETE", "/sandboxes/"+id, ""), 404, "not found")
	wantError(t, e.do(t, "GET", "/sandboxes/"+id, ""), 404, "not found")
}

func TestTimeoutAndRefresh(t *testing.T) {
	e := newEnv(t, "")
	id := e.create(t, `{"templateID":"base","timeout":60}`)["sandboxID"].(string)
	endAt := func() string {
		t.Helper()
		return e.do(t, "GET", "/sandboxes/"+id, "").json(t)["endAt"].(string)
	}
	r := e.do(t, "POST", "/sandboxes/"+id+"/timeout", `{"timeout":600}`)
	if r.status != http.StatusNoContent {
		t.Fatalf("timeout = %d %s", r.status, r.body)
	}
	if got := endAt(); got != "2026-11-26T12:10:00Z" {
		t.Errorf("endAt after timeout 600 = %s", got)
	}
	if r := e.do(t, "POST", "/sandboxes/"+id+"/timeout", `{"timeout":30}`); r.status != 204 {
		t.Fatalf("shorten = %d", r.status)
	}
	if got := endAt(); got != "2026-11-26T12:00:30Z" {
		t.Errorf("endAt after timeout 30 = %s", got)
	}
	wantError(t, e.do(t, "POST", "/sandboxes/"+id+"/timeout", `{"timeout":0}`), 400, "timeout must be between")
	wantError(t, e.do(t, "POST", "/sandboxes/"+id+"/timeout", `{}`), 400, "timeout must be between")
	wantError(t, e.do(t, "POST", "/sandboxes/"+id+"/timeout", ``), 400, "request body is required")
	wantError(t, e.do(t, "POST", "/sandboxes/inope/timeout", `{"timeout":30}`), 404, "not found")

	if r := e.do(t, "POST", "/sandboxes/"+id+"/refreshes", `{"duration":120}`); r.status != 204 {
		t.Fatalf("refresh = %d %s", r.status, r.body)
	}
	if got := endAt(); got != "2026-11-26T12:02:00Z" {
		t.Errorf("endAt after refresh 120 = %s", got)
	}
	if r := e.do(t, "POST", "/sandboxes/"+id+"/refreshes", ``); r.status != 204 {
		t.Fatalf("refresh without body = %d %s", r.status, r.body)
	}
	if got := endAt(); got != "2026-11-26T12:05:00Z" {
		t.Errorf("endAt after default refresh = %s", got)
	}
	wantError(t, e.do(t, "POST", "/sandboxes/inope/refreshes", `{}`), 404, "not found")

	// The deadline fires: the sandbox is gone from the API.
	e.clock.Advance(5 * time.Minute)
	wantError(t, e.do(t, "GET", "/sandboxes/"+id, ""), 404, "not found")
	wantError(t, e.do(t, "DELETE", "/sandboxes/"+id, ""), 404, "not found")
}

func TestConnect(t *testing.T) {
	e := newEnv(t, "")
	created := e.create(t, `{"templateID":"base","timeout":60}`)
	id := created["sandboxID"].(string)
	for _, tc := range []struct {
		path, body, end string
	}{
		{"/v2/sandboxes/" + id + "/connect", `{"timeout":10}`, "2026-11-26T12:01:00Z"}, // never shortens
		{"/v2/sandboxes/" + id + "/connect", ``, "2026-11-26T12:05:00Z"},               // default 300
		{"/sandboxes/" + id + "/connect", `{"timeout":600}`, "2026-11-26T12:10:00Z"},
		{"/v2/sandboxes/" + id + "/connect", `{"timeout":900,"memory":true}`, "2026-11-26T12:15:00Z"},
	} {
		r := e.do(t, "POST", tc.path, tc.body)
		if r.status != http.StatusOK {
			t.Fatalf("%s %s = %d %s", tc.path, tc.body, r.status, r.body)
		}
		b := r.json(t)
		if b["sandboxID"] != id || b["envdAccessToken"] != created["envdAccessToken"] || b["envdVersion"] != template.DefaultEnvdVersion {
			t.Errorf("connect body %s; want the create token", r.body)
		}
		if got := e.do(t, "GET", "/sandboxes/"+id, "").json(t)["endAt"]; got != tc.end {
			t.Errorf("after %s %s endAt = %v, want %s", tc.path, tc.body, got, tc.end)
		}
	}
	wantError(t, e.do(t, "POST", "/v2/sandboxes/inope/connect", `{"timeout":10}`), 404, "not found")
	wantError(t, e.do(t, "POST", "/sandboxes/inope/connect", `{"timeout":10}`), 404, "not found")
	wantError(t, e.do(t, "POST", "/sandboxes/"+id+"/connect", `{"timeout":-1}`), 400, "timeout must be between")
	wantError(t, e.do(t, "POST", "/v2/sandboxes/"+id+"/connect", `{"timeout":"x"}`), 400, "invalid JSON body")
}

func TestList(t *testing.T) {
	e := newEnv(t, "")
	var ids []string // oldest first, one second apart
	for i, body := range []string{
		`{"templateID":"base","metadata":{"user":"abc","app":"prod"}}`,
		`{"templateID":"code-interpreter-v1","metadata":{"user":"abc","app":"dev"}}`,
		`{"templateID":"base","metadata":{"user":"a&b=c","app":"prod"}}`,
		`{"templateID":"base"}`,
		`{"templateID":"ci","metadata":{"app":"prod"}}`,
	} {
		if i > 0 {
			e.clock.Advance(time.Second)
		}
		ids = append(ids, e.create(t, body)["sandboxID"].(string))
	}
	idx := func(is ...int) []string {
		out := []string{}
		for _, i := range is {
			out = append(out, ids[i])
		}
		return out
	}
	listIDs := func(r response) []string {
		t.Helper()
		if r.status != 200 {
			t.Fatalf("list = %d %s", r.status, r.body)
		}
		out := []string{}
		for _, s := range r.list(t) {
			out = append(out, s["sandboxID"].(string))
			for _, k := range []string{"templateID", "clientID", "startedAt", "endAt", "cpuCount", "memoryMB", "diskSizeMB", "envdVersion", "state"} {
				if _, ok := s[k]; !ok {
					t.Errorf("listed sandbox lacks required %s: %v", k, s)
				}
			}
		}
		return out
	}
	// metadata as the JS SDK (e2b 2.51.0) encodes it: encodeURIComponent of
	// each key and value, URLSearchParams of the pairs, then that string as
	// one query value.
	meta := func(pairs ...string) string {
		v := url.Values{}
		for i := 0; i < len(pairs); i += 2 {
			v.Add(encodeURIComponent(pairs[i]), encodeURIComponent(pairs[i+1]))
		}
		return url.Values{"metadata": {v.Encode()}}.Encode()
	}
	if got := meta("user", "abc", "app", "prod"); got != "metadata=app%3Dprod%26user%3Dabc" {
		t.Fatalf("test encoding is off: %s", got)
	}
	for _, tc := range []struct {
		name, query string
		want        []string
	}{
		{"all", "", idx(4, 3, 2, 1, 0)},
		{"metadata two pairs", meta("user", "abc", "app", "prod"), idx(0)},
		{"metadata one pair", meta("app", "prod"), idx(4, 2, 0)},
		{"metadata with & and =", meta("user", "a&b=c"), idx(2)},
		{"metadata spec example", "metadata=user%3Dabc%26app%3Dprod", idx(0)},
		{"metadata no match", meta("user", "zzz"), idx()},
		{"state both", "state=running,paused", idx(4, 3, 2, 1, 0)},
		{"state paused", "state=paused", idx()},
		{"startedAfter inclusive", "startedAfter=" + url.QueryEscape(t0.Add(3*time.Second).Format(time.RFC3339)), idx(4, 3)},
		{"template id", "template=base", idx(3, 2, 0)},
		{"template alias", "template=code-interpreter-v1", idx(1)},
		{"order asc", "order=asc", idx(0, 1, 2, 3, 4)},
		{"limit", "limit=2", idx(4, 3)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := listIDs(e.do(t, "GET", "/v2/sandboxes?"+tc.query, ""))
			if !slices.Equal(got, tc.want) {
				t.Errorf("got %v, want %v", got, tc.want)
			}
		})
	}

	t.Run("pagination", func(t *testing.T) {
		var got []string
		q := url.Values{"limit": {"2"}, "order": {"asc"}}
		for pages := 1; ; pages++ {
			if pages > 5 {
				t.Fatal("too many pages")
			}
			r := e.do(t, "GET", "/v2/sandboxes?"+q.Encode(), "")
			got = append(got, listIDs(r)...)
			next := r.header.Get("X-Next-Token")
			if next == "" {
				if pages != 3 {
					t.Errorf("%d pages, want 3", pages)
				}
				break
			}
			q.Set("nextToken", next)
		}
		if !slices.Equal(got, idx(0, 1, 2, 3, 4)) {
			t.Errorf("pages gave %v", got)
		}
	})

	for _, tc := range []struct{ name, query, msg string }{
		{"limit 0", "limit=0", "limit must be between 1 and 100"},
		{"limit 101", "limit=101", "limit must be between 1 and 100"},
		{"limit not a number", "limit=ten", "limit"},
		{"bad state", "state=dead", "state must be running or paused"},
		{"bad order", "order=up", "order must be asc or desc"},
		{"bad startedAfter", "startedAfter=yesterday", "startedAfter"},
		{"bad token", "nextToken=%21%21", "nextToken"},
		{"bad metadata encoding", "metadata=a%3D%25zz", "metadata filter"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			wantError(t, e.do(t, "GET", "/v2/sandboxes?"+tc.query, ""), 400, tc.msg)
		})
	}

	t.Run("v1", func(t *testing.T) {
		got := listIDs(e.do(t, "GET", "/sandboxes?"+meta("app", "prod"), ""))
		if !slices.Equal(got, idx(4, 2, 0)) {
			t.Errorf("v1 list = %v", got)
		}
		if r := e.do(t, "GET", "/sandboxes", ""); string(bytes.TrimSpace(r.body)) == "null" {
			t.Error("v1 list must be an array")
		}
	})

	t.Run("empty list is an array", func(t *testing.T) {
		r := e.do(t, "GET", "/v2/sandboxes?state=paused", "")
		if strings.TrimSpace(string(r.body)) != "[]" || r.header.Get("X-Next-Token") != "" {
			t.Errorf("body %q next %q", r.body, r.header.Get("X-Next-Token"))
		}
	})
}

func TestListManyPagesV1(t *testing.T) {
	e := newEnv(t, "")
	for range 105 {
		e.create(t, `{"templateID":"base"}`)
	}
	r := e.do(t, "GET", "/sandboxes", "")
	if n := len(r.list(t)); n != 105 {
		t.Errorf("v1 list gave %d, want 105", n)
	}
	r = e.do(t, "GET", "/v2/sandboxes", "")
	if n := len(r.list(t)); n != 100 || r.header.Get("X-Next-Token") == "" {
		t.Errorf("v2 first page = %d items, next %q", n, r.header.Get("X-Next-Token"))
	}
}

func TestUnknownRoutes(t *testing.T) {
	e := newEnv(t, "")
	wantError(t, e.do(t, "GET", "/nope", ""), 404, "no such endpoint")
	wantError(t, e.do(t, "GET", "/sandboxes/x/y/z", ""), 404, "no such endpoint")
	wantError(t, e.do(t, "PUT", "/sandboxes/abc", ""), 405, "not allowed")
	wantError(t, e.do(t, "GET", "/sandboxes/abc/timeout", ""), 405, "not allowed")
}

// encodeURIComponent escapes as JavaScript's function of that name does for
// the characters the tests use.
func encodeURIComponent(s string) string {
	return strings.ReplaceAll(url.QueryEscape(s), "+", "%20")
}
