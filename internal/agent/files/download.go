package files

import (
	"bytes"
	"compress/gzip"
	"errors"
	"io"
	"mime"
	"net/http"
	"path"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/sandpit-dev/sandpit/internal/errdefs"
)

// download serves GET /files?path=: the file's bytes through
// http.ServeContent (so Range and conditional requests work), or gzipped
// when the client asks for exactly that (see wantGzip).
func (h *Handler) download(w http.ResponseWriter, r *http.Request) {
	req, err := h.identify(r, "read")
	if err != nil {
		h.fail(w, r, err)
		return
	}
	abs, err := req.resolve(req.rawPath)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	f, fi, err := req.root.OpenRegular(abs)
	switch {
	case errors.Is(err, unix.ENOENT):
		h.fail(w, r, errdefs.New(errdefs.ErrNotFound, "path '"+abs+"' does not exist"))
		return
	case errors.Is(err, unix.EISDIR):
		h.fail(w, r, errdefs.New(errdefs.ErrInvalidArgument, "path '"+abs+"' is a directory"))
		return
	case errors.Is(err, unix.EINVAL):
		h.fail(w, r, errdefs.New(errdefs.ErrInvalidArgument, "path '"+abs+"' is not a regular file"))
		return
	case err != nil:
		h.fail(w, r, err)
		return
	}
	defer f.Close()

	name := path.Base(abs)
	hdr := w.Header()
	hdr.Set("Content-Disposition", mime.FormatMediaType("inline", map[string]string{"filename": name}))
	ctype := mime.TypeByExtension(path.Ext(name))
	if ctype == "" {
		ctype = "application/octet-stream"
	}
	hdr.Set("Content-Type", ctype)
	hdr.Add("Vary", "Accept-Encoding")

	gz, ok := negotiate(r.Header.Values("Accept-Encoding"))
	if !ok {
		// Content negotiation, not an error category: 406 directly.
		writeError(w, http.StatusNotAcceptable, "no acceptable content encoding: only gzip and identity are offered")
		return
	}
	hdr.Set("X-Content-Type-Options", "nosniff")
	var body io.Reader = f
	if fi.Size() == 0 {
		// Empty, or a file whose size stat does not know (procfs,
		// sysfs): read a byte to tell them apart.
		one := make([]byte, 1)
		n, _ := io.ReadFull(f, one)
		if n == 0 {
			hdr.Set("Content-Length", "0")
			w.WriteHeader(http.StatusOK)
			return
		}
		body = io.MultiReader(bytes.NewReader(one[:n]), f)
		if !gz {
			w.WriteHeader(http.StatusOK)
			if r.Method != http.MethodHead {
				h.send(w, body, abs)
			}
			return
		}
	} else if !gz || r.Header.Get("Range") != "" {
		http.ServeContent(w, r, name, fi.ModTime(), f)
		return
	}
	hdr.Set("Content-Encoding", "gzip")
	hdr.Del("Content-Length")
	w.WriteHeader(http.StatusOK)
	if r.Method == http.MethodHead {
		return
	}
	zw, _ := gzip.NewWriterLevel(w, gzip.BestSpeed)
	h.send(zw, body, abs)
	if err := zw.Close(); err != nil {
		h.logger.Debug("finishing gzipped file", "path", abs, "err", err)
	}
}

// send copies a file to an already started response. A failure can only
// cut the body short (the status is sent), so it is logged.
func (h *Handler) send(w io.Writer, body io.Reader, abs string) {
	buf := h.buffers.Get().(*[]byte)
	defer h.buffers.Put(buf)
	if _, err := copyBuffer(w, body, *buf); err != nil {
		h.logger.Debug("sending file", "path", abs, "err", err)
	}
}

// negotiate decides the coding of a download from Accept-Encoding. It
// gzips only when gzip is the one coding asked for by name ("gzip", what
// the SDKs send for files.read({gzip: true})): a generic list such as
// "gzip, deflate", which fetch implementations add to every request, gets
// identity, which is always allowed and several times faster than gzip on
// a local link. ok is false when identity is refused and gzip not asked for
// (406).
func negotiate(values []string) (gz, ok bool) {
	var codings []string
	identityOK, starQ := true, -1.0
	gzipQ := -1.0
	for _, v := range values {
		for part := range strings.SplitSeq(v, ",") {
			name, params, _ := strings.Cut(strings.TrimSpace(part), ";")
			name = strings.ToLower(strings.TrimSpace(name))
			if name == "" {
				continue
			}
			q := 1.0
			if qs, found := strings.CutPrefix(strings.TrimSpace(params), "q="); found {
				if f, err := strconv.ParseFloat(qs, 64); err == nil {
					q = f
				}
			}
			codings = append(codings, name)
			switch name {
			case "gzip", "x-gzip":
				gzipQ = q
			case "identity":
				identityOK = q > 0
			case "*":
				starQ = q
			}
		}
	}
	if starQ == 0 && !strings.Contains(strings.Join(codings, ","), "identity") {
		identityOK = false
	}
	if gzipQ > 0 && len(codings) == 1 {
		return true, true
	}
	if identityOK {
		return false, true
	}
	return gzipQ > 0 || starQ > 0, gzipQ > 0 || starQ > 0
}
