package files

import (
	"bufio"
	"compress/gzip"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"path"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/sandpit-dev/sandpit/internal/errdefs"
)

// uploadEntry is one element of POST /files' response.
type uploadEntry struct {
	Path     string            `json:"path"`
	Name     string            `json:"name"`
	Type     string            `json:"type"`
	Metadata map[string]string `json:"metadata,omitempty"`
}

// metadataPrefix starts the headers whose values become file metadata.
const metadataPrefix = "X-Metadata-"

// upload serves POST /files: multipart/form-data (a "file" part per file,
// its filename the destination, the path query winning) or an
// application/octet-stream body written to the path query. Either may be
// gzipped (Content-Encoding: gzip).
func (h *Handler) upload(w http.ResponseWriter, r *http.Request) {
	req, err := h.identify(r, "write")
	if err != nil {
		h.fail(w, r, err)
		return
	}
	md, err := metadataFrom(r.Header)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	body := io.Reader(r.Body)
	switch enc := strings.ToLower(strings.TrimSpace(r.Header.Get("Content-Encoding"))); enc {
	case "", "identity":
	case "gzip", "x-gzip":
		zr, err := gzip.NewReader(r.Body)
		if err != nil {
			h.fail(w, r, errdefs.New(errdefs.ErrInvalidArgument, "the request body is not gzip: "+err.Error()))
			return
		}
		defer zr.Close()
		body = zr
	default:
		h.fail(w, r, errdefs.New(errdefs.ErrInvalidArgument, "unsupported Content-Encoding '"+enc+"'"))
		return
	}
	ctype, params, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil {
		h.fail(w, r, errdefs.New(errdefs.ErrInvalidArgument, "missing or invalid Content-Type: use multipart/form-data or application/octet-stream"))
		return
	}
	var entries []uploadEntry
	switch ctype {
	case "multipart/form-data":
		if params["boundary"] == "" {
			h.fail(w, r, errdefs.New(errdefs.ErrInvalidArgument, "multipart body without a boundary"))
			return
		}
		// multipart.NewReader keeps a *bufio.Reader of at least its own
		// 4 KiB peek size as it is: give it a large one, so that parts
		// are read in large slices.
		br := h.readers.Get().(*bufio.Reader)
		br.Reset(body)
		entries, err = h.uploadMultipart(req, multipart.NewReader(br, params["boundary"]), md)
		br.Reset(nil)
		h.readers.Put(br)
	case "application/octet-stream":
		if req.rawPath == "" {
			h.fail(w, r, errdefs.New(errdefs.ErrInvalidArgument, "the path query parameter is required for application/octet-stream uploads"))
			return
		}
		var e uploadEntry
		e, err = h.writeFile(req, req.rawPath, body, md)
		entries = []uploadEntry{e}
	default:
		err = errdefs.New(errdefs.ErrInvalidArgument, "unsupported Content-Type '"+ctype+"': use multipart/form-data or application/octet-stream")
	}
	if err != nil {
		h.fail(w, r, err)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(entries)
}

// uploadMultipart writes every "file" part, in order. A part's target is
// the path query when given, else its filename parameter (the full path,
// which mime/multipart's FileName would cut to the base name).
func (h *Handler) uploadMultipart(req request, mr *multipart.Reader, md map[string]string) ([]uploadEntry, error) {
	entries := []uploadEntry{}
	seen := map[string]bool{}
	for {
		part, err := mr.NextPart()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, errdefs.New(errdefs.ErrInvalidArgument, "reading the multipart body: "+err.Error())
		}
		name, filename := partNames(part.Header.Get("Content-Disposition"))
		if name != "file" {
			part.Close()
			continue
		}
		target := req.rawPath
		if target == "" {
			target = filename
		}
		if target == "" {
			part.Close()
			return nil, errdefs.New(errdefs.ErrInvalidArgument, "a file part has no filename and no path query parameter is given")
		}
		abs, err := req.resolve(target)
		if err != nil {
			part.Close()
			return nil, err
		}
		if seen[abs] {
			part.Close()
			return nil, errdefs.New(errdefs.ErrInvalidArgument, "more than one file part targets the path '"+abs+"'")
		}
		seen[abs] = true
		e, err := h.writeFile(req, target, part, md)
		part.Close()
		if err != nil {
			return nil, err
		}
		entries = append(entries, e)
	}
	if len(entries) == 0 {
		return nil, errdefs.New(errdefs.ErrInvalidArgument, "the multipart body has no part named 'file'")
	}
	return entries, nil
}

// partNames returns the name and filename parameters of a part's
// Content-Disposition, unmodified except for the %22, %0D and %0A escapes
// that fetch's FormData uses for '"', CR and LF.
func partNames(cd string) (name, filename string) {
	_, params, err := mime.ParseMediaType(cd)
	if err != nil {
		return "", ""
	}
	unescape := strings.NewReplacer("%22", `"`, "%0D", "\r", "%0A", "\n", "%0d", "\r", "%0a", "\n")
	return params["name"], unescape.Replace(params["filename"])
}

// writeFile writes src to the client path target for req's user, creating
// parents and storing md as its metadata. The new version replaces the
// file atomically once it is whole and on disk; on failure the file is
// left as it was.
func (h *Handler) writeFile(req request, target string, src io.Reader, md map[string]string) (uploadEntry, error) {
	abs, err := req.resolve(target)
	if err != nil {
		return uploadEntry{}, err
	}
	f, err := req.root.Create(abs, req.user.Owner())
	if err != nil {
		if errors.Is(err, unix.EISDIR) {
			return uploadEntry{}, errdefs.New(errdefs.ErrInvalidArgument, "path '"+abs+"' is a directory")
		}
		if errors.Is(err, unix.EINVAL) {
			return uploadEntry{}, errdefs.New(errdefs.ErrInvalidArgument, "path '"+abs+"' is not a regular file")
		}
		return uploadEntry{}, diskFull(abs, err)
	}
	defer f.Abort()
	buf := h.buffers.Get().(*[]byte)
	_, err = copyBuffer(f, src, *buf)
	h.buffers.Put(buf)
	if err == nil {
		err = h.root.SetMetadata(f.File, md)
	}
	if err == nil {
		err = f.Commit()
	}
	if err != nil {
		return uploadEntry{}, diskFull(abs, err)
	}
	return uploadEntry{Path: abs, Name: path.Base(abs), Type: "file", Metadata: md}, nil
}

// diskFull gives a full disk or quota a message naming the path (507).
func diskFull(abs string, err error) error {
	if errors.Is(err, unix.ENOSPC) || errors.Is(err, unix.EDQUOT) {
		return fmt.Errorf("not enough disk space available to write '%s': %w", abs, unix.ENOSPC)
	}
	return err
}

// readError marks a failure to read the request body: the client's fault.
type readError struct{ err error }

func (e *readError) Error() string   { return "reading the upload: " + e.err.Error() }
func (e *readError) Unwrap() []error { return []error{errdefs.ErrInvalidArgument, e.err} }

// copyBuffer copies src to dst through buf, telling read failures (wrapped
// in readError) from write failures. It fills buf before each write: body
// and multipart readers return a few KiB per Read, and a write(2) per few
// KiB would halve throughput.
func copyBuffer(dst io.Writer, src io.Reader, buf []byte) (int64, error) {
	var n int64
	for {
		nr, rerr := fill(src, buf)
		if nr > 0 {
			nw, werr := dst.Write(buf[:nr])
			n += int64(nw)
			if werr != nil {
				return n, werr
			}
		}
		if errors.Is(rerr, io.EOF) {
			return n, nil
		}
		if rerr != nil {
			return n, &readError{rerr}
		}
	}
}

// fill reads into buf until it is full or src fails. Unlike io.ReadFull it
// passes src's error through unchanged, so a body cut short
// (io.ErrUnexpectedEOF from the HTTP reader) is never taken for a clean end.
func fill(src io.Reader, buf []byte) (int, error) {
	n := 0
	for n < len(buf) {
		m, err := src.Read(buf[n:])
		n += m
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// metadataFrom collects X-Metadata-<key> headers: keys lowercased without
// the prefix, keys and values printable ASCII. nil when there are none
// (which clears a file's metadata).
func metadataFrom(h http.Header) (map[string]string, error) {
	var md map[string]string
	for k, vs := range h {
		key, ok := cutPrefixFold(k, metadataPrefix)
		if !ok {
			continue
		}
		key = strings.ToLower(key)
		if key == "" || !printable(key) || strings.ContainsAny(key, "\x00") {
			return nil, errdefs.New(errdefs.ErrInvalidArgument, "invalid metadata key '"+key+"'")
		}
		v := strings.Join(vs, ",")
		if !printable(v) {
			return nil, errdefs.New(errdefs.ErrInvalidArgument, "metadata '"+key+"' has a value that is not printable ASCII")
		}
		if md == nil {
			md = map[string]string{}
		}
		md[key] = v
	}
	return md, nil
}

func cutPrefixFold(s, prefix string) (string, bool) {
	if len(s) < len(prefix) || !strings.EqualFold(s[:len(prefix)], prefix) {
		return s, false
	}
	return s[len(prefix):], true
}

func printable(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			return false
		}
	}
	return true
}
