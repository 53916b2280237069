// Package console serves the sandpit console: the dashboard and code
// playground a person opens in a browser at the daemon's own address. The
// front-end is built from web/ into dist/ (committed, so `go build` alone
// makes a complete binary) and embedded here; the browser then talks to the
// same listener it came from, with the API key the user signs in with.
package console

//go:generate sh -c "cd ../../web && npm ci --no-audit --no-fund --loglevel=error && node build.mjs"

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"fmt"
	"io/fs"
	"mime"
	"net/http"
	"path"
	"strconv"
	"strings"
)

// dist is the built front-end: index.html and assets/ with content-hashed
// names.
//
//go:embed dist
var dist embed.FS

// csp keeps the console's scripts to its own bundle. Styles allow
// 'unsafe-inline' because CodeMirror and xterm.js add <style> elements at
// run time; images allow data: and blob: for the interpreter's PNG/SVG
// results and downloads. Sandbox HTML results are shown in sandboxed
// iframes (srcdoc), which inherit this policy.
const csp = "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; " +
	"img-src 'self' data: blob:; font-src 'self'; connect-src 'self'; frame-src 'self'; " +
	"base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

// asset is one file ready to serve.
type asset struct {
	body  []byte
	gzip  []byte // nil when compressing does not pay
	ctype string
	etag  string
}

// Handler serves the console for browser requests and passes every other
// request to the handler it wraps.
type Handler struct {
	next   http.Handler
	index  *asset
	assets map[string]*asset // by URL path, /assets/...
}

// New returns a Handler in front of next, which serves whatever is not the
// console: the API and its errors. It fails only if the embedded bundle is
// broken, which is a build error.
func New(next http.Handler) (*Handler, error) {
	return newHandler(dist, next)
}

func newHandler(files fs.FS, next http.Handler) (*Handler, error) {
	h := &Handler{next: next, assets: map[string]*asset{}}
	index, err := fs.ReadFile(files, "dist/index.html")
	if err != nil {
		return nil, fmt.Errorf("reading the console's index.html: %w", err)
	}
	h.index = newAsset("index.html", index)
	err = fs.WalkDir(files, "dist/assets", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(files, p)
		if err != nil {
			return err
		}
		h.assets[strings.TrimPrefix(p, "dist")] = newAsset(p, b)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("reading the console's assets: %w", err)
	}
	return h, nil
}

func newAsset(name string, b []byte) *asset {
	sum := sha256.Sum256(b)
	a := &asset{body: b, etag: `"` + hex.EncodeToString(sum[:12]) + `"`}
	a.ctype = mime.TypeByExtension(path.Ext(name))
	if a.ctype == "" {
		a.ctype = "application/octet-stream"
	}
	var buf bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	_, _ = zw.Write(b)
	_ = zw.Close()
	if buf.Len() < len(b)*9/10 {
		a.gzip = buf.Bytes()
	}
	return a
}

// ServeHTTP implements http.Handler.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		h.next.ServeHTTP(w, r)
		return
	}
	switch p := r.URL.Path; {
	case p == "/" && acceptsHTML(r):
		// The page itself is small and names the hashed assets of this
		// build: revalidate it every time, so an upgrade shows at once.
		// What / is depends on Accept.
		w.Header().Add("Vary", "Accept")
		h.serve(w, r, h.index, "no-cache")
	case strings.HasPrefix(p, "/assets/"):
		a, ok := h.assets[p]
		if !ok {
			http.Error(w, "no such console asset", http.StatusNotFound)
			return
		}
		h.serve(w, r, a, "public, max-age=31536000, immutable")
	default:
		h.next.ServeHTTP(w, r)
	}
}

// acceptsHTML tells a browser navigating to the page from an API client:
// the SDKs and curl do not ask for text/html.
func acceptsHTML(r *http.Request) bool {
	for _, v := range r.Header.Values("Accept") {
		if strings.Contains(v, "text/html") {
			return true
		}
	}
	return false
}

func (h *Handler) serve(w http.ResponseWriter, r *http.Request, a *asset, cache string) {
	hd := w.Header()
	hd.Set("Content-Security-Policy", csp)
	hd.Set("X-Content-Type-Options", "nosniff")
	hd.Set("X-Frame-Options", "DENY")
	hd.Set("Referrer-Policy", "no-referrer")
	hd.Set("Cache-Control", cache)
	hd.Set("Content-Type", a.ctype)
	hd.Set("ETag", a.etag)
	hd.Add("Vary", "Accept-Encoding")
	if match := r.Header.Get("If-None-Match"); match != "" && strings.Contains(match, a.etag) {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	body := a.body
	if a.gzip != nil && acceptsGzip(r) {
		hd.Set("Content-Encoding", "gzip")
		body = a.gzip
	}
	hd.Set("Content-Length", fmt.Sprint(len(body)))
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		_, _ = w.Write(body)
	}
}

func acceptsGzip(r *http.Request) bool {
	for _, v := range strings.Split(r.Header.Get("Accept-Encoding"), ",") {
		enc, params, _ := strings.Cut(strings.TrimSpace(v), ";")
		if strings.TrimSpace(enc) != "gzip" {
			continue
		}
		q, ok := strings.CutPrefix(strings.TrimSpace(params), "q=")
		if !ok {
			return true
		}
		f, err := strconv.ParseFloat(q, 64)
		return err == nil && f > 0

	}
	return false
}
