package restapi_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
)

func TestPauseConnectMetrics(t *testing.T) {
	e := newEnv(t, "")
	id := e.create(t, `{"templateID":"base"}`)["sandboxID"].(string)
	if r := e.do(t, "POST", "/sandboxes/"+id+"/pause", `{"memory":true}`); r.status != http.StatusNoContent {
		t.Fatalf("pause: %d %s", r.status, r.body)
	}
	if r := e.do(t, "POST", "/sandboxes/"+id+"/pause", ``); r.status != http.StatusConflict || !strings.Contains(string(r.body), `"code":409`) {
		t.Errorf("second pause: %d %s", r.status, r.body)
	}
	if r := e.do(t, "GET", "/sandboxes/"+id, ""); !strings.Contains(string(r.body), `"state":"paused"`) {
		t.Errorf("getInfo of a paused sandbox: %s", r.body)
	}
	if r := e.do(t, "POST", "/v2/sandboxes/"+id+"/connect", `{"timeout":60}`); r.status != http.StatusCreated {
		t.Errorf("connect to a paused sandbox: %d %s, want 201", r.status, r.body)
	}
	if r := e.do(t, "POST", "/v2/sandboxes/"+id+"/connect", `{"timeout":60}`); r.status != http.StatusOK {
		t.Errorf("connect to a running sandbox: %d, want 200", r.status)
	}
	if r := e.do(t, "POST", "/sandboxes/nope/pause", ``); r.status != http.StatusNotFound {
		t.Errorf("pause of an unknown sandbox: %d", r.status)
	}

	r := e.do(t, "GET", "/sandboxes/"+id+"/metrics", "")
	var ms []map[string]any
	if err := json.Unmarshal(r.body, &ms); r.status != http.StatusOK || err != nil || len(ms) != 1 {
		t.Fatalf("metrics: %d %s %v", r.status, r.body, err)
	}
	for _, k := range []string{"timestamp", "timestampUnix", "cpuCount", "cpuUsedPct", "memUsed", "memTotal", "memCache", "diskUsed", "diskTotal"} {
		if _, ok := ms[0][k]; !ok {
			t.Errorf("metric lacks %s: %s", k, r.body)
		}
	}
	if r := e.do(t, "GET", "/sandboxes/"+id+"/metrics?start=1&end=2", ""); string(r.body) != "[]\n" && string(r.body) != "[]" {
		t.Errorf("metrics outside the window: %s", r.body)
	}
	if r := e.do(t, "GET", "/sandboxes/"+id+"/metrics?start=x", ""); r.status != http.StatusBadRequest {
		t.Errorf("bad start: %d %s", r.status, r.body)
	}
}
