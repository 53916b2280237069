package restapi_test

import (
	"net/http"
	"strings"
	"testing"
)

func TestSandboxNetwork(t *testing.T) {
	e := newEnv(t, "")
	sb := e.create(t, `{"templateID":"base","network":{"denyOut":["0.0.0.0/0"],"allowOut":["1.1.1.1","8.8.8.0/24"]}}`)
	id := sb["sandboxID"].(string)
	spec, _ := e.rt.Spec(id)
	if !spec.AllowInternet || len(spec.Egress.Allow) != 2 || len(spec.Egress.Deny) != 1 {
		t.Fatalf("spec egress %+v internet %v", spec.Egress, spec.AllowInternet)
	}
	r := e.do(t, "GET", "/sandboxes/"+id, "")
	if !strings.Contains(string(r.body), `"network":{"allowOut":["1.1.1.1","8.8.8.0/24"],"denyOut":["0.0.0.0/0"]}`) || !strings.Contains(string(r.body), `"allowInternetAccess":true`) {
		t.Errorf("getInfo: %s", r.body)
	}

	r = e.do(t, "PUT", "/sandboxes/"+id+"/network", `{"denyOut":["10.0.0.0/8"]}`)
	if r.status != http.StatusNoContent {
		t.Fatalf("update: %d %s", r.status, r.body)
	}
	spec, _ = e.rt.Spec(id)
	if len(spec.Egress.Allow) != 0 || len(spec.Egress.Deny) != 1 || spec.Egress.Deny[0].String() != "10.0.0.0/8" {
		t.Errorf("after update: %+v", spec.Egress)
	}

	r = e.do(t, "PUT", "/sandboxes/"+id+"/network", `{"allowOut":["*.example.com","pypi.org"],"denyOut":["0.0.0.0/0"]}`)
	if r.status != http.StatusNoContent {
		t.Fatalf("update with names: %d %s", r.status, r.body)
	}
	if spec, _ = e.rt.Spec(id); len(spec.Egress.Names) != 2 || spec.Egress.Names[0] != "*.example.com" {
		t.Errorf("after an update with names: %+v", spec.Egress)
	}

	bad := []struct{ method, path, body, want string }{
		{"POST", "/v2/sandboxes", `{"templateID":"base","network":{"allowOut":["api.example.com"],"denyOut":["0.0.0.0/0","api.example.com"]}}`, `domain names are allowed in allowOut only`},
		{"PUT", "/sandboxes/" + id + "/network", `{"allowOut":["a.*.example.com"]}`, `wildcard is allowed only as the first label`},
		{"POST", "/v2/sandboxes", `{"templateID":"base","network":{"egressProxy":{"address":"p:1080"}}}`, "egressProxy is not supported"},
		{"POST", "/v2/sandboxes", `{"templateID":"base","network":{"maskRequestHost":"a b"}}`, "maskRequestHost"},
		{"PUT", "/sandboxes/" + id + "/network", `{"allowOut":["300.1.1.1"]}`, `300.1.1.1\" is not an IP address`},
		{"PUT", "/sandboxes/" + id + "/network", `{"rules":{"*":[{}]}}`, "is not a DNS name"},
	}
	for _, b := range bad {
		r := e.do(t, b.method, b.path, b.body)
		if r.status != http.StatusBadRequest || !strings.Contains(string(r.body), b.want) {
			t.Errorf("%s %s %s: %d %s, want 400 saying %q", b.method, b.path, b.body, r.status, r.body, b.want)
		}
	}
	if r := e.do(t, "PUT", "/sandboxes/nope/network", `{}`); r.status != http.StatusNotFound {
		t.Errorf("unknown sandbox: %d %s", r.status, r.body)
	}
	off := e.create(t, `{"templateID":"base","allow_internet_access":false}`)
	r = e.do(t, "PUT", "/sandboxes/"+off["sandboxID"].(string)+"/network", `{"allowOut":["1.1.1.1"]}`)
	if r.status != http.StatusConflict || !strings.Contains(string(r.body), "without internet access") {
		t.Errorf("widening an offline sandbox: %d %s", r.status, r.body)
	}
	if r := e.do(t, "GET", "/sandboxes/"+off["sandboxID"].(string), ""); !strings.Contains(string(r.body), `"allowInternetAccess":false`) {
		t.Errorf("offline getInfo: %s", r.body)
	}
}

func TestSandboxNetworkLimits(t *testing.T) {
	e := newEnv(t, "")
	sb := e.create(t, `{"templateID":"base","sandpitNetworkLimits":{"egressBytesPerSecond":1048576,"maxConnections":8}}`)
	spec, _ := e.rt.Spec(sb["sandboxID"].(string))
	if spec.Egress.Limits.Rate != 1<<20 || spec.Egress.Limits.Conns != 8 || !spec.AllowInternet {
		t.Fatalf("spec egress %+v internet %v", spec.Egress, spec.AllowInternet)
	}
	r := e.do(t, "POST", "/v2/sandboxes", `{"templateID":"base","sandpitNetworkLimits":{"maxConnections":-1}}`)
	if r.status != http.StatusBadRequest || !strings.Contains(string(r.body), "maxConnections must not be negative") {
		t.Errorf("negative limit: %d %s", r.status, r.body)
	}
}
