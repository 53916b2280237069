package main

import (
	"strings"
	"testing"
)

// TestParseRequestTotals: apiserver_request_total is summed by verb and
// resource over codes, non-resource paths are left out, and split tells
// the nodes' heartbeats from the api processes' lists.
func TestParseRequestTotals(t *testing.T) {
	const text = `# HELP apiserver_request_total [STABLE] Counter of apiserver requests
# TYPE apiserver_request_total counter
apiserver_request_total{code="200",component="apiserver",dry_run="",group="coordination.k8s.io",resource="leases",scope="resource",subresource="",verb="PUT",version="v1"} 40
apiserver_request_total{code="409",component="apiserver",dry_run="",group="coordination.k8s.io",resource="leases",scope="resource",subresource="",verb="PUT",version="v1"} 2
apiserver_request_total{code="200",component="apiserver",dry_run="",group="sandpit.dev",resource="sandboxnodes",scope="resource",subresource="status",verb="PUT",version="v1alpha1"} 30
apiserver_request_total{code="200",component="apiserver",dry_run="",group="coordination.k8s.io",resource="leases",scope="namespace",subresource="",verb="LIST",version="v1"} 10
apiserver_request_total{code="201",component="apiserver",dry_run="",group="sandpit.dev",resource="sandboxes",scope="resource",subresource="",verb="POST",version="v1alpha1"} 1e+03
apiserver_request_total{code="200",component="apiserver",dry_run="",group="",resource="",scope="",subresource="/metrics",verb="GET",version=""} 7
apiserver_request_duration_seconds_count{verb="GET"} 99
`
	got, err := parseRequestTotals(strings.NewReader(text))
	if err != nil {
		t.Fatal(err)
	}
	want := requestCounts{"PUT leases": 42, "PUT sandboxnodes/status": 30, "LIST leases": 10, "POST sandboxes": 1000}
	if len(got) != len(want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %v, want %v", k, got[k], v)
		}
	}
	if hb, other := got.split(); hb != 72 || other != 1010 {
		t.Errorf("split = %v heartbeat, %v other; want 72, 1010", hb, other)
	}
	later := requestCounts{"PUT leases": 50, "PUT sandboxnodes/status": 30, "LIST leases": 10, "POST sandboxes": 1000}
	if d := later.minus(got); len(d) != 1 || d["PUT leases"] != 8 || d.total() != 8 {
		t.Errorf("minus = %v, want PUT leases 8 only", d)
	}
}
