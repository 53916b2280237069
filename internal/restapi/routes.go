package restapi

import (
	"net/http"
	"net/url"
	"strings"

	"github.com/sandpit-dev/sandpit/gen/openapi"
)

// literalRoute is a generated route whose last segment is a literal that
// net/http's ServeMux cannot hold as one: it registers the route with a
// wildcard there and serves only requests whose segment is the literal.
type literalRoute struct {
	pattern  string // what ServeMux gets
	wildcard string // the wildcard standing for the literal
	literal  string
}

// literalRoutes are the E2B paths that conflict in ServeMux. GET
// /templates/{templateID}/tags and GET /templates/aliases/{alias} both
// match /templates/aliases/tags and neither is more specific, so
// registering both panics; /templates/{templateID}/{segment} is less
// specific than the alias route, so the two can coexist, and
// /templates/aliases/tags stays the alias lookup of "tags".
var literalRoutes = map[string]literalRoute{
	"GET /templates/{templateID}/tags": {pattern: "GET /templates/{templateID}/{tagsSegment}", wildcard: "tagsSegment", literal: "tags"},
}

// routeMux is the ServeMux the generated router registers on, with the
// literalRoutes rewritten.
type routeMux struct {
	*http.ServeMux
	// notFound answers a request a literalRoute matched by its wildcard
	// but not by its literal.
	notFound http.HandlerFunc
}

var _ openapi.ServeMux = routeMux{}

// HandleFunc implements openapi.ServeMux.
func (m routeMux) HandleFunc(pattern string, h func(http.ResponseWriter, *http.Request)) {
	lr, ok := literalRoutes[pattern]
	if !ok {
		m.ServeMux.HandleFunc(pattern, h)
		return
	}
	m.ServeMux.HandleFunc(lr.pattern, func(w http.ResponseWriter, r *http.Request) {
		if r.PathValue(lr.wildcard) != lr.literal {
			m.notFound(w, r)
			return
		}
		h(w, r)
	})
}

// routed reports whether the route pattern (as ServeMux.Handler returns
// it) really serves r: a literalRoute serves only its literal.
func routed(pattern string, r *http.Request) bool {
	for _, lr := range literalRoutes {
		if lr.pattern == pattern {
			// The wildcard is the last segment of every literalRoute.
			p := r.URL.EscapedPath()
			seg, err := url.PathUnescape(p[strings.LastIndexByte(p, '/')+1:])
			return err == nil && seg == lr.literal
		}
	}
	return pattern != "/"
}
