package cluster

import (
	"cmp"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// pagingSandbox is one sandbox of a pagingNode.
type pagingSandbox struct {
	id      string
	started time.Time // nanoseconds, as a node keeps it
	state   string
	md      map[string]string
}

// pagingNode answers GET /v2/sandboxes as a node daemon does
// (internal/sandbox's List and restapi's ListSandboxesV2): ordered by
// start in nanoseconds then ID, a cursor of the last item's nanoseconds
// and ID, startedAt written in milliseconds, state and metadata filters.
func pagingNode(t *testing.T, sbs []pagingSandbox) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/v2/sandboxes" {
			http.NotFound(w, r)
			return
		}
		q := r.URL.Query()
		limit, _ := strconv.Atoi(q.Get("limit"))
		if limit < 1 || limit > 100 {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		desc := q.Get("order") != "asc"
		var states []string
		if s := q.Get("state"); s != "" {
			states = strings.Split(s, ",")
		}
		md, _ := url.ParseQuery(q.Get("metadata"))
		order := func(a, b pagingSandbox) int {
			c := a.started.Compare(b.started)
			if c == 0 {
				c = strings.Compare(a.id, b.id)
			}
			if desc {
				c = -c
			}
			return c
		}
		var all []pagingSandbox
		for _, sb := range sbs {
			ok := len(states) == 0 || slices.Contains(states, sb.state)
			for k := range md {
				ok = ok && sb.md[k] == md.Get(k)
			}
			if ok {
				all = append(all, sb)
			}
		}
		slices.SortFunc(all, order)
		if tok := q.Get("nextToken"); tok != "" {
			raw, _ := base64.RawURLEncoding.DecodeString(tok)
			ns, id, _ := strings.Cut(string(raw), ".")
			n, _ := strconv.ParseInt(ns, 10, 64)
			after := pagingSandbox{id: id, started: time.Unix(0, n)}
			all = slices.DeleteFunc(all, func(sb pagingSandbox) bool { return order(sb, after) <= 0 })
		}
		if len(all) > limit {
			all = all[:limit]
			last := all[limit-1]
			w.Header().Set("X-Next-Token", base64.RawURLEncoding.EncodeToString([]byte(strconv.FormatInt(last.started.UnixNano(), 10)+"."+last.id)))
		}
		out := []map[string]any{}
		for _, sb := range all {
			out = append(out, map[string]any{"sandboxID": sb.id, "startedAt": sb.started.UTC().Truncate(time.Millisecond), "state": sb.state, "metadata": sb.md})
		}
		_ = json.NewEncoder(w).Encode(out)
	}))
	t.Cleanup(srv.Close)
	return srv
}

// The paged sandbox list through the api role walks a team's sandboxes
// spread over two nodes, page by page, in order, with no duplicate and
// no gap, whatever the page size, order and filters, while another team's
// many sandboxes on the same nodes stay out of it.
func TestRouterListPagesAcrossNodes(t *testing.T) {
	c := client(t)
	ctx := t.Context()
	const shared = "e2b_" + "3333333333333333333333333333333333333333"
	kc := c.WatchKeys(ctx)
	keys, teamIDs := map[string]string{}, map[string]string{}
	for _, name := range []string{"page-a", "page-b"} {
		tm, err := c.CreateTeam(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		teamIDs[name] = tm.Spec.ID
		plain, _, err := c.CreateKey(ctx, "t", name, false)
		if err != nil {
			t.Fatal(err)
		}
		keys[name] = plain
		waitFor(t, 10*time.Second, "the key of "+name, func() bool { _, ok := kc.Team(plain); return ok })
	}

	// Team page-a: 11 sandboxes, some started within the same
	// millisecond on both nodes, some paused, some tagged; page-b: 40 in
	// between, so the team's pages need more than one round of requests.
	base := time.Now().Truncate(time.Millisecond).Add(-time.Hour)
	perNode := map[string][]pagingSandbox{}
	team := map[string]string{}
	var mine []pagingSandbox
	for i := range 51 {
		node := []string{"page-n1", "page-n2"}[i%2]
		sb := pagingSandbox{
			id:      fmt.Sprintf("pg%02d-%s", i, node),
			started: base.Add(time.Duration(i/4)*time.Millisecond + time.Duration(i%4)*100*time.Microsecond),
			state:   "running",
			md:      map[string]string{},
		}
		owner := "page-b"
		if i%5 == 0 || i == 7 {
			owner = "page-a"
			if i%3 == 0 {
				sb.state = "paused"
			}
			if i%2 == 0 {
				sb.md["tag"] = "x"
			}
			mine = append(mine, sb)
		}
		team[sb.id] = owner
		perNode[node] = append(perNode[node], sb)
		if err := func() error {
			_, err := c.CreateSandbox(ctx, &Sandbox{
				ObjectMeta: metav1.ObjectMeta{Name: sb.id, Labels: map[string]string{NodeLabel: node, TeamLabel: teamIDs[owner]}},
				Spec:       SandboxSpec{TemplateID: "base", TeamID: teamIDs[owner]},
			})
			return err
		}(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.DeleteSandbox(context.Background(), sb.id) })
	}
	var names []string
	for name, sbs := range perNode {
		srv := pagingNode(t, sbs)
		registerNode(t, c, name, strings.TrimPrefix(srv.URL, "http://"), time.Minute)
		names = append(names, name)
	}
	api := httptest.NewServer(NewRouter(RouterConfig{Client: c, Placer: placerOn(c, 1, names...), APIKey: shared, Keys: kc}))
	t.Cleanup(api.Close)

	walk := func(query string, limit int) []string {
		t.Helper()
		var got []string
		next := ""
		for page := 0; page < 100; page++ {
			u := api.URL + "/v2/sandboxes?limit=" + strconv.Itoa(limit) + query
			if next != "" {
				u += "&nextToken=" + url.QueryEscape(next)
			}
			req, _ := http.NewRequest("GET", u, nil)
			req.Header.Set("X-API-KEY", keys["page-a"])
			res, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			var items []struct {
				SandboxID string `json:"sandboxID"`
			}
			err = json.NewDecoder(res.Body).Decode(&items)
			res.Body.Close()
			if res.StatusCode != http.StatusOK || err != nil {
				t.Fatalf("GET %s: %d %v", u, res.StatusCode, err)
			}
			if len(items) > limit {
				t.Fatalf("GET %s: %d items, more than the limit %d", u, len(items), limit)
			}
			for _, it := range items {
				got = append(got, it.SandboxID)
			}
			if next = res.Header.Get("X-Next-Token"); next == "" {
				return got
			}
		}
		t.Fatalf("%s: no last page after 100", query)
		return nil
	}
	want := func(desc bool, keep func(pagingSandbox) bool) []string {
		sbs := slices.DeleteFunc(slices.Clone(mine), func(sb pagingSandbox) bool { return !keep(sb) })
		slices.SortFunc(sbs, func(a, b pagingSandbox) int {
			c := cmp.Compare(a.started.UnixMilli(), b.started.UnixMilli())
			if c == 0 {
				c = strings.Compare(a.id, b.id)
			}
			if desc {
				c = -c
			}
			return c
		})
		var ids []string
		for _, sb := range sbs {
			ids = append(ids, sb.id)
		}
		return ids
	}
	all := func(pagingSandbox) bool { return true }
	for _, tc := range []struct {
		query string
		desc  bool
		keep  func(pagingSandbox) bool
	}{
		{"", true, all},
		{"&order=asc", false, all},
		{"&state=running", true, func(sb pagingSandbox) bool { return sb.state == "running" }},
		{"&state=paused&order=asc", false, func(sb pagingSandbox) bool { return sb.state == "paused" }},
		{"&metadata=" + url.QueryEscape("tag=x"), true, func(sb pagingSandbox) bool { return sb.md["tag"] == "x" }},
	} {
		w := want(tc.desc, tc.keep)
		if len(w) == 0 {
			t.Fatalf("%q: the test's data selects nothing", tc.query)
		}
		for _, limit := range []int{1, 2, 3, 100} {
			if got := walk(tc.query, limit); !slices.Equal(got, w) {
				t.Errorf("walk %q with limit %d:\n got %v\nwant %v", tc.query, limit, got, w)
			}
		}
	}
}
