package cluster

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// A team's maxSandboxes holds across two api replicas creating at once:
// exactly the limit's worth get through, the rest get E2B's 429; a kill
// makes room again. Its rate and lifetime limits are checked too.
func TestTeamLimitsAcrossReplicas(t *testing.T) {
	c := client(t)
	ctx := t.Context()
	const shared = "e2b_" + "4444444444444444444444444444444444444444"
	f := newFakeNode(t, "limit-n", shared)
	registerNode(t, c, f.name, f.addr(), time.Minute)
	kc, tc := c.WatchKeys(ctx), c.WatchTeams(ctx)
	keys := map[string]string{}
	ids := map[string]string{}
	for name, l := range map[string]*TeamLimits{
		"limit-a": {MaxSandboxes: 3},
		"limit-b": {CreatesPerSecond: "0.5", CreateBurst: 1, MaxLifetimeSeconds: 600},
	} {
		tm, err := c.CreateTeam(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		tm.Spec.Limits = l
		if _, err := c.UpdateTeam(ctx, tm); err != nil {
			t.Fatal(err)
		}
		ids[name] = tm.Spec.ID
		plain, _, err := c.CreateKey(ctx, "t", name, false)
		if err != nil {
			t.Fatal(err)
		}
		keys[name] = plain
		waitFor(t, 10*time.Second, "the key and limits of "+name, func() bool {
			_, ok := kc.Team(plain)
			got, ok2 := tc.Team(tm.Spec.ID)
			return ok && ok2 && got.Spec.Limits != nil
		})
	}
	var apis []*httptest.Server
	for range 2 {
		api := httptest.NewServer(NewRouter(RouterConfig{Client: c, Placer: placerOn(c, 1, "limit-n"), APIKey: shared, Keys: kc, Teams: tc}))
		t.Cleanup(api.Close)
		apis = append(apis, api)
	}
	type answer struct {
		code int
		hdr  http.Header
		body map[string]any
	}
	do := func(method, url, key, body string) answer {
		req, _ := http.NewRequest(method, url, strings.NewReader(body))
		req.Header.Set("X-API-KEY", key)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Error(err)
			return answer{}
		}
		defer res.Body.Close()
		var out map[string]any
		_ = json.NewDecoder(res.Body).Decode(&out)
		return answer{res.StatusCode, res.Header, out}
	}
	t.Cleanup(func() {
		sbs, _ := c.ListSandboxes(context.Background(), NodeLabel+"=limit-n")
		for _, sb := range sbs {
			_ = c.DeleteSandbox(context.Background(), sb.Name)
		}
	})

	// Ten creates at once through two replicas.
	var wg sync.WaitGroup
	answers := make([]answer, 10)
	for i := range answers {
		wg.Go(func() {
			answers[i] = do("POST", apis[i%2].URL+"/sandboxes", keys["limit-a"], `{"templateID":"base","timeout":60}`)
		})
	}
	wg.Wait()
	var created []string
	for _, a := range answers {
		switch a.code {
		case http.StatusCreated:
			created = append(created, a.body["sandboxID"].(string))
		case http.StatusTooManyRequests:
			msg, _ := a.body["message"].(string)
			if a.body["code"] != float64(429) || !strings.Contains(msg, "max-sandboxes 3") || a.hdr.Get("Should-Retry") != "false" {
				t.Errorf("refused create: %v %v, want E2B's 429 naming max-sandboxes and Should-Retry: false", a.hdr, a.body)
			}
		default:
			t.Errorf("create: %d %v", a.code, a.body)
		}
	}
	if len(created) != 3 {
		t.Fatalf("%d creates of 10 got through, want exactly the limit, 3", len(created))
	}
	sbs, err := c.ListSandboxes(ctx, TeamLabel+"="+ids["limit-a"])
	if err != nil || len(sbs) != 3 {
		t.Fatalf("the team's Sandboxes: %d, %v; want 3", len(sbs), err)
	}
	if a := do("POST", apis[1].URL+"/sandboxes/"+created[0]+"/fork", keys["limit-a"], `{"count":1}`); a.code != http.StatusTooManyRequests {
		t.Errorf("a fork at the limit: %d %v, want 429", a.code, a.body)
	}
	if a := do("DELETE", apis[0].URL+"/sandboxes/"+created[0], keys["limit-a"], ""); a.code/100 != 2 {
		t.Fatalf("kill: %d", a.code)
	}
	if a := do("POST", apis[1].URL+"/sandboxes", keys["limit-a"], `{"templateID":"base"}`); a.code != http.StatusCreated {
		t.Errorf("create after a kill made room: %d %v, want 201", a.code, a.body)
	}
	waitFor(t, 10*time.Second, "the reservations released", func() bool {
		tm, err := c.GetTeam(ctx, "limit-a")
		return err == nil && len(tm.Status.Reservations) == 0
	})

	// limit-b: a sandbox may live 10 minutes, and one create per 2 s.
	if a := do("POST", apis[0].URL+"/sandboxes", keys["limit-b"], `{"templateID":"base","timeout":3600}`); a.code != http.StatusBadRequest || !strings.Contains(a.body["message"].(string), "max-lifetime") {
		t.Errorf("create past max-lifetime: %d %v, want 400 naming max-lifetime", a.code, a.body)
	}
	first := do("POST", apis[0].URL+"/sandboxes", keys["limit-b"], `{"templateID":"base","timeout":60}`)
	if first.code != http.StatusCreated {
		t.Fatalf("first create of limit-b: %d %v", first.code, first.body)
	}
	if a := do("POST", apis[0].URL+"/sandboxes", keys["limit-b"], `{"templateID":"base","timeout":60}`); a.code != http.StatusTooManyRequests || a.hdr.Get("Retry-After") == "" {
		t.Errorf("second create at once of limit-b: %d %v %v, want 429 with Retry-After", a.code, a.hdr, a.body)
	}

	// Its lifetime holds later: a new timeout past it is refused, a
	// refresh past it cut to it.
	id := first.body["sandboxID"].(string)
	if a := do("POST", apis[1].URL+"/sandboxes/"+id+"/timeout", keys["limit-b"], `{"timeout":3600}`); a.code != http.StatusBadRequest || !strings.Contains(a.body["message"].(string), "max-lifetime") {
		t.Errorf("timeout past max-lifetime: %d %v, want 400 naming max-lifetime", a.code, a.body)
	}
	if a := do("POST", apis[1].URL+"/sandboxes/"+id+"/timeout", keys["limit-b"], `{"timeout":300}`); a.code != http.StatusOK {
		t.Errorf("timeout within max-lifetime: %d %v", a.code, a.body)
	}
	if sb, err := c.GetSandbox(ctx, id); err != nil || sb.Spec.EndAt == nil || time.Until(sb.Spec.EndAt.Time) < 4*time.Minute {
		t.Errorf("after a timeout of 5 minutes: %+v, %v", sb, err)
	}
	if a := do("POST", apis[0].URL+"/sandboxes/"+id+"/refreshes", keys["limit-b"], `{"duration":3600}`); a.code != http.StatusOK {
		t.Errorf("refresh past max-lifetime: %d %v, want it cut, not refused", a.code, a.body)
	}
	sb, err := c.GetSandbox(ctx, id)
	if err != nil || sb.Spec.EndAt == nil || sb.Spec.EndAt.After(sb.CreationTimestamp.Add(601*time.Second)) || time.Until(sb.Spec.EndAt.Time) < 8*time.Minute {
		t.Errorf("after a refresh of an hour: %+v, %v; want endAt cut to 10 minutes from the start", sb, err)
	}
}
