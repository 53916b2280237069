package cluster

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/sandpit-dev/sandpit/internal/restapi"
)

func TestPathSandboxID(t *testing.T) {
	for p, want := range map[string]string{
		"/sandboxes/abc":            "abc",
		"/sandboxes/abc/timeout":    "abc",
		"/v2/sandboxes/abc/connect": "abc",
		"/sandboxes":                "",
		"/templates/abc":            "",
		"/sandboxesx/abc":           "",
	} {
		if got := pathSandboxID(p); got != want {
			t.Errorf("pathSandboxID(%q) = %q, want %q", p, got, want)
		}
	}
}

func TestSandboxTraffic(t *testing.T) {
	for _, tc := range []struct {
		host, hid, hport string
		id               string
		ok, err          bool
	}{
		{host: "127.0.0.1:1", hid: "abc", hport: "49983", id: "abc", ok: true},
		{host: "49983-abc.localhost:1", id: "abc", ok: true},
		{host: "localhost:1"},
		{host: "api.example.com"},
		{host: "x", hid: "abc", ok: true, err: true},
	} {
		r := httptest.NewRequest("GET", "/", nil)
		r.Host = tc.host
		if tc.hid != "" {
			r.Header.Set("E2b-Sandbox-Id", tc.hid)
		}
		if tc.hport != "" {
			r.Header.Set("E2b-Sandbox-Port", tc.hport)
		}
		id, ok, err := sandboxTraffic(r)
		if id != tc.id || ok != tc.ok || (err != nil) != tc.err {
			t.Errorf("%+v: got %q %v %v", tc, id, ok, err)
		}
	}
}

// A create without the API key is refused before anything is placed
// (the Router has no Placer here: placing would panic).
func TestRouterRefusesCreateWithoutKey(t *testing.T) {
	rt := NewRouter(RouterConfig{APIKey: "e2b_right"})
	for _, key := range []string{"", "e2b_wrong"} {
		r := httptest.NewRequest("POST", "/sandboxes", strings.NewReader(`{"templateID":"base"}`))
		if key != "" {
			r.Header.Set("X-API-KEY", key)
		}
		w := httptest.NewRecorder()
		rt.ServeHTTP(w, r)
		if w.Code != http.StatusUnauthorized {
			t.Errorf("create with key %q: %d %s, want 401", key, w.Code, w.Body)
		}
	}
}

// fakeNode is a node daemon's HTTP surface: it creates sandboxes named
// after itself and answers sandbox traffic with its name.
type fakeNode struct {
	name string
	// key, when set, is the only X-API-KEY the node accepts (the key
	// nodes share), as a node daemon with SANDPIT_API_KEY.
	key string
	srv *httptest.Server
	mu  sync.Mutex
	ids map[string]bool
	n   atomic.Int64
}

func newFakeNode(t *testing.T, name string, key ...string) *fakeNode {
	f := &fakeNode{name: name, ids: map[string]bool{}}
	if len(key) > 0 {
		f.key = key[0]
	}
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if f.key != "" && r.Header.Get("X-Api-Key") != f.key && r.Header.Get("E2b-Sandbox-Id") == "" {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		switch {
		case r.Method == "POST" && r.URL.Path == "/sandboxes":
			body, _ := io.ReadAll(r.Body)
			var req struct{ TemplateID string }
			_ = json.Unmarshal(body, &req)
			id := fmt.Sprintf("%s-sbx%d", f.name, f.n.Add(1))
			f.mu.Lock()
			f.ids[id] = true
			f.mu.Unlock()
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusCreated)
			_ = json.NewEncoder(w).Encode(map[string]string{"sandboxID": id, "templateID": req.TemplateID, "domain": "node.invalid"})
		case r.Method == "POST" && r.URL.Path == "/v3/templates":
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusAccepted)
			_ = json.NewEncoder(w).Encode(map[string]any{
				"templateID": "tpl-" + f.name, "buildID": "b1", "aliases": []string{}, "names": []string{"mytpl-" + f.name + ":v1"},
			})
		case r.Method == "POST" && strings.HasSuffix(r.URL.Path, "/fork"):
			var out []map[string]any
			for range 2 {
				id := fmt.Sprintf("%s-sbx%d", f.name, f.n.Add(1))
				out = append(out, map[string]any{"sandbox": map[string]string{"sandboxID": id, "templateID": "base", "domain": "node.invalid"}})
			}
			w.Header().Set("Content-Type", "application/json")
			_ = json.NewEncoder(w).Encode(out)
		case r.Method == "GET" && r.URL.Path == "/sandboxes":
			f.mu.Lock()
			var out []map[string]string
			for id := range f.ids {
				out = append(out, map[string]string{"sandboxID": id})
			}
			f.mu.Unlock()
			_ = json.NewEncoder(w).Encode(out)
		case r.Method == "GET" && r.URL.Path == "/templates":
			_ = json.NewEncoder(w).Encode([]map[string]string{{"templateID": "base"}, {"templateID": "tpl-" + f.name}})
		case r.Method == "DELETE" && strings.HasPrefix(r.URL.Path, "/sandboxes/"):
			f.mu.Lock()
			delete(f.ids, strings.TrimPrefix(r.URL.Path, "/sandboxes/"))
			f.mu.Unlock()
			w.WriteHeader(http.StatusNoContent)
		case r.URL.Path == "/on-behalf-admin":
			fmt.Fprint(w, r.Header.Get(restapi.OnBehalfAdmin))
		default:
			fmt.Fprintf(w, "%s %s %s", f.name, r.Header.Get("E2b-Sandbox-Id"), r.URL.Path)
		}
	}))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeNode) addr() string { return strings.TrimPrefix(f.srv.URL, "http://") }

func TestRouterPlacesRecordsAndRoutes(t *testing.T) {
	c := client(t)
	ctx := t.Context()
	a, b := newFakeNode(t, "route-a"), newFakeNode(t, "route-b")
	agents := map[string]*Node{}
	for _, f := range []*fakeNode{a, b} {
		n := registerNode(t, c, f.name, f.addr(), 2*time.Second)
		agents[f.name] = n
	}
	go agents["route-a"].Run(ctx)
	stopB, cancelB := context.WithCancel(ctx)
	go agents["route-b"].Run(stopB)
	p := placerOn(c, 2, "route-a", "route-b")
	api := httptest.NewServer(NewRouter(RouterConfig{Client: c, Placer: p, Domain: "api.test"}))
	t.Cleanup(api.Close)
	// A second replica, sharing nothing with the first but the API server.
	api2 := httptest.NewServer(NewRouter(RouterConfig{Client: c, Placer: placerOn(c, 2, "route-a", "route-b"), Domain: "api.test"}))
	t.Cleanup(api2.Close)

	perNode := map[string]int{}
	var ids []string
	for range 6 {
		res, err := http.Post(api.URL+"/sandboxes", "application/json", strings.NewReader(`{"templateID":"base","timeout":60}`))
		if err != nil {
			t.Fatal(err)
		}
		var created map[string]string
		_ = json.NewDecoder(res.Body).Decode(&created)
		res.Body.Close()
		if res.StatusCode != http.StatusCreated || created["domain"] != "api.test" {
			t.Fatalf("create: %d %v, want 201 with the API's domain", res.StatusCode, created)
		}
		id := created["sandboxID"]
		sb, err := c.GetSandbox(ctx, id)
		if err != nil {
			t.Fatalf("Sandbox of %s: %v", id, err)
		}
		node := sb.Labels[NodeLabel]
		if !strings.HasPrefix(id, node+"-") {
			t.Errorf("Sandbox %s labelled with node %q", id, node)
		}
		waitFor(t, 10*time.Second, "the status of "+id, func() bool {
			sb, err := c.GetSandbox(ctx, id)
			return err == nil && sb.Status.NodeName == node && sb.Status.Phase == PhaseRunning
		})
		perNode[node]++
		ids = append(ids, id)
	}
	if perNode["route-a"] == 0 || perNode["route-b"] == 0 {
		t.Errorf("placements %v: want both nodes used", perNode)
	}

	// A template built through the API stays on the node that built it:
	// its paths and its sandboxes go there, through either replica.
	res, err := http.Post(api.URL+"/v3/templates", "application/json", strings.NewReader(`{"name":"mytpl"}`))
	if err != nil {
		t.Fatal(err)
	}
	var tpl map[string]any
	_ = json.NewDecoder(res.Body).Decode(&tpl)
	res.Body.Close()
	tplID, _ := tpl["templateID"].(string)
	holder := strings.TrimPrefix(tplID, "tpl-")
	names := tpl["names"].([]any)
	alias, _, _ := strings.Cut(names[0].(string), ":")
	for _, url := range []string{api.URL, api2.URL} {
		res, err := http.Get(url + "/templates/" + tplID + "/builds/b1/status")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if !strings.HasPrefix(string(body), holder+" ") {
			t.Errorf("template %s's build status via %s reached %q, want %s", tplID, url, body, holder)
		}
		for range 3 {
			res, err := http.Post(url+"/sandboxes", "application/json", strings.NewReader(`{"templateID":"`+alias+`:v1"}`))
			if err != nil {
				t.Fatal(err)
			}
			var created map[string]string
			_ = json.NewDecoder(res.Body).Decode(&created)
			res.Body.Close()
			if !strings.HasPrefix(created["sandboxID"], holder+"-") {
				t.Errorf("sandbox of template %s via %s: %d %v, want it on %s", alias, url, res.StatusCode, created, holder)
			}
			ids = append(ids, created["sandboxID"])
		}
	}
	t.Cleanup(func() {
		_ = c.dyn.Resource(templatesGVR).Namespace(c.ns).Delete(context.Background(), tplID, metav1.DeleteOptions{})
	})

	// Template lists join the nodes' own, the common ones once.
	res, err = http.Get(api2.URL + "/templates")
	if err != nil {
		t.Fatal(err)
	}
	var listed []map[string]string
	_ = json.NewDecoder(res.Body).Decode(&listed)
	res.Body.Close()
	var got []string
	for _, l := range listed {
		got = append(got, l["templateID"])
	}
	slices.Sort(got)
	if want := []string{"base", "tpl-route-a", "tpl-route-b"}; !slices.Equal(got, want) {
		t.Errorf("GET /templates = %v, want %v", got, want)
	}

	// Sandbox traffic reaches the sandbox's node through either replica.
	for _, id := range ids {
		for _, url := range []string{api.URL, api2.URL} {
			req, _ := http.NewRequest("GET", url+"/health", nil)
			req.Header.Set("E2b-Sandbox-Id", id)
			req.Header.Set("E2b-Sandbox-Port", "49983")
			res, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(res.Body)
			res.Body.Close()
			node, _, _ := strings.Cut(string(body), " ")
			if !strings.HasPrefix(id, node+"-") {
				t.Errorf("traffic for %s via %s reached %q", id, url, body)
			}
		}
	}

	// Pause and resume through either replica show in the Sandbox.
	for _, step := range []struct{ url, path, want string }{
		{api.URL, "/pause", PhasePaused}, {api2.URL, "/resume", PhaseRunning},
	} {
		res, err := http.Post(step.url+"/sandboxes/"+ids[1]+step.path, "application/json", strings.NewReader(`{}`))
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if sb, err := c.GetSandbox(ctx, ids[1]); err != nil || sb.Status.Phase != step.want {
			t.Errorf("after %s: %+v, %v; want phase %s", step.path, sb, err, step.want)
		}
	}

	// Forks start on the parent's node and are recorded there.
	res, err = http.Post(api2.URL+"/sandboxes/"+ids[1]+"/fork", "application/json", strings.NewReader(`{"count":2}`))
	if err != nil {
		t.Fatal(err)
	}
	var forks []struct {
		Sandbox map[string]string `json:"sandbox"`
	}
	_ = json.NewDecoder(res.Body).Decode(&forks)
	res.Body.Close()
	parentNode, _, _ := strings.Cut(ids[1], "-sbx")
	if len(forks) != 2 {
		t.Fatalf("fork answered %d: %v, want 2 forks", res.StatusCode, forks)
	}
	for _, f := range forks {
		id := f.Sandbox["sandboxID"]
		sb, err := c.GetSandbox(ctx, id)
		if err != nil || sb.Labels[NodeLabel] != parentNode || f.Sandbox["domain"] != "api.test" {
			t.Errorf("fork %v: Sandbox %+v, %v; want it on %s with the API's domain", f.Sandbox, sb, err, parentNode)
		}
		ids = append(ids, id)
	}

	// A new timeout moves the Sandbox's end.
	res, err = http.Post(api.URL+"/sandboxes/"+ids[1]+"/timeout", "application/json", strings.NewReader(`{"timeout":3600}`))
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if sb, err := c.GetSandbox(ctx, ids[1]); err != nil || sb.Spec.EndAt == nil || time.Until(sb.Spec.EndAt.Time) < 30*time.Minute {
		t.Errorf("after a timeout of an hour: %+v, %v; want endAt about an hour away", sb, err)
	}

	// Kill through the second replica: the Sandbox goes too.
	req, _ := http.NewRequest("DELETE", api2.URL+"/sandboxes/"+ids[0], nil)
	res, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if _, err := c.GetSandbox(ctx, ids[0]); err == nil {
		t.Errorf("Sandbox %s still there after kill", ids[0])
	}

	// route-b stops renewing: its sandboxes are gone, creates go to route-a.
	var onB string
	for _, id := range ids[1:] {
		if strings.HasPrefix(id, "route-b-") {
			onB = id
		}
	}
	cancelB()
	waitFor(t, 30*time.Second, "route-b's sandboxes to be reported gone", func() bool {
		req, _ := http.NewRequest("GET", api.URL+"/sandboxes/"+onB, nil)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			return false
		}
		res.Body.Close()
		return res.StatusCode == http.StatusNotFound
	})
	for range 3 {
		res, err := http.Post(api2.URL+"/sandboxes", "application/json", strings.NewReader(`{"templateID":"base"}`))
		if err != nil {
			t.Fatal(err)
		}
		var created map[string]string
		_ = json.NewDecoder(res.Body).Decode(&created)
		res.Body.Close()
		if !strings.HasPrefix(created["sandboxID"], "route-a-") {
			t.Errorf("create after route-b died: %d %v, want it on route-a", res.StatusCode, created)
		}
		ids = append(ids, created["sandboxID"])
	}
	t.Cleanup(func() {
		for _, id := range ids {
			_ = c.DeleteSandbox(context.Background(), id)
		}
	})
}

func TestPathTemplateRef(t *testing.T) {
	for p, want := range map[string]string{
		"/templates/abc":                 "abc",
		"/templates/abc/builds/b/status": "abc",
		"/v2/templates/abc/builds/b":     "abc",
		"/templates/aliases/my-tpl":      "my-tpl",
		"/templates/abc/files/0123":      "abc",
		"/templates/tags":                "",
		"/templates":                     "",
		"/sandboxes/abc":                 "",
	} {
		if got := pathTemplateRef(p); got != want {
			t.Errorf("pathTemplateRef(%q) = %q, want %q", p, got, want)
		}
	}
	ts := []SandboxTemplate{{ObjectMeta: metav1.ObjectMeta{Name: "tid1"}, Spec: TemplateSpec{Aliases: []string{"mine"}}, Status: TemplateStatus{BuiltOn: "n1"}}}
	for ref, want := range map[string]string{"tid1": "n1", "mine": "n1", "mine:v2": "n1", "base": "", "": ""} {
		if got := templateNode(ts, ref); got != want {
			t.Errorf("templateNode(%q) = %q, want %q", ref, got, want)
		}
	}
	// Its sandboxes start on its builder until its build is in the
	// registry; then on any node. Its requests stay the builder's.
	if got := sandboxTemplateNode(ts, "mine"); got != "n1" {
		t.Errorf("sandboxTemplateNode without an image = %q, want n1", got)
	}
	ts[0].Status.Image = "127.0.0.1:5000/sandpit/templates@sha256:" + strings.Repeat("a", 64)
	if got := sandboxTemplateNode(ts, "mine:v2"); got != "" {
		t.Errorf("sandboxTemplateNode with an image = %q, want any node", got)
	}
	if got := templateNode(ts, "mine"); got != "n1" {
		t.Errorf("templateNode with an image = %q, want the builder", got)
	}
}

// A node records its build's image: the SandboxTemplate is Ready with
// it, and a rebuild requested meanwhile keeps it until the next one.
func TestRecordTemplateImage(t *testing.T) {
	c := client(t)
	ctx := t.Context()
	id := "tpl-image-test"
	if err := c.RecordTemplate(ctx, id, "n1", "b1", []string{"img-test"}); err != nil {
		t.Fatal(err)
	}
	img := "127.0.0.1:5000/sandpit/templates@sha256:" + strings.Repeat("b", 64)
	if err := c.RecordTemplateImage(ctx, id, "n1", "b1", img); err != nil {
		t.Fatal(err)
	}
	get := func() TemplateStatus {
		ts, err := c.ListTemplates(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if t := findTemplate(ts, "img-test"); t != nil {
			return t.Status
		}
		t.Fatal("SandboxTemplate img-test not listed")
		return TemplateStatus{}
	}
	if st := get(); st.Phase != TemplateReady || st.Image != img || st.BuiltOn != "n1" || st.BuildID != "b1" {
		t.Fatalf("status after the push: %+v", st)
	}
	if err := c.RecordTemplate(ctx, id, "n1", "b2", []string{"img-test"}); err != nil {
		t.Fatal(err)
	}
	if st := get(); st.Phase != TemplateBuilding || st.Image != img || st.BuildID != "b2" {
		t.Fatalf("status during a rebuild: %+v", st)
	}
	if err := c.RecordTemplateImage(ctx, "tpl-image-missing", "n1", "b1", img); !apierrors.IsNotFound(err) {
		t.Fatalf("recording the image of a template no replica recorded: %v", err)
	}
}

// tcpForwarder passes TCP connections to addr until it is stopped, so a
// test can take the API server away from a client and give it back.
type tcpForwarder struct {
	ln    net.Listener
	mu    sync.Mutex
	conns []net.Conn
	down  bool
}

func newTCPForwarder(t *testing.T, addr string) *tcpForwarder {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &tcpForwarder{ln: ln}
	t.Cleanup(func() { ln.Close(); f.cut() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			f.mu.Lock()
			if f.down {
				f.mu.Unlock()
				c.Close()
				continue
			}
			up, err := net.Dial("tcp", addr)
			if err != nil {
				f.mu.Unlock()
				c.Close()
				continue
			}
			f.conns = append(f.conns, c, up)
			f.mu.Unlock()
			go func() { _, _ = io.Copy(up, c); up.Close() }()
			go func() { _, _ = io.Copy(c, up); c.Close() }()
		}
	}()
	return f
}

// cut closes every connection and refuses new ones.
func (f *tcpForwarder) cut() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.down = true
	for _, c := range f.conns {
		c.Close()
	}
	f.conns = nil
}

// The API server going away for a moment does not cut running sandboxes'
// traffic: the Router's last view of the live nodes serves a while.
func TestRouterRidesOutAnAPIServerBlip(t *testing.T) {
	c := client(t)
	node := newFakeNode(t, "blip-a")
	registerNode(t, c, node.name, node.addr(), time.Minute)
	cfg, err := Config(controlPlane(t).Kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	u, err := url.Parse(cfg.Host)
	if err != nil {
		t.Fatal(err)
	}
	fwd := newTCPForwarder(t, u.Host)
	cfg.Host = "https://" + fwd.ln.Addr().String()
	cfg.Timeout = 2 * time.Second
	viaFwd, err := NewClient(cfg, "sandpit")
	if err != nil {
		t.Fatal(err)
	}
	api := httptest.NewServer(NewRouter(RouterConfig{Client: viaFwd, Placer: placerOn(viaFwd, 1, "blip-a")}))
	t.Cleanup(api.Close)
	res, err := http.Post(api.URL+"/sandboxes", "application/json", strings.NewReader(`{"templateID":"base"}`))
	if err != nil {
		t.Fatal(err)
	}
	var created map[string]string
	_ = json.NewDecoder(res.Body).Decode(&created)
	res.Body.Close()
	id := created["sandboxID"]
	t.Cleanup(func() { _ = c.DeleteSandbox(context.Background(), id) })

	fwd.cut()
	time.Sleep(liveTTL + 100*time.Millisecond) // past the fresh view
	req, _ := http.NewRequest("GET", api.URL+"/health", nil)
	req.Header.Set("E2b-Sandbox-Id", id)
	req.Header.Set("E2b-Sandbox-Port", "49983")
	res, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if !strings.HasPrefix(string(body), "blip-a ") {
		t.Errorf("traffic for %s with the API server away: %d %q, want it served by blip-a", id, res.StatusCode, body)
	}
}
