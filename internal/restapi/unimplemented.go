package restapi

import (
	"net/http"
	"strings"

	"github.com/sandpit-dev/sandpit/gen/openapi"
)

// unimplemented names the E2B API endpoints the official SDKs call that
// sandpit does not serve, by path pattern ("*" is one segment). They
// answer 501 in E2B's error body, so the SDKs raise their API error with
// a message that says so, instead of failing to parse the web UI's plain
// text 404 (the Python SDK's fork and create_snapshot raised
// JSONDecodeError). A route registered later for one of them takes
// precedence: this table is consulted only when no route matched.
var unimplemented = []struct{ pattern, feature string }{
	{"/volumes", "volumes"},
	{"/volumes/*", "volumes"},
}

// notImplemented answers r with 501 when its path is an E2B endpoint
// sandpit lacks, and reports whether it did.
func notImplemented(w http.ResponseWriter, r *http.Request) bool {
	for _, u := range unimplemented {
		if matchPath(u.pattern, r.URL.Path) {
			writeJSON(w, http.StatusNotImplemented, openapi.Error{
				Code:    http.StatusNotImplemented,
				Message: u.feature + " (" + r.Method + " " + r.URL.Path + ") is not implemented by sandpit",
			})
			return true
		}
	}
	return false
}

// matchPath reports whether path has pattern's segments, "*" matching any
// one non-empty segment.
func matchPath(pattern, path string) bool {
	ps, xs := strings.Split(pattern, "/"), strings.Split(strings.TrimSuffix(path, "/"), "/")
	if len(ps) != len(xs) {
		return false
	}
	for i, p := range ps {
		if (p == "*" && xs[i] == "") || (p != "*" && p != xs[i]) {
			return false
		}
	}
	return true
}
