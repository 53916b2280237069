package restapi_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sandpit-dev/sandpit/internal/audit"
	"github.com/sandpit-dev/sandpit/internal/restapi"
)

// BenchmarkCreateAudit is the cost the audit log adds to a create through
// the API, with a real SQLite store (the audit's writes share its file)
// and the fake runtime, which makes the rest of a create cheap so the
// difference shows. Creates with the audit on and off alternate, so the
// machine's noise falls on both alike; it reports each side's median.
//
//	go test -run x -bench CreateAudit -benchtime 2000x ./internal/restapi/
func BenchmarkCreateAudit(b *testing.B) {
	e := newEnvTB(b, context.Background(), "")
	log := audit.New(e.st, e.st, audit.Config{})
	b.Cleanup(func() { _ = log.Close(context.Background()) })
	off := restapi.New(restapi.Config{Manager: e.m, Keys: e.st, ExtraKey: extraKey})
	on := restapi.New(restapi.Config{Manager: e.m, Keys: e.st, ExtraKey: extraKey, Audit: log})

	create := func(h http.Handler) time.Duration {
		req := httptest.NewRequest("POST", "/v2/sandboxes", strings.NewReader(`{"templateID":"base"}`))
		req.Header.Set("X-API-KEY", e.key)
		req.Header.Set("Content-Type", "application/json")
		w := httptest.NewRecorder()
		start := time.Now()
		h.ServeHTTP(w, req)
		took := time.Since(start)
		if w.Code != http.StatusCreated {
			b.Fatalf("create = %d %s", w.Code, w.Body)
		}
		body := w.Body.String()
		id := body[strings.Index(body, `"sandboxID":"`)+len(`"sandboxID":"`):]
		if err := e.m.Kill(context.Background(), id[:strings.IndexByte(id, '"')]); err != nil {
			b.Fatal(err)
		}
		return took
	}
	var tOn, tOff []time.Duration
	for b.Loop() {
		tOff = append(tOff, create(off))
		tOn = append(tOn, create(on))
	}
	median := func(d []time.Duration) float64 {
		slices.Sort(d)
		return float64(d[len(d)/2].Microseconds())
	}
	b.ReportMetric(median(tOff), "p50-off-µs")
	b.ReportMetric(median(tOn), "p50-on-µs")
	b.ReportMetric(median(tOn)-median(tOff), "p50-delta-µs")
}
