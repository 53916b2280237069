package console

import (
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
)

// next stands for the API: it answers what the console does not take.
var next = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	w.WriteHeader(http.StatusTeapot)
	_, _ = io.WriteString(w, "api")
})

func newTestHandler(t *testing.T) *Handler {
	t.Helper()
	h, err := New(next)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func do(h http.Handler, method, path string, header http.Header) *httptest.ResponseRecorder {
	r := httptest.NewRequest(method, path, nil)
	for k, v := range header {
		r.Header[k] = v
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

var browser = http.Header{"Accept": {"text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"}}

func TestIndexForBrowsers(t *testing.T) {
	h := newTestHandler(t)
	w := do(h, "GET", "/", browser)
	if w.Code != http.StatusOK {
		t.Fatalf("GET / from a browser: %d %s", w.Code, w.Body)
	}
	if ct := w.Header().Get("Content-Type"); !strings.HasPrefix(ct, "text/html") {
		t.Errorf("Content-Type %q", ct)
	}
	c := w.Header().Get("Content-Security-Policy")
	for _, want := range []string{"default-src 'none'", "script-src 'self'", "connect-src 'self'", "frame-ancestors 'none'"} {
		if !strings.Contains(c, want) {
			t.Errorf("CSP %q lacks %q", c, want)
		}
	}
	if strings.Contains(strings.SplitN(strings.SplitAfter(c, "script-src")[1], ";", 2)[0], "unsafe") {
		t.Errorf("CSP lets inline or eval'd scripts run: %q", c)
	}
	if cc := w.Header().Get("Cache-Control"); cc != "no-cache" {
		t.Errorf("index Cache-Control %q", cc)
	}
	body := w.Body.String()
	if strings.Contains(body, "<script>") || strings.Contains(body, "{{") {
		t.Errorf("index has an inline script or an unfilled placeholder:\n%s", body)
	}

	// Every asset the page names is served, immutable.
	refs := regexp.MustCompile(`(?:src|href)="(/assets/[^"]+)"`).FindAllStringSubmatch(body, -1)
	if len(refs) < 3 {
		t.Fatalf("index names %d assets, want the script, the stylesheet and the icon:\n%s", len(refs), body)
	}
	for _, m := range refs {
		w := do(h, "GET", m[1], nil)
		if w.Code != http.StatusOK || w.Body.Len() == 0 {
			t.Errorf("GET %s: %d, %d bytes", m[1], w.Code, w.Body.Len())
		}
		if cc := w.Header().Get("Cache-Control"); !strings.Contains(cc, "immutable") {
			t.Errorf("GET %s: Cache-Control %q", m[1], cc)
		}
		if w.Header().Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("GET %s: no nosniff", m[1])
		}
	}
}

func TestNotForAPIClients(t *testing.T) {
	h := newTestHandler(t)
	for _, tc := range []struct {
		method, path string
		header       http.Header
	}{
		{"GET", "/", nil}, // curl, the SDKs
		{"GET", "/", http.Header{"Accept": {"application/json"}}},
		{"POST", "/", browser},
		{"GET", "/sandboxes", browser},
		{"GET", "/health", nil},
		{"DELETE", "/assets/x.js", nil},
	} {
		w := do(h, tc.method, tc.path, tc.header)
		if w.Code != http.StatusTeapot {
			t.Errorf("%s %s (Accept %q): %d, want the API's answer", tc.method, tc.path, tc.header.Get("Accept"), w.Code)
		}
	}
}

func TestAssetsGzipAndRevalidation(t *testing.T) {
	h := newTestHandler(t)
	var js string
	for p := range h.assets {
		if strings.HasSuffix(p, ".js") {
			js = p
		}
	}
	if js == "" {
		t.Fatal("no JS bundle embedded")
	}
	plain := do(h, "GET", js, nil)
	w := do(h, "GET", js, http.Header{"Accept-Encoding": {"gzip, deflate, br"}})
	if w.Header().Get("Content-Encoding") != "gzip" {
		t.Fatalf("GET %s with gzip accepted: Content-Encoding %q", js, w.Header().Get("Content-Encoding"))
	}
	zipped := w.Body.Len()
	zr, err := gzip.NewReader(w.Body)
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	if string(b) != plain.Body.String() {
		t.Fatal("the gzipped bundle is not the bundle")
	}
	t.Logf("bundle %s: %d bytes, %d gzipped", js, plain.Body.Len(), zipped)
	if w := do(h, "GET", js, http.Header{"Accept-Encoding": {"gzip;q=0"}}); w.Header().Get("Content-Encoding") != "" {
		t.Errorf("gzip;q=0 still got gzip")
	}
	if w := do(h, "GET", js, http.Header{"If-None-Match": {plain.Header().Get("ETag")}}); w.Code != http.StatusNotModified {
		t.Errorf("If-None-Match with the ETag: %d", w.Code)
	}
	if w := do(h, "HEAD", js, nil); w.Code != http.StatusOK || w.Body.Len() != 0 {
		t.Errorf("HEAD: %d, %d bytes", w.Code, w.Body.Len())
	}
	if w := do(h, "GET", "/assets/nope.js", nil); w.Code != http.StatusNotFound {
		t.Errorf("unknown asset: %d", w.Code)
	}
}

// TestBundleMatchesSource: the embedded bundle was built from web/ as it
// is now. A failure means web/ changed without `make console` (or go
// generate ./internal/console) rebuilding the committed bundle.
func TestBundleMatchesSource(t *testing.T) {
	web := filepath.Join("..", "..", "web")
	inputs := []string{"build.mjs", "package-lock.json"}
	err := filepath.WalkDir(filepath.Join(web, "src"), func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, err := filepath.Rel(web, p)
		inputs = append(inputs, filepath.ToSlash(rel))
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(inputs)
	sum := sha256.New()
	for _, f := range inputs {
		b, err := os.ReadFile(filepath.Join(web, f))
		if err != nil {
			t.Fatal(err)
		}
		sum.Write([]byte(f + "\x00"))
		sum.Write(b)
		sum.Write([]byte("\x00"))
	}
	built, err := fs.ReadFile(dist, "dist/source.sha256")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := hex.EncodeToString(sum.Sum(nil)), strings.TrimSpace(string(built)); got != want {
		t.Errorf("the embedded console was built from other sources (%s) than web/ holds (%s): run make console and commit internal/console/dist", want, got)
	}
}
