package restapi

import (
	"net/http"
	"strings"
	"testing"

	"github.com/sandpit-dev/sandpit/gen/openapi"
)

// patterns records the routes the generated router registers.
type patterns []string

func (p *patterns) ServeHTTP(http.ResponseWriter, *http.Request) {}

func (p *patterns) HandleFunc(pattern string, _ func(http.ResponseWriter, *http.Request)) {
	*p = append(*p, pattern)
}

// Every route that may change state is audited: a route added to the API
// without an audit action fails here.
func TestEveryStateChangingRouteIsAudited(t *testing.T) {
	var ps patterns
	openapi.HandlerWithOptions(&server{}, openapi.StdHTTPServerOptions{BaseRouter: &ps})
	if len(ps) < 20 {
		t.Fatalf("the router registered %d routes", len(ps))
	}
	for _, p := range ps {
		if strings.HasPrefix(p, "GET ") || strings.HasPrefix(p, "HEAD ") {
			continue
		}
		if _, ok := auditActions[p]; !ok {
			t.Errorf("%s is not audited: add it to auditActions", p)
		}
	}
}
