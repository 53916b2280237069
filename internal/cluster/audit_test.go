package cluster

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sandpit-dev/sandpit/internal/restapi"
)

// lockedBuffer is a log destination read while the Router writes.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// lines returns the JSON log lines with msg "audit".
func (l *lockedBuffer) audits() []map[string]string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []map[string]string
	for line := range strings.SplitSeq(l.b.String(), "\n") {
		var m map[string]any
		if json.Unmarshal([]byte(line), &m) != nil || m["msg"] != "audit" {
			continue
		}
		s := map[string]string{}
		for k, v := range m {
			s[k] = fmt.Sprint(v)
		}
		out = append(out, s)
	}
	return out
}

// auditNode is a node daemon's create and audit API: its audit log holds
// entries at the times given (oldest first, cut at limit as a node's),
// and it keeps the headers of the creates it served.
type auditNode struct {
	srv     *httptest.Server
	mu      sync.Mutex
	creates []http.Header
}

func newAuditNode(t *testing.T, name string, at []time.Time, knowsTeam bool) *auditNode {
	a := &auditNode{}
	a.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.Method == "POST" && r.URL.Path == "/sandboxes":
			a.mu.Lock()
			a.creates = append(a.creates, r.Header.Clone())
			n := len(a.creates)
			a.mu.Unlock()
			w.WriteHeader(http.StatusCreated)
			_ = json.NewEncoder(w).Encode(map[string]string{"sandboxID": fmt.Sprintf("%s-sbx%d", name, n), "templateID": "base"})
		case r.Method == "GET" && r.URL.Path == "/sandpit/v1/audit":
			if r.URL.Query().Get("team") != "" && !knowsTeam {
				w.WriteHeader(http.StatusNotFound)
				_, _ = w.Write([]byte(`{"code":404,"message":"no team"}`))
				return
			}
			limit := 1000
			if v := r.URL.Query().Get("limit"); v != "" {
				limit, _ = strconv.Atoi(v)
			}
			out := []map[string]any{}
			for i, ts := range at[:min(limit, len(at))] {
				out = append(out, map[string]any{"id": i + 1, "time": ts, "action": "sandbox.create", "target": fmt.Sprintf("%s-%d", name, i)})
			}
			_ = json.NewEncoder(w).Encode(out)
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(a.srv.Close)
	return a
}

// Through the api role, a node's audit entries name the caller (a forged
// name is dropped), the replica logs what it decides alone, and the audit
// API merges every node's log by time.
func TestRouterAudit(t *testing.T) {
	c := client(t)
	ctx := t.Context()
	const shared = "e2b_" + "5555555555555555555555555555555555555555"
	base := time.Now().Add(-time.Hour).UTC().Truncate(time.Millisecond)
	times := func(ms ...int) []time.Time {
		var out []time.Time
		for _, m := range ms {
			out = append(out, base.Add(time.Duration(m)*time.Millisecond))
		}
		return out
	}
	nodes := map[string]*auditNode{
		"audit-1": newAuditNode(t, "audit-1", times(1, 4, 5), true),
		"audit-2": newAuditNode(t, "audit-2", times(2, 3, 6), false),
	}
	for name, a := range nodes {
		registerNode(t, c, name, strings.TrimPrefix(a.srv.URL, "http://"), time.Minute)
	}
	kc := c.WatchKeys(ctx)
	if _, err := c.CreateTeam(ctx, "audit-a"); err != nil {
		t.Fatal(err)
	}
	key, k, err := c.CreateKey(ctx, "ci", "audit-a", false)
	if err != nil {
		t.Fatal(err)
	}
	adminKey, _, err := c.CreateKey(ctx, "ops", "audit-a", true)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "the keys", func() bool {
		_, ok1 := kc.Team(key)
		_, ok2 := kc.Team(adminKey)
		return ok1 && ok2
	})
	logs := &lockedBuffer{}
	api := httptest.NewServer(NewRouter(RouterConfig{
		Client: c, Placer: placerOn(c, 2, "audit-1", "audit-2"), APIKey: shared, Keys: kc,
		Audit: slog.New(slog.NewJSONHandler(logs, nil)),
	}))
	t.Cleanup(api.Close)
	do := func(method, path, key string, h map[string]string) (int, []byte) {
		t.Helper()
		req, _ := http.NewRequest(method, api.URL+path, strings.NewReader(`{"templateID":"base","timeout":60}`))
		req.Header.Set("X-API-KEY", key)
		for k, v := range h {
			req.Header.Set(k, v)
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		var b bytes.Buffer
		_, _ = b.ReadFrom(res.Body)
		return res.StatusCode, b.Bytes()
	}
	forged := map[string]string{restapi.OnBehalfTeamName: "evil", restapi.OnBehalfKeyID: "key_evil"}
	var ids []string
	for _, k := range []string{key, shared} {
		code, body := do("POST", "/sandboxes", k, forged)
		var created map[string]string
		_ = json.Unmarshal(body, &created)
		if code != http.StatusCreated {
			t.Fatalf("create: %d %s", code, body)
		}
		ids = append(ids, created["sandboxID"])
	}
	t.Cleanup(func() {
		for _, id := range ids {
			_ = c.DeleteSandbox(context.Background(), id)
		}
	})
	var seen []http.Header
	for _, a := range nodes {
		a.mu.Lock()
		seen = append(seen, a.creates...)
		a.mu.Unlock()
	}
	for _, h := range seen {
		if h.Get(restapi.OnBehalfKeyID) == "key_evil" || h.Get(restapi.OnBehalfTeamName) == "evil" {
			t.Errorf("a forged caller reached the node: %v", h)
		}
	}
	named := 0
	for _, h := range seen {
		if h.Get(restapi.OnBehalfKeyID) != "" {
			named++
			if h.Get(restapi.OnBehalfKeyID) != k.KeyID() || h.Get(restapi.OnBehalfKeyName) != "ci" || h.Get(restapi.OnBehalfTeamName) != "audit-a" || h.Get(restapi.OnBehalfClient) == "" {
				t.Errorf("the caller named to the node: %v, want key %s ci of audit-a", h, k.KeyID())
			}
		}
	}
	if len(seen) != 2 || named != 1 {
		t.Errorf("the nodes served %d creates, %d naming a caller; want 2, 1 (the shared key's names none)", len(seen), named)
	}

	// The replica's own entries: a refused key, a placement.
	if code, _ := do("GET", "/sandboxes", "e2b_"+strings.Repeat("6", 40), nil); code != http.StatusUnauthorized {
		t.Errorf("an unknown key: %d", code)
	}
	var refused, placed bool
	for _, a := range logs.audits() {
		refused = refused || (a["action"] == "auth.refused" && a["result"] == "401" && a["detail"] == "GET /sandboxes")
		placed = placed || (a["action"] == "sandbox.place" && a["target"] == ids[0] && a["key_name"] == "ci" && a["team"] == "audit-a" && strings.HasPrefix(a["detail"], "node=audit-"))
	}
	if !refused || !placed {
		t.Errorf("the replica's audit lines %v: want the refused key and the placement of %s", logs.audits(), ids[0])
	}

	// The audit API: admin keys only, every node's entries by time.
	if code, _ := do("GET", "/sandpit/v1/audit", key, nil); code != http.StatusForbidden {
		t.Errorf("the audit log with a key not admin: %d, want 403", code)
	}
	read := func(query string) []map[string]any {
		t.Helper()
		code, body := do("GET", "/sandpit/v1/audit"+query, adminKey, nil)
		if code != http.StatusOK {
			t.Fatalf("GET audit%s: %d %s", query, code, body)
		}
		var out []map[string]any
		if err := json.Unmarshal(body, &out); err != nil {
			t.Fatal(err)
		}
		return out
	}
	targets := func(es []map[string]any) string {
		var out []string
		for _, e := range es {
			out = append(out, fmt.Sprintf("%s@%s", e["target"], e["node"]))
		}
		return strings.Join(out, " ")
	}
	if got, want := targets(read("")), "audit-1-0@audit-1 audit-2-0@audit-2 audit-2-1@audit-2 audit-1-1@audit-1 audit-1-2@audit-1 audit-2-2@audit-2"; got != want {
		t.Errorf("merged audit log:\n got %s\nwant %s", got, want)
	}
	if got, want := targets(read("?limit=3")), "audit-1-0@audit-1 audit-2-0@audit-2 audit-2-1@audit-2"; got != want {
		t.Errorf("merged audit log, limit 3: %s, want %s", got, want)
	}
	// A team one node's log does not name: the other's entries.
	if got := read("?team=audit-a"); len(got) != 3 || got[0]["node"] != "audit-1" {
		t.Errorf("audit of team audit-a: %s, want audit-1's three", targets(got))
	}
}
