package restapi_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
)

// The lifecycle at create, as E2B's API takes it (autoPause,
// autoPauseMemory, autoResume) and refuses it, shown in getInfo; pause
// with memory false.
func TestLifecycleWire(t *testing.T) {
	e := newEnv(t, "")
	for _, body := range []string{
		`{"templateID":"base","autoResume":{"enabled":true}}`,
		`{"templateID":"base","autoPause":false,"autoResume":{"enabled":true}}`,
		`{"templateID":"base","autoPause":true,"autoPauseMemory":false,"autoResume":{"enabled":true}}`,
	} {
		r := e.do(t, "POST", "/v2/sandboxes", body)
		if r.status != http.StatusBadRequest || !strings.Contains(string(r.body), "autoResume") {
			t.Errorf("%s: %d %s, want 400 naming autoResume", body, r.status, r.body)
		}
	}
	lifecycle := func(id string) map[string]any {
		t.Helper()
		r := e.do(t, "GET", "/sandboxes/"+id, "")
		var d struct {
			State     string         `json:"state"`
			Lifecycle map[string]any `json:"lifecycle"`
		}
		if err := json.Unmarshal(r.body, &d); err != nil || r.status != http.StatusOK {
			t.Fatalf("getInfo: %d %s", r.status, r.body)
		}
		d.Lifecycle["state"] = d.State
		return d.Lifecycle
	}
	plain := e.create(t, `{"templateID":"base"}`)["sandboxID"].(string)
	if l := lifecycle(plain); l["onTimeout"] != "kill" || l["autoResume"] != false {
		t.Errorf("lifecycle of a plain sandbox: %v", l)
	}
	auto := e.create(t, `{"templateID":"base","autoPause":true,"autoResume":{"enabled":true}}`)["sandboxID"].(string)
	if l := lifecycle(auto); l["onTimeout"] != "pause" || l["autoResume"] != true {
		t.Errorf("lifecycle of an autoResume sandbox: %v", l)
	}
	fs := e.create(t, `{"templateID":"base","autoPause":true,"autoPauseMemory":false}`)["sandboxID"].(string)
	if l := lifecycle(fs); l["onTimeout"] != "pause" || l["autoResume"] != false {
		t.Errorf("lifecycle of a filesystem-only autoPause sandbox: %v", l)
	}

	if r := e.do(t, "POST", "/sandboxes/"+plain+"/pause", `{"memory":false}`); r.status != http.StatusNoContent {
		t.Fatalf("pause with memory false: %d %s", r.status, r.body)
	}
	if r := e.do(t, "POST", "/sandboxes/"+plain+"/pause", `{"memory":true}`); r.status != http.StatusConflict {
		t.Errorf("pausing a paused sandbox: %d %s, want 409", r.status, r.body)
	}
	if l := lifecycle(plain); l["state"] != "paused" {
		t.Errorf("state after a filesystem-only pause: %v", l)
	}
	if r := e.do(t, "GET", "/v2/sandboxes?state=paused", ""); !strings.Contains(string(r.body), plain) || strings.Contains(string(r.body), auto) {
		t.Errorf("list of paused sandboxes: %s", r.body)
	}
	if r := e.do(t, "POST", "/v2/sandboxes/"+plain+"/connect", `{"timeout":60}`); r.status != http.StatusCreated {
		t.Errorf("connect to a filesystem-only paused sandbox: %d %s, want 201", r.status, r.body)
	}
	if l := lifecycle(plain); l["state"] != "running" {
		t.Errorf("state after connect: %v", l)
	}

	// E2B's deprecated resume: 201 from paused, 409 when running.
	if r := e.do(t, "POST", "/sandboxes/"+plain+"/resume", `{"timeout":60}`); r.status != http.StatusConflict {
		t.Errorf("resume of a running sandbox: %d %s, want 409", r.status, r.body)
	}
	if r := e.do(t, "POST", "/sandboxes/"+plain+"/pause", ``); r.status != http.StatusNoContent {
		t.Fatalf("pause: %d %s", r.status, r.body)
	}
	if r := e.do(t, "POST", "/sandboxes/"+plain+"/resume", `{"timeout":60,"memory":false}`); r.status != http.StatusCreated || !strings.Contains(string(r.body), plain) {
		t.Errorf("resume of a paused sandbox: %d %s, want 201", r.status, r.body)
	}
	if l := lifecycle(plain); l["state"] != "running" {
		t.Errorf("state after resume: %v", l)
	}
}
